"""Paper-style figures for docs/method.md §3.2: LDAR per layer (Fig. 5a) and Φ_f vs Φ_c (Fig. 6a)."""
from __future__ import annotations

from pathlib import Path

from .style import TASK_COLOR, band, legend_outside, plt, save, task_title


def plot_signal(ds, fig_dir) -> list[Path]:
    fig_dir = Path(fig_dir)
    layers = ds["layer"].values
    out = []

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, (var, title) in zip(axes, (("ldar", "LDAR at instruction positions"), ("sync_rate", "decision synchrony"))):
        for task in ds["task"].values:
            band(ax, layers, ds[var].sel(task=task).values, ds[f"{var}_ci"].sel(task=task).values,
                 TASK_COLOR[task], task_title(ds, task), marker="o" if task == "vf" else "s")
        ax.axhline(0.5, ls="--", color="grey", lw=1)
        ax.set(xlabel="layer", title=title, ylim=(-0.02, 1.02))
    axes[0].set_ylabel("rate (95% CI)")
    legend_outside(axes[1])
    out.append(save(fig, fig_dir / "signal_ldar.png"))

    tasks = list(ds["task"].values)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for side, color, label, marker in (("followed", "#2ca02c", "Φ_f (followed)", "o"),
                                           ("competitor", "#7f7f7f", "Φ_c (competitor)", "s")):
            band(ax, layers, ds["signal_mean"].sel(task=task, side=side).values,
                 ds["signal_mean_ci"].sel(task=task, side=side).values, color, label, marker=marker)
        ax.set(xlabel="layer", ylabel="latent logit (mean, 95% CI)", title=task_title(ds, task))
    legend_outside(axes[0][-1])
    out.append(save(fig, fig_dir / "signal_trajectory.png"))
    return out
