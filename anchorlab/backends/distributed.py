"""Data-parallel runs under torchrun: which process this is, and how the processes agree.

`torchrun --nproc-per-node N -m anchorlab run RECIPE` starts N processes (WORLD_SIZE, RANK,
LOCAL_RANK in their environment). Each takes its own device (cuda:LOCAL_RANK, or the CPU) and
computes its share of the batches; the results travel through the run folder (chunk files), never
through the process group, which only carries barriers and small decisions of rank 0 (Gloo, on
CPU and GPU alike: no tensors are exchanged, so NCCL would buy nothing). Without torchrun the group
is one process and every method here is a no-op.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta

from ..errors import UserError

# Processes wait at barriers while rank 0 reduces and writes a result; a rank that dies is torn
# down by torchrun together with the others, so the wait only has to outlast the slowest reduction.
TIMEOUT = timedelta(hours=6)


class SharedError(UserError):
    """Rank 0's user error raised again on the other ranks, so that every rank stops; rank 0 prints it."""

    echoed = True  # the CLI prints a user error once, on rank 0


@dataclass(frozen=True)
class Group:
    """This process's place among torchrun's: rank in the world, and on its node (LOCAL_RANK)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def primary(self) -> bool:
        """Rank 0 writes run.json, the results, figures and summary; the others compute chunks."""
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world}"

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def share(self, value=None):
        """Rank 0's `value` on every rank (picklable)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value if self.primary else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gathered(self, value) -> list:
        """Every rank's `value` (picklable), in rank order."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        values = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def least(self, value):
        """The smallest of every rank's `value` (e.g. a memory budget every device must fit)."""
        return min(self.gathered(value))

    def total(self, value):
        """The sum of every rank's `value` (e.g. the forward passes each rank ran)."""
        return sum(self.gathered(value))

    def first(self, fn, then=None):
        """`fn()` on rank 0, before any other rank goes on; its user error stops every rank. The other
        ranks get `then()` when given (e.g. open what rank 0 created), else rank 0's return value."""
        if self.world == 1:
            return fn()
        if self.primary:
            try:
                value = fn()
            except UserError as exc:
                self.share(("error", str(exc)))
                raise
            self.share(("ok", None if then else value))
            return value
        outcome, value = self.share()
        if outcome == "error":
            raise SharedError(value)
        return then() if then else value

    def device(self, device: str) -> str:
        """This rank's device: cuda:LOCAL_RANK when the recipe asks for CUDA (`cuda`, `cuda:K`, or
        `auto` resolved to cuda), the recipe's device otherwise (N processes share the CPU)."""
        if self.world == 1 or not device.startswith("cuda"):
            return device
        import torch

        n = torch.cuda.device_count()
        if self.local_rank >= n:
            raise UserError(f"torchrun started {self.local_world} processes on this node but it has {n} CUDA "
                            f"device(s): use --nproc-per-node {n} or fewer")
        torch.cuda.set_device(self.local_rank)
        return f"cuda:{self.local_rank}"

    def mine(self, indices: list[int]) -> list[int]:
        """This rank's share of `indices` (every world-th one: batches are sorted by length, so the
        shares cost about the same)."""
        return indices[self.rank :: self.world]


SOLO = Group()  # a run without torchrun


def from_env() -> Group:
    """One process (no torchrun), or this process's place in torchrun's group (joined on the first
    call and left at exit, so one process may run several recipes)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    import torch.distributed as dist

    group = Group(
        rank=int(os.environ.get("RANK", "-1")),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )
    if not dist.is_initialized():
        try:
            if group.rank < 0:
                raise ValueError("RANK is not set")
            dist.init_process_group("gloo", timeout=TIMEOUT)
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"WORLD_SIZE={world} is set, but this process cannot join a data-parallel group ({exc}); "
                            "start data-parallel runs with torchrun, or unset WORLD_SIZE") from None
        atexit.register(dist.destroy_process_group)
    return group
