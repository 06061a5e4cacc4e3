"""Figures of `kind: head_patching`: per task, the layer × head maps of the mean margin change and the flip
rate when a head's output at the patched role comes from the instruction-swapped twin (top heads by
patch_rank marked), and attribution patching's estimate against the exact change (Spearman ρ)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .style import legend_outside, plt, save, task_title

TOP = 5  # heads marked on the maps


def plot_head_patching(ds, fig_dir) -> list[Path]:
    fig_dir = Path(fig_dir)
    out = [_maps(ds, list(ds["task"].values), fig_dir)]
    if "approx_change_mean" in ds:
        out.append(_approximation(ds, list(ds["task"].values), fig_dir))
    return out


def _maps(ds, tasks, fig_dir) -> Path:
    change = ds["margin_change_mean"].transpose("task", "layer", "head").values
    flips = ds["flip_rate"].transpose("task", "layer", "head").values
    vmax = float(np.nanmax(np.abs(change))) or 1.0
    n_layers, n_heads = change.shape[1:]
    role = ds.attrs.get("param_positions", "the role")
    fig, axes = plt.subplots(2, len(tasks), figsize=(0.3 * n_heads * len(tasks) + 3.5, 0.6 * n_layers + 3.2),
                             squeeze=False)
    for j, task in enumerate(tasks):
        rank = ds["patch_rank"].sel(task=task).transpose("layer", "head").values
        ys, xs = np.nonzero(rank <= TOP)
        for ax, grid, cmap, lims, what in ((axes[0, j], change[j], "RdBu_r", (-vmax, vmax), "mean margin change"),
                                           (axes[1, j], flips[j], "Greys", (0, 1), "flip rate")):
            im = ax.imshow(grid, cmap=cmap, vmin=lims[0], vmax=lims[1], origin="lower", aspect="auto")
            ax.scatter(xs, ys, s=10, c="#2ca02c", marker="o", label=f"top {TOP} by patch_rank")
            ax.set(xlabel="head", ylabel="layer", xticks=range(n_heads), yticks=range(n_layers),
                   title=task_title(ds, task, f"{what}\n(head at {role} from the twin)"))
            fig.colorbar(im, ax=ax, shrink=0.8)
        legend_outside(axes[0, j])
    return save(fig, fig_dir / "head_patching_heads.png", ds)


def _approximation(ds, tasks, fig_dir) -> Path:
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        exact = ds["margin_change_mean"].sel(task=task).values.ravel()
        approx = ds["approx_change_mean"].sel(task=task).values.ravel()
        ax.scatter(exact, approx, s=10, c="#1f77b4", label="one head")
        lo, hi = float(min(exact.min(), approx.min())), float(max(exact.max(), approx.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="y = x")
        rho = float(ds["spearman"].sel(task=task))
        ax.set(xlabel="exact margin change (mean)", ylabel="attribution patching (mean)",
               title=task_title(ds, task, f"Spearman ρ = {rho:.3f}"))
        legend_outside(ax)
    return save(fig, fig_dir / "head_patching_approximation.png", ds)
