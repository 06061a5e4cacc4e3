"""Run the same traces on NDIF (nnsight's remote service) instead of the in-process model.

Every `trace` / `run` is one request: an nnsight session whose body is `session.run_in_session`,
serialized by nnsight (source + the values it references) and run where the model lives. The
client holds no weights: its model is built on the meta device (config, tokenizer and processor
only), and every weight a trace needs travels as a name (`adapters.paths.WeightRef`) read on the
server. The server cannot import anchorlab, so the package is shipped by value (`nnsight.register`);
results come back detached, on CPU, and only as large as the analysis reduced them to. Transient
failures (connection, 5xx) are retried with exponential backoff; what still fails surfaces as a
UserError, and `--resume` continues from the last stored batch. `NDIF_API_KEY` is only ever put in
request headers, never logged or stored.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nnsight
import torch

from ..errors import UserError
from .session import bundle_stand_in, map_tensors, one_trace, run_in_session
from .transport import CountingRemote, SimulatedTransport, TransientError, is_transient

log = logging.getLogger("anchorlab")
DEFAULT_HOST = "https://api.ndif.us"


def task_for(adapter) -> str:
    """The transformers pipeline task the server builds the model under (part of the model key)."""
    return "image-text-to-text" if adapter.is_multimodal else "text-generation"


def model_key(repo_id: str, revision: str | None, task: str) -> str:
    """The key nnsight's TransformersModel sends for this checkpoint, computed without loading it.

    A local folder is its own repo id (nnsight would ask the hub to canonicalise it, which fails
    offline and means nothing for a path); a hub id is canonicalised by nnsight as usual."""
    from nnsight.modeling import huggingface
    from nnsight.modeling.transformers import TransformersModel
    from nnsight.util import to_import_path

    if Path(repo_id).is_dir():
        huggingface._ID_CACHE.setdefault(repo_id, repo_id)
    if repo_id not in huggingface._ID_CACHE:
        from huggingface_hub import HfApi

        huggingface._ID_CACHE[repo_id] = HfApi().model_info(repo_id).id
    data = {"repo_id": huggingface._ID_CACHE[repo_id], "revision": revision, "task": task}
    return f"{to_import_path(TransformersModel)}:{json.dumps(data)}"


def ndif_host() -> str:
    host = (os.environ.get("NDIF_HOST") or DEFAULT_HOST).rstrip("/")
    if not host.startswith(("http://", "https://")):
        raise UserError(f"NDIF_HOST={host!r}: expected a URL starting with http:// or https://")
    return host


def served_models(host: str, api_key: str | None = None, timeout: float = 30.0) -> list[dict]:
    """The deployments NDIF at `host` reports (/status), one dict per replica, `model_key` always set."""
    import httpx

    headers = {"ndif-api-key": api_key} if api_key else None
    try:
        response = httpx.get(f"{host}/status", headers=headers, timeout=timeout)
        if response.status_code in (401, 403):
            raise UserError(f"NDIF at {host} refused the request ({response.status_code}): "
                            f"{'check' if api_key else 'set'} NDIF_API_KEY (from https://login.ndif.us)")
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise UserError(f"cannot reach NDIF at {host} ({type(exc).__name__}: {exc}); set NDIF_HOST") from None
    out = []
    for name, entry in response.json().get("deployments", {}).items():
        # a deployment NDIF could not size from the hub carries its key only in the replica's name
        key = entry.get("model_key") or (name.split(":ModelActor:", 1)[1] if ":ModelActor:" in name else name)
        out.append({**entry, "model_key": key})
    return out


def preflight(model_id: str, revision: str | None = None, host: str | None = None) -> str:
    """Check NDIF serves `model_id` before anything is loaded here; returns its model key."""
    import transformers

    from ..adapters import adapter_for
    from ..models.loading import resolve_model_path

    host = host or ndif_host()
    check_key(host)
    path = resolve_model_path(model_id)
    config = transformers.AutoConfig.from_pretrained(path, **({"revision": revision} if revision else {}))
    key = model_key(path, revision, task_for(adapter_for(config)))
    check_served(host, key, model_id)
    return key


def check_key(host: str) -> None:
    """The public NDIF serves no request without a key: say so before anything else (a server of your
    own may run without one)."""
    if host == DEFAULT_HOST and not _api_key():
        raise UserError(f"NDIF_API_KEY is not set: NDIF at {host} needs your API key (from https://login.ndif.us); "
                        "export NDIF_API_KEY=... and run again, or drop --remote / backend: ndif to run here")


def check_served(host: str, key: str, model_id: str) -> None:
    """A clear error when NDIF at `host` has no RUNNING deployment with this exact model key."""
    deployments = served_models(host, _api_key())
    mine = [d for d in deployments if d.get("model_key") == key]
    if any(d.get("application_state") == "RUNNING" for d in mine):
        log.info("NDIF at %s serves %s", host, model_id)
        return
    state = ", ".join(sorted({str(d.get("application_state")) for d in mine})) or "not deployed"
    hosted = sorted({str(d.get("repo_id") or d.get("model_key")) for d in deployments}) or ["nothing"]
    raise UserError(f"NDIF at {host} does not serve model {model_id!r} ({state}); it serves: {', '.join(hosted)}. "
                    f"Pick a hosted model, or deploy this one under the model key {key}")


def _client_model_class():
    from nnsight.intervention.envoy import Envoy
    from nnsight.modeling.transformers import TransformersModel

    class ClientModel(TransformersModel):
        """The remotable wrapper around the already-loaded checkpoint, keyed exactly as the server's
        TransformersModel, and running a trace exactly as LocalBackend's plain NNsight does. It
        builds no transformers pipeline (a pipeline would want a processor some families cannot
        build here, Qwen2.5-VL without torchvision, and look a local path up on the hub), and it
        passes anchorlab's collated inputs through untouched (TransformersModel would re-collate
        them and misread Qwen2.5-VL's 3-D position ids). This object travels with each request
        (the server wraps its own modules in it), so the server runs the same semantics."""

        def _wrap(self, module, *args, **kwargs):
            return module

        def _remoteable_class(self):
            return TransformersModel

        def _batch_size(self, *inputs, **kwargs):
            return Envoy._batch_size(self, *inputs, **kwargs)

        def _batch(self, invokes, fn):
            return Envoy._batch(self, invokes, fn)

    return ClientModel


@dataclass
class RequestStats:
    label: str
    sent: int
    received: int
    seconds: float
    attempts: int


class NdifBackend:
    """Same interface as LocalBackend (`name`, `bundle`, `trace`, `run`). `bundle` is the client's,
    normally weightless (`load_model(..., weights=False)`). `simulate=True` is nnsight's
    `remote="local"`: each request serialized as for the server, then deserialized with anchorlab hidden
    against `server` (a bundle with weights, by default `bundle` itself) and run in this process."""

    name = "ndif"

    def __init__(self, bundle, host: str | None = None, simulate: bool = False, retries: int = 4,
                 backoff: float = 2.0, check: bool = True, server=None):
        ClientModel = _client_model_class()
        self.bundle, self.simulate, self.retries, self.backoff = bundle, simulate, retries, backoff
        self.host = host or ndif_host()
        self.task = task_for(bundle.adapter)
        self.model_key = model_key(str(bundle.path), bundle.revision, self.task)
        self.model = self._wrap(ClientModel, bundle)
        if self.model.to_model_key() != self.model_key:  # pragma: no cover - guards an nnsight change
            raise UserError(f"NDIF model key mismatch: {self.model.to_model_key()} vs {self.model_key}")
        self.server = None
        if simulate:
            server = server or bundle
            if not server.has_weights:
                raise ValueError("simulate=True runs requests here: pass server=, a bundle with weights")
            self.server = self._wrap(ClientModel, server)
        # The server cannot import anchorlab: ship the whole (already imported) package by value. Looked up,
        # not imported, so this backend does not depend on the stages that use it.
        nnsight.register(sys.modules[__name__.partition(".")[0]])
        self.requests: list[RequestStats] = []
        if check and not simulate:
            self.check_served()

    @staticmethod
    def _wrap(cls, bundle):
        model = cls(bundle.model, task=task_for(bundle.adapter), revision=bundle.revision, tokenizer=bundle.tokenizer,
                    processor=bundle.processor)
        model.repo_id = str(bundle.path)
        return model

    def check_served(self) -> None:
        """Fail before a long run when the server does not run this exact model."""
        check_served(self.host, self.model_key, self.bundle.model_id)

    def trace(self, inputs: dict, fn, *args):
        """One forward with `fn(envoy, *args)` inside, as one request."""
        return self.run(one_trace, dict(inputs), fn, *args)

    def run(self, fn, *args):
        """`fn(session, *args)` as one request: its traces share the server's tensors (a KV cache
        never travels); only fn's return value comes back (on CPU)."""
        args = self._refs(args)
        label = getattr(args[1], "__name__", "") if fn is one_trace and len(args) > 1 else fn.__name__
        for attempt in range(1, self.retries + 2):
            started = time.perf_counter()
            try:
                result, sent, received = self._request(fn, args)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt > self.retries:
                    raise UserError(f"NDIF request {label} failed {attempt} times ({type(exc).__name__}: {exc}); "
                                    "finished batches are stored: rerun with --resume to continue") from None
                wait = self.backoff * 2 ** (attempt - 1)
                log.warning("NDIF request %s: %s (%s); retry %d/%d in %.1f s", label, type(exc).__name__, exc,
                            attempt, self.retries, wait)
                time.sleep(wait)
                continue
            stats = RequestStats(label, sent, received, time.perf_counter() - started, attempt)
            self.requests.append(stats)
            log.info("NDIF request %d (%s): sent %d B, received %d B, %.2f s", len(self.requests), label,
                     sent, received, stats.seconds)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, fn, args):
        model = self.model
        transport = SimulatedTransport(self.server) if self.simulate else CountingRemote(
            self.model_key, host=self.host, api_key=_api_key(), env=model._remoteable_get_env())
        with torch.inference_mode():
            with model.session(backend=transport):
                result = nnsight.save(run_in_session(model, fn, args))
        return result, transport.sent, transport.received

    def _refs(self, args):
        """The ModelBundle becomes a stand-in resolved to the server's model (weights and tokenizers never
        travel; weights a trace reads are WeightRefs already). A meta tensor here is a weight read on the
        client: refused, naming the request, before anything is sent."""
        def no_meta(t):
            if t.is_meta:
                raise ValueError(f"NDIF request {label}: an argument holds a meta tensor {tuple(t.shape)}, a weight "
                                 "read on the weightless client; take it with bundle.weight(name) / bundle.lens")
            return t

        label = getattr(args[1], "__name__", "") if len(args) > 1 and callable(args[1]) else ""
        args = tuple(bundle_stand_in(a) if a is self.bundle else a for a in args)
        return map_tensors(args, no_meta)

    def summary(self, since: int = 0) -> dict:
        """Totals of the requests made since request index `since` (for result attrs)."""
        done = self.requests[since:]
        return {"ndif_requests": len(done), "ndif_bytes_sent": sum(r.sent for r in done),
                "ndif_bytes_received": sum(r.received for r in done),
                "ndif_seconds": round(sum(r.seconds for r in done), 3),
                "ndif_host": "simulated" if self.simulate else self.host}


def _api_key() -> str | None:
    return os.environ.get("NDIF_API_KEY") or None


__all__ = ["NdifBackend", "RequestStats", "TransientError", "model_key", "served_models", "task_for"]
