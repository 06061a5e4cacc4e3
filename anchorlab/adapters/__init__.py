"""Adapter registry: the family is detected from the model config, never from a name."""
from __future__ import annotations

from ..errors import UserError
from .base import Adapter, Encoded

_FAMILIES: dict[str, Adapter] = {}


def register(adapter: Adapter) -> Adapter:
    _FAMILIES[adapter.family] = adapter
    return adapter


def known_families() -> dict[str, tuple[str, ...]]:
    _load_builtin()
    return {name: a.model_types for name, a in _FAMILIES.items()}


class UnknownFamilyError(UserError):
    pass


def adapter_for(config) -> Adapter:
    _load_builtin()
    model_type = getattr(config, "model_type", None)
    for adapter in _FAMILIES.values():
        if model_type in adapter.model_types:
            return adapter
    listed = "; ".join(f"{name} ({', '.join(types)})" for name, types in known_families().items())
    raise UnknownFamilyError(
        f"model type {model_type!r} has no anchorlab adapter. Known families (model types): {listed}"
    )


def _load_builtin() -> None:
    # always import them (a no-op once loaded): a module that imported one adapter directly
    # (anchorlab.toy imports llava) must not leave the others unregistered
    from . import internvl, llava, qwen2_5_vl, text  # noqa: F401  (each registers itself)


__all__ = ["Adapter", "Encoded", "adapter_for", "known_families", "register", "UnknownFamilyError"]
