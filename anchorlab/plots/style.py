"""Shared figure conventions: headless backend, task and pathway colours, n in every title, CI bands
with markers, error bars that are never negative, legends outside the data."""
from __future__ import annotations

import zlib
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

TASK_LABEL = {"vf": "vision following", "tf": "text following"}
TASK_COLOR = {"vf": "#1f77b4", "tf": "#d62728"}
# One colour per pathway in every figure (knockout bars and curves, ablations): the default ones fixed,
# any other from its name, so the same pathway never changes colour between runs.
PATHWAY_COLOR = {
    "vision->last": "#1f77b4", "text->last": "#ff7f0e", "vision->text": "#2ca02c", "context->instruction": "#d62728",
    "vision->instruction": "#9467bd", "context->last": "#8c564b", "instruction->last": "#e377c2",
    "vision->context": "#7f7f7f", "query->last": "#bcbd22", "context->query": "#17becf",
}
MARKERS = "osD^vP*X"


def pathway_color(pathway: str) -> str:
    if pathway in PATHWAY_COLOR:
        return PATHWAY_COLOR[pathway]
    return plt.get_cmap("tab20")(zlib.crc32(pathway.encode()) % 20)


def n_of(ds, task) -> int:
    """Prompts behind a task's aggregates: the selected rows, else every sample."""
    if "selected" in ds:
        sel = ds["selected"].sel(task=task)
        sel = sel.isel({d: 0 for d in sel.dims if d != "sample"})  # a sweep repeats the same selection
        return int(sel.sum())
    return int(ds.sizes.get("sample", 0))


def task_title(ds, task, what: str = "") -> str:
    label = TASK_LABEL.get(str(task), str(task))
    return f"{label}{': ' + what if what else ''} (n = {n_of(ds, task)})"


def error_bars(mean, ci) -> np.ndarray:
    """[2, N] distances to a percentile CI, clipped at 0: a CI need not contain the mean."""
    mean, ci = np.asarray(mean, dtype=float), np.asarray(ci, dtype=float)
    return np.clip(np.stack([mean - ci[..., 0], ci[..., 1] - mean]), 0, None)


def band(ax, x, mean, ci, color, label, marker="o", offset: float = 0.0, **kw):
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    x = np.asarray(x, dtype=float) + offset
    ax.plot(x, mean, color=color, label=label, marker=marker, ms=4, **kw)
    ax.fill_between(x, ci[..., 0], ci[..., 1], color=color, alpha=0.15, linewidth=0)


def legend_outside(ax, **kw) -> None:
    """The legend right of the axes, never over the data."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False, **kw)


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path
