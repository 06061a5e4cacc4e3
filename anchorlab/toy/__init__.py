"""Toy LLaVA models shipped inside the package, so tests and demos need no network.

`toy:NAME` model ids resolve here (models/loading.py). The weights are trained outside the library
(`python -m organisms train`, the top-level organisms/ folder) on the `toy`, `organism` and
`organism-heldout` data sources' generators (data/toy.py, data/organism.py, data/organism_family.py).
"""
from __future__ import annotations

from pathlib import Path

VARIANTS: tuple[str, ...] = ("arbiter", "arbiter-flawed")
# The model organism with a planted instruction anchor (organisms/anchored.py, circuit.json beside the weights).
ORGANISMS: tuple[str, ...] = ("anchored", "anchored-flawed")
# The organism family, trained by SIIT on behaviour and interchange only (organisms/family.py, organisms/specs/):
# circuits of 2 to 4 heads at `last`, one with a backup pair, and an unplanted control.
FAMILY: tuple[str, ...] = ("organism-a", "organism-b", "organism-backup", "organism-control")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def shipped_path(name: str) -> Path:
    """The save_pretrained folder of a shipped variant (model, tokenizer, processor, training.json)."""
    if name not in VARIANTS + ORGANISMS + FAMILY:
        raise ValueError(f"unknown toy model {name!r}; shipped variants: {', '.join(VARIANTS + ORGANISMS + FAMILY)}")
    return WEIGHTS_DIR / name


__all__ = ["FAMILY", "ORGANISMS", "VARIANTS", "WEIGHTS_DIR", "shipped_path"]
