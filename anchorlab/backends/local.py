"""Run nnsight traces on the in-process model."""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, Callable

import nnsight
import torch
from nnsight import NNsight

from ..models.loading import ModelBundle
from .session import with_grad

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 1 << 20


def return_freed_tensors_to_os() -> bool:
    """CPU tensors of 1 MiB or more get their own mappings, unmapped when freed.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
    tensors of a few MiB come from the heap and freed ones stay in the process; a run's RSS then grew
    batch by batch (measured: +30 to +160 MiB retained between traces, peaks 222-343 MiB for batches
    predicted at 185 MiB, differing run to run) and `memory_budget` could not hold. A fixed threshold
    makes RSS follow the live tensors (207-210 MiB, run to run). No-op where libc is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


class LocalBackend:
    name = "local"

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        if bundle.device.type == "cpu":
            return_freed_tensors_to_os()
        self.envoy = NNsight(bundle.model)
        self.requests: list = []  # NdifBackend counts requests; nothing travels here
        self.traces = 0  # forward passes run (result attrs `passes`: what `anchorlab estimate` prices)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(self, *args)`, where fn calls `.trace`: what NdifBackend sends as one request."""
        return fn(self, *args)

    def summary(self, since: int = 0) -> dict:
        return {}

    def trace(self, inputs: dict[str, torch.Tensor], fn: Callable[..., Any], *args: Any) -> Any:
        """One forward with `fn(envoy, *args)` run inside the trace; returns what fn returned."""
        with torch.inference_mode():
            return self._trace(inputs, fn, *args)

    def grad_trace(self, inputs: dict[str, torch.Tensor], fn: Callable[..., Any], *args: Any) -> Any:
        """As `trace`, with autograd on (fn may call torch.autograd.grad), whatever mode the caller is in."""
        return with_grad(self._trace, inputs, fn, *args)

    def _trace(self, inputs, fn, *args):
        device = self.bundle.device
        self.traces += 1
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        with self.envoy.trace(**inputs):
            result = nnsight.save(fn(self.envoy, *args))
        return result
