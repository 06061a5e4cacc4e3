"""Adapter registry: the family is detected from the model config, never from a name."""
from __future__ import annotations

from ..errors import UserError
from .base import Adapter, Encoded
from .internvl import INTERNVL
from .llava import LLAVA
from .qwen2_5_vl import QWEN2_5_VL
from .text import TEXT

_FAMILIES: dict[str, Adapter] = {a.family: a for a in (LLAVA, QWEN2_5_VL, INTERNVL, TEXT)}


def register(adapter: Adapter) -> Adapter:
    """Add a family (a user's own adapter); the built-in ones are registered above."""
    _FAMILIES[adapter.family] = adapter
    return adapter


def known_families() -> dict[str, tuple[str, ...]]:
    return {name: a.model_types for name, a in _FAMILIES.items()}


class UnknownFamilyError(UserError):
    pass


def adapter_for(config) -> Adapter:
    model_type = getattr(config, "model_type", None)
    for adapter in _FAMILIES.values():
        if model_type in adapter.model_types:
            return adapter
    listed = "; ".join(f"{name} ({', '.join(types)})" for name, types in known_families().items())
    raise UnknownFamilyError(
        f"model type {model_type!r} has no anchorlab adapter. Known families (model types): {listed}"
    )


__all__ = ["Adapter", "Encoded", "adapter_for", "known_families", "register", "UnknownFamilyError"]
