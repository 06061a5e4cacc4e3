"""Toy LLaVA models shipped inside the package, so tests and demos need no network.

`toy:NAME` model ids resolve here (models/loading.py). The weights are trained outside the library
(`python -m organisms train`, the top-level organisms/ folder) on the `toy` and `organism` data
sources (data/toy.py, data/organism.py).
"""
from __future__ import annotations

from pathlib import Path

VARIANTS: tuple[str, ...] = ("arbiter", "arbiter-flawed")
# The model organism with a planted instruction anchor (organisms/anchored.py, circuit.json beside the weights).
ORGANISMS: tuple[str, ...] = ("anchored", "anchored-flawed")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def shipped_path(name: str) -> Path:
    """The save_pretrained folder of a shipped variant (model, tokenizer, processor, training.json)."""
    if name not in VARIANTS + ORGANISMS:
        raise ValueError(f"unknown toy model {name!r}; shipped variants: {', '.join(VARIANTS + ORGANISMS)}")
    return WEIGHTS_DIR / name


__all__ = ["ORGANISMS", "VARIANTS", "WEIGHTS_DIR", "shipped_path"]
