"""Shared figure conventions: headless backend, task and pathway colours, n in every title, CI bands
with markers (error bars where a curve has one point), error bars that are never negative, legends
outside the data, and a footer naming the model, recipe and prompts, so a figure reads alone."""
from __future__ import annotations

import zlib
from pathlib import Path

import matplotlib
import numpy as np
import yaml

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


def ci_text(ds) -> str:
    """The CI's coverage as the result states it ("95% CI")."""
    level = float(ds.attrs.get("param_ci_level", 0.95))
    return f"{100 * level:g}% CI"


def error_bars(mean, ci) -> np.ndarray:
    """[2, N] distances to a percentile CI, clipped at 0: a CI need not contain the mean."""
    mean, ci = np.asarray(mean, dtype=float), np.asarray(ci, dtype=float)
    return np.clip(np.stack([mean - ci[..., 0], ci[..., 1] - mean]), 0, None)


def band(ax, x, mean, ci, color, label, marker="o", offset: float = 0.0, **kw):
    """A curve with its CI as a shaded band; a lone point (a one-value sweep) gets an error bar with
    caps instead, since a band over one x has no width."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    x = np.asarray(x, dtype=float) + offset
    ci = np.asarray(ci, dtype=float)
    if len(x) == 1:
        ax.errorbar(x, mean, yerr=error_bars(mean, ci), color=color, label=label, marker=marker, ms=4, capsize=4,
                    elinewidth=1.2, **kw)
        return
    ax.plot(x, mean, color=color, label=label, marker=marker, ms=4, **kw)
    ax.fill_between(x, ci[..., 0], ci[..., 1], color=color, alpha=0.15, linewidth=0)


def legend_outside(ax, **kw) -> None:
    """The legend right of the axes, never over the data."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False, **kw)


def recipe_name(ds) -> str | None:
    """The recipe's `name` from the result's resolved recipe (None when the result carries no recipe)."""
    for key in ("recipe_resolved", "recipe"):
        try:
            recipe = yaml.safe_load(ds.attrs.get(key) or "")
        except yaml.YAMLError:
            continue
        if isinstance(recipe, dict) and recipe.get("name"):
            return str(recipe["name"])
    return None


def footer_text(ds) -> str:
    """model · recipe · prompts (· positions): what produced the figure, from the result's attrs."""
    parts = [f"model {ds.attrs.get('model_id', '?')}", f"recipe {recipe_name(ds) or '?'}"]
    if "task" in ds.coords:
        parts.append(f"{sum(n_of(ds, t) for t in ds['task'].values)} prompts")
    if "param_positions" in ds.attrs:
        parts.append(f"positions {ds.attrs['param_positions']}")
    return "   ·   ".join(parts)


def save(fig, path: Path, ds, notes: str = "") -> Path:
    """Write the figure with its footer (and any notes above it) under the axes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    text = "\n".join(filter(None, [notes, footer_text(ds)]))
    fig.text(0.01, 0.0, text, ha="left", va="top", fontsize=7, color="#444444")
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path
