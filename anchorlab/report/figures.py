"""Figures of a saved result: the analysis the result names draws them (its `figures` hook), or the
ablation panel for a sweep; `anchorlab plot` and the executor both come here."""
from __future__ import annotations

from pathlib import Path

from ..analyses import REGISTRY
from ..plots.ablation import plot_ablation


def draw(ds, fig_dir: Path, name: str) -> list[Path]:
    """The figures of result `name`; none for a result that did not run or that no analysis made."""
    kind = ds.attrs.get("analysis")
    if ds.attrs.get("status") == "not run" or kind not in REGISTRY:
        return []
    if "ablation" in ds.attrs:
        return plot_ablation(ds, fig_dir, name)
    return REGISTRY[kind].figures(ds, fig_dir)
