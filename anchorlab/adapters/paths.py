"""Where things are in a model of a family: the dotted-path walker and the lens weights.

Every other stage reaches modules through these two, so module paths stay adapter facts.
`envoy_at` also runs inside traces (shipped to NDIF by value): torch/nnsight only.
"""
from __future__ import annotations

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


def lens_weights(model, adapter) -> LensWeights:
    """The unembedding and final norm of `model` (detached: the lens never trains them)."""
    norm = model.get_submodule(adapter.final_norm)
    return LensWeights(model.get_submodule(adapter.unembed).weight.detach(),
                       FinalNorm(norm.weight.detach(), norm_eps(norm), adapter.norm_kind))
