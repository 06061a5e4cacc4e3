"""Paper-style figures for docs/method.md §3.2: LDAR per layer (Fig. 5a) and Φ_f vs Φ_c (Fig. 6a)."""
from __future__ import annotations

from pathlib import Path

from .style import TASK_COLOR, band, ci_text, legend_outside, plt, save, task_title


def plot_signal(ds, fig_dir) -> list[Path]:
    fig_dir = Path(fig_dir)
    layers = ds["layer"].values
    out = []

    positions = ds.attrs.get("param_positions", "instruction")
    titles = (("ldar", f"LDAR at {positions} positions"),
              ("sync_rate", f"decision synchrony: {positions} positions vs last\n"
                            r"(share with the same sign of $\Phi_v - \Phi_t$ at both)"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, (var, title) in zip(axes, titles):
        for task in ds["task"].values:
            band(ax, layers, ds[var].sel(task=task).values, ds[f"{var}_ci"].sel(task=task).values,
                 TASK_COLOR[task], task_title(ds, task), marker="o" if task == "vf" else "s")
        ax.axhline(0.5, ls="--", color="grey", lw=1)
        ax.set(xlabel="layer", title=title, ylim=(-0.02, 1.02))
    axes[0].set_ylabel(f"rate ({ci_text(ds)})")
    legend_outside(axes[1])
    out.append(save(fig, fig_dir / "signal_ldar.png", ds))

    tasks = list(ds["task"].values)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for side, color, label, marker in (("followed", "#2ca02c", r"$\Phi_f$ (followed)", "o"),
                                           ("competitor", "#7f7f7f", r"$\Phi_c$ (competitor)", "s")):
            band(ax, layers, ds["signal_mean"].sel(task=task, side=side).values,
                 ds["signal_mean_ci"].sel(task=task, side=side).values, color, label, marker=marker)
        ax.set(xlabel="layer", ylabel=f"latent logit (mean, {ci_text(ds)})", title=task_title(ds, task))
    legend_outside(axes[0][-1])
    out.append(save(fig, fig_dir / "signal_trajectory.png", ds))
    return out
