"""Paper-style figures for docs/method.md §3.4–3.5: Φ_f/Φ_c and δ(S_f) per layer (Fig. 6), δ(ΔS) per layer
(Fig. 7), and the layer × head map of mean head scores with the modality-shared heads marked (Fig. 8)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from .style import band, ci_text, error_bars, legend_outside, plt, save, task_title

SUBLAYER_STYLE = {"attn": ("#1f77b4", r"attention $\delta_A$"), "mlp": ("#ff7f0e", r"MLP $\delta_F$")}
PHI_SIDES = (("followed", "#2ca02c", r"$\Phi_f$ (followed)"), ("competitor", "#7f7f7f", r"$\Phi_c$ (competitor)"))


def _bars(ax, ds, task, metric):
    layers = ds["layer"].values
    width = 0.4
    for j, sub in enumerate(("attn", "mlp")):
        mean = ds["delta_mean"].sel(task=task, metric=metric, sublayer=sub).values
        ci = ds["delta_mean_ci"].sel(task=task, metric=metric, sublayer=sub).values
        err = error_bars(mean, ci)
        color, label = SUBLAYER_STYLE[sub]
        ax.bar(layers + (j - 0.5) * width, mean, width, yerr=err, color=color, label=label, capsize=2,
               error_kw={"lw": 0.8})
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(layers)
    ax.set(xlabel="layer")


def plot_attribution(ds, fig_dir) -> list[Path]:
    fig_dir = Path(fig_dir)
    tasks = list(ds["task"].values)
    layers = ds["layer"].values
    out = []
    has_delta = "delta_mean" in ds
    ncols = 2 if has_delta else 1
    fig, axes = plt.subplots(len(tasks), ncols, figsize=(5 * ncols, 3.4 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks):
        ax = row[0]
        for side, color, label in PHI_SIDES:
            band(ax, layers, ds["phi_mean"].sel(task=task, side=side).values,
                 ds["phi_mean_ci"].sel(task=task, side=side).values, color, label)
        ax.set(xlabel="layer", ylabel=f"latent logit (mean, {ci_text(ds)})",
               title=task_title(ds, task, r"$\Phi_f$ vs $\Phi_c$"))
        legend_outside(ax)
        if has_delta:
            _bars(row[1], ds, task, "S_f")
            row[1].set(
                ylabel=rf"$\delta(S_f)$ (mean, {ci_text(ds)})", title=task_title(ds, task, r"contributions to $S_f$")
            )
            legend_outside(row[1])
    out.append(save(fig, fig_dir / "attribution_signal.png", ds))

    if has_delta:
        fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.4), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            _bars(ax, ds, task, "dS")
            ax.set(
                ylabel=rf"$\delta(\Delta S)$ (mean, {ci_text(ds)})",
                title=task_title(ds, task, r"arbitration margin $\Delta S$"),
            )
            legend_outside(ax)
        out.append(save(fig, fig_dir / "attribution_margin.png", ds))

    if "head_score_mean" in ds:
        out.append(_heatmap(ds, tasks, fig_dir))
    return out


def _heatmap(ds, tasks, fig_dir) -> Path:
    scores = ds["head_score_mean"].transpose("task", "layer", "head").values
    vmax = float(np.nanmax(np.abs(scores))) or 1.0
    shared = ds["shared_heads"].transpose("layer", "head").values
    n_layers, n_heads = shared.shape
    n = ds.attrs.get("shared_top_n")
    panel = max(0.28 * n_heads, 3.8)  # wide enough for the two-line title on a model with few heads
    fig, axes = plt.subplots(1, len(tasks), figsize=(panel * len(tasks) + 2.5, 0.3 * n_layers + 1.8),
                             squeeze=False)
    for ax, task, grid in zip(axes[0], tasks, scores):
        im = ax.imshow(grid, cmap="RdBu_r", vmin=-vmax, vmax=vmax, origin="lower", aspect="auto")
        rank = ds["head_rank"].sel(task=task).transpose("layer", "head").values
        ys, xs = np.nonzero(rank <= n)
        ax.scatter(xs, ys, s=8, c="k", marker="o", label=f"top {n}")
        for layer, head in zip(*np.nonzero(shared)):
            ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, ec="k", lw=1.6))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(
            xlabel="head",
            ylabel="layer",
            title=task_title(ds, task, r"$\delta_A^{(l,h)}(\Delta S)$")
            + f"\n{int(shared.sum())} shared heads (boxed) in top {n}",
        )
        legend_outside(ax)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return save(fig, fig_dir / "attribution_heads.png", ds)
