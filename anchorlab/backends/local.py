"""Run nnsight traces on the in-process model."""
from __future__ import annotations

from typing import Any, Callable

import nnsight
import torch
from nnsight import NNsight

from ..models.loading import ModelBundle


class LocalBackend:
    name = "local"

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
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
        device = self.bundle.device
        self.traces += 1
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        with torch.inference_mode():
            with self.envoy.trace(**inputs):
                result = nnsight.save(fn(self.envoy, *args))
        return result
