"""Where things are in a model of a family: the dotted-path walker, weights by name, the lens weights.

Every other stage reaches modules through these, so module paths stay adapter facts.
`envoy_at` and `WeightRef.read` also run inside traces (shipped to NDIF by value): torch/nnsight only.
"""
from __future__ import annotations

import torch

from ..method.lens import FinalNorm, LensWeights


def envoy_at(envoy, dotted: str):
    """Follow an adapter's dotted module path on the nnsight envoy (or torch module) tree."""
    node = envoy
    for part in dotted.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def norm_eps(norm) -> float:
    """A norm module's epsilon (RMSNorm calls it variance_epsilon, LayerNorm eps)."""
    return float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))


class WeightRef:
    """A model weight named, not held, optionally with the rows to take (`ref[ids]`).

    An NDIF client builds its model on the meta device: the weights a trace needs (dictionary rows of
    the unembedding, W_O, norm weights) travel as names and are read from the server's copy inside the
    request (`backends.session.resolve_params` calls `read`). W_O of every layer is gigabytes at 7B; its
    name is a few bytes."""

    device = torch.device("cpu")  # row indices taken against a ref stay on the client's CPU until sent

    def __init__(self, name: str, index: torch.Tensor | None = None):
        self.name, self.index = name, index

    def __getitem__(self, index: torch.Tensor) -> "WeightRef":
        if self.index is not None:
            raise TypeError(f"{self!r} is already indexed")
        return WeightRef(self.name, index)

    def read(self, module) -> torch.Tensor:
        weight = module.get_parameter(self.name).detach()
        return weight if self.index is None else weight[self.index.to(weight.device)]

    def __repr__(self) -> str:
        rows = "" if self.index is None else f"[{tuple(self.index.shape)} rows]"
        return f"WeightRef({self.name!r}){rows}"


def weight(model, name: str):
    """The parameter `name` of `model`, detached, or a WeightRef when the model has no weights here."""
    param = model.get_parameter(name)
    return WeightRef(name) if param.is_meta else param.detach()


def lens_weights(model, adapter) -> LensWeights:
    """The unembedding and final norm of `model` (detached: the lens never trains them; WeightRefs on a
    weightless NDIF client)."""
    norm = model.get_submodule(adapter.final_norm)
    return LensWeights(weight(model, f"{adapter.unembed}.weight"),
                       FinalNorm(weight(model, f"{adapter.final_norm}.weight"), norm_eps(norm), adapter.norm_kind))
