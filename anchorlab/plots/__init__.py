"""Figures drawn from saved results only: `draw` picks the figure family from the result's attrs.

Analyses never import this package; the executor and `anchorlab plot` call `draw` on a written
dataset, so any figure can be redrawn later from the .nc files alone.
"""
from __future__ import annotations

from pathlib import Path

from .ablation import plot_ablation
from .attribution import plot_attribution
from .head_interventions import plot_heads
from .knockout import plot_knockout, plot_path_blocking
from .signal import plot_signal

FIGURES = {
    "signal": plot_signal,
    "knockout": plot_knockout,
    "path_blocking": plot_path_blocking,
    "attribution": plot_attribution,
    "heads_block": plot_heads,
    "heads_amplify": plot_heads,
}


def draw(ds, fig_dir: Path, name: str) -> list[Path]:
    """The figures of result `name` (its `analysis` attr names the kind; a sweep draws the ablation panel)."""
    if ds.attrs.get("status") == "not run":
        return []
    if "ablation" in ds.attrs:
        return plot_ablation(ds, fig_dir, name)
    return FIGURES[ds.attrs["analysis"]](ds, fig_dir)
