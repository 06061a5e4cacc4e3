"""A CPU model actor for a local NDIF stack (CI and laptops without a GPU).

ndif's stock ModelActor pins CUDA devices, caps CUDA memory and syncs CUDA after every request;
on a CPU-only torch each of those raises. This subclass loads the checkpoint on CPU and skips the
CUDA bookkeeping; everything else (request handling, result upload, timeouts) is ndif's own.
Selected per deployment with `actor_class: anchorlab_ndif_actor.CPUModelActor` (scripts/ndif/deploy.sh)
or for a whole stack with NDIF_MODEL_IMPORT_PATH. Lives outside the anchorlab package on purpose:
the server must not be able to import anchorlab (requests ship what they need by value).
"""
import gc
import logging

import ray
from ndif.services.ray.deployments.modeling.base import BaseModelDeployment
from nnsight.modeling.huggingface import HuggingFaceModel

logger = logging.getLogger("ndif.modeling")


class CPUModelDeployment(BaseModelDeployment):
    def load_from_disk(self) -> HuggingFaceModel:
        model = HuggingFaceModel.from_model_key(self.model_key, dispatch=True, dtype=self.dtype_name, **self.kwargs)
        model._module.requires_grad_(False)
        logger.info(f"Loaded {self.model_key} on CPU")
        return model

    async def to_cache(self) -> None:
        await self.cancel("preempted")
        self.cached = True

    def from_cache(self, gpu_mem_bytes_by_id) -> None:
        self.gpu_mem_bytes_by_id = gpu_mem_bytes_by_id
        self.cached = False

    def cleanup(self) -> None:
        self.kill_switch.clear()
        self.kill_reason = None
        self.execution_ident = None
        self.model.interleaver.cancel()
        gc.collect()


CPUModelActor = ray.remote(num_cpus=1, max_restarts=-1)(CPUModelDeployment)
