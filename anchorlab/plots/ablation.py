"""Fig. 14 style ablation panel: the same curve for every combination of the swept parameters."""
from __future__ import annotations

import itertools
from pathlib import Path

from .style import MARKERS, band, ci_text, legend_outside, plt, save, task_title

CURVES = (  # (variable, selection, y label) drawn when the result has it
    ("ldar", {}, "LDAR"),
    ("delta_mean", {"metric": "dS", "sublayer": "attn"}, r"$\delta_A(\Delta S)$"),
    ("nssd_mean", {}, "NSSD"),
)


def plot_ablation(ds, fig_dir, name: str) -> list[Path]:
    params = [p.strip() for p in ds.attrs.get("ablation", "").split(",") if p.strip()]
    var = next(((v, sel, label) for v, sel, label in CURVES if v in ds), None)
    if not params or var is None:
        return []
    var, sel, label = var
    sel = {k: v for k, v in sel.items() if k in ds[var].dims}
    tasks = list(ds["task"].values)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False, sharey=True)
    cmap = plt.get_cmap("viridis")
    combos = list(itertools.product(*(ds[p].values for p in params)))
    for ax, task in zip(axes[0], tasks):
        for i, combo in enumerate(combos):
            pick = dict(zip(params, combo), task=task, **sel)
            da = ds[var].sel(pick)
            extra = [d for d in da.dims if d != "layer"]
            if extra:  # e.g. knockout's pathway: average it for the panel
                da = da.mean(extra)
            ci = None
            if f"{var}_ci" in ds:
                ci_da = ds[f"{var}_ci"].sel(pick)
                ci = ci_da.mean([d for d in ci_da.dims if d not in ("layer", "bound")]).values
            label_i = ", ".join(f"{p}={v}" for p, v in zip(params, combo))
            color = cmap(i / max(1, len(combos) - 1))
            if ci is not None:
                band(ax, ds["layer"].values, da.values, ci, color, label_i, marker=MARKERS[i % len(MARKERS)])
            else:
                ax.plot(ds["layer"].values, da.values, color=color, label=label_i, marker=MARKERS[i % len(MARKERS)])
        ax.set(
            xlabel="layer",
            ylabel=f"{label} (mean, {ci_text(ds)})" if f"{var}_ci" in ds else label,
            title=task_title(ds, task, f"ablation of {', '.join(params)}"),
        )
    legend_outside(axes[0][-1])
    stem = name if name.endswith("ablation") else f"{name}_ablation"  # never signal_ablation_ablation.png
    return [save(fig, Path(fig_dir) / f"{stem}.png", ds)]
