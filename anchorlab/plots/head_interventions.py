"""Fig. 9 style: MFR vs number of blocked heads / vs α per task, targeted vs random (CI band over
samples, seed-averaged) vs layer-matched vs shared, and the general-capability accuracy beside it."""
from __future__ import annotations

from pathlib import Path

from .style import TASK_LABEL, band, plt, save

COLORS = {"original": "#7f7f7f", "targeted": "#d62728", "random": "#1f77b4", "random_layer_matched": "#9467bd",
          "shared": "#2ca02c"}


def plot_heads(ds, fig_dir) -> list[Path]:
    sweep = ds.attrs["sweep_dim"]
    tasks = list(ds["task"].values)
    x = ds[sweep].values
    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks), 6.4), squeeze=False, sharex=True)
    for col, task in enumerate(tasks):
        for row, (var, label) in enumerate((("mfr", "MFR"), ("accuracy", "no-conflict accuracy"))):
            ax = axes[row][col]
            for setting in ds["setting"].values:
                mean = ds[var].sel(task=task, setting=setting).mean("seed").values
                ci = ds[f"{var}_ci"].sel(task=task, setting=setting).values
                band(ax, x, mean, ci, COLORS.get(str(setting)), str(setting).replace("_", " "))
            ax.set(ylim=(-0.02, 1.02), ylabel=f"{label} (95% CI)")
            if row == 0:
                ax.set_title(f"{TASK_LABEL.get(task, task)}: {'blocking' if sweep == 'n_heads' else 'amplifying'}")
            else:
                ax.set_xlabel("heads blocked (G)" if sweep == "n_heads" else "amplification α")
    axes[0][-1].legend(fontsize=7)
    name = "heads_block_mfr.png" if sweep == "n_heads" else "heads_amplify_mfr.png"
    return [save(fig, Path(fig_dir) / name)]
