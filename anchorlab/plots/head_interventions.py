"""Fig. 9 style: MFR vs number of blocked heads / vs α per task, targeted vs random (CI band over
samples, seed-averaged) vs layer-matched vs shared, and the general-capability accuracy beside it.

Every setting has its own colour, marker and a small x offset, so lines that coincide stay visible
(and a note names them); a setting whose head set is empty (no shared heads) gets no line."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .style import MARKERS, band, legend_outside, plt, save, task_title

COLORS = {"original": "#7f7f7f", "targeted": "#d62728", "random": "#1f77b4", "random_layer_matched": "#9467bd",
          "shared": "#2ca02c"}


def _coinciding(curves: dict[str, np.ndarray]) -> list[str]:
    names = list(curves)
    return [f"{a} = {b}" for i, a in enumerate(names) for b in names[i + 1:] if np.allclose(curves[a], curves[b])]


def plot_heads(ds, fig_dir) -> list[Path]:
    sweep = ds.attrs["sweep_dim"]
    tasks = list(ds["task"].values)
    x = ds[sweep].values.astype(float)
    step = np.diff(x).min() if len(x) > 1 else 1.0
    settings = [str(s) for s in ds["setting"].values]
    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks) + 1.5, 6.6), squeeze=False, sharex=True)
    for col, task in enumerate(tasks):
        for row, (var, label) in enumerate((("mfr", "MFR"), ("accuracy", "no-conflict accuracy"))):
            ax = axes[row][col]
            curves = {}
            for k, setting in enumerate(settings):
                empty = "set_size" in ds and setting != "original" and int(ds["set_size"].sel(task=task, setting=setting).max()) == 0
                if empty:
                    continue
                mean = ds[var].sel(task=task, setting=setting).mean("seed").values
                ci = ds[f"{var}_ci"].sel(task=task, setting=setting).values
                curves[setting] = mean
                offset = (k - (len(settings) - 1) / 2) * 0.03 * step
                band(ax, x, mean, ci, COLORS.get(setting), setting.replace("_", " "), marker=MARKERS[k % len(MARKERS)],
                     offset=offset)
            same = _coinciding(curves)
            if same:
                ax.text(0.01, 0.02, "identical: " + "; ".join(same).replace("_", " "), transform=ax.transAxes,
                        fontsize=6, color="#555555")
            ax.set(ylim=(-0.02, 1.02), ylabel=f"{label} (95% CI)")
            if row == 0:
                n_sets = int(ds.attrs.get("param_seeds", ds.sizes.get("seed", 1)))
                ax.set_title(task_title(ds, task, "blocking" if sweep == "n_heads" else "amplifying")
                             + f"\nrandom sets: {n_sets} seeds")
            else:
                ax.set_title(f"no-conflict twins: n = {int(ds['n_neutral'].sel(task=task))}", fontsize=9)
                ax.set_xlabel("heads blocked (G)" if sweep == "n_heads" else "amplification α")
    legend_outside(axes[0][-1])
    empty_sets = [s for s in settings if "set_size" in ds and s != "original" and int(ds["set_size"].sel(setting=s).max()) == 0]
    if empty_sets:
        fig.text(0.01, 0.005, f"not drawn (empty head set): {', '.join(empty_sets)}", fontsize=7, color="#555555")
    name = "heads_block_mfr.png" if sweep == "n_heads" else "heads_amplify_mfr.png"
    return [save(fig, Path(fig_dir) / name)]
