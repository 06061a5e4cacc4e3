"""Paper-style knockout figures: pathway bars per task (Fig. 3), layer-wise NSSD curves (Fig. 4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .style import band, ci_text, error_bars, legend_outside, pathway_color, plt, save, task_title


def plot_knockout(ds, fig_dir) -> list[Path]:
    fig_dir = Path(fig_dir)
    tasks, pathways = list(ds["task"].values), list(ds["pathway"].values)
    out = []

    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.8), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks):
        mean = ds["nssd_pathway"].sel(task=task).values
        ci = ds["nssd_pathway_ci"].sel(task=task).values
        y = np.arange(len(pathways))
        ax.barh(y, mean, xerr=error_bars(mean, ci), color=[pathway_color(p) for p in pathways], capsize=3)
        ax.set_yticks(y, [p.replace("->", " ↛ ") for p in pathways], fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
        ax.set(xlabel=f"NSSD (mean over centre layers, {ci_text(ds)})", title=task_title(ds, task))
    out.append(save(fig, fig_dir / "knockout_pathways.png", ds))

    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.8), squeeze=False, sharey=True)
    layers = ds["layer"].values
    for ax, task in zip(axes[0], tasks):
        for i, pathway in enumerate(pathways):
            band(ax, layers, ds["nssd_mean"].sel(task=task, pathway=pathway).values,
                 ds["nssd_mean_ci"].sel(task=task, pathway=pathway).values, pathway_color(pathway),
                 pathway.replace("->", " ↛ "), marker="osD^vP*X"[i % 8])
        ax.axhline(0, color="black", lw=0.8)
        ax.set(
            xlabel=f"centre layer (window {ds.attrs.get('param_window', '?')})",
            ylabel=f"NSSD (mean, {ci_text(ds)})",
            title=task_title(ds, task),
        )
    legend_outside(axes[0][-1], title="knocked out")
    out.append(save(fig, fig_dir / "knockout_layers.png", ds))
    return out


def plot_path_blocking(ds, fig_dir) -> list[Path]:
    """MFR after severing instruction->last vs followed-context->last (Fig. 5b)."""
    tasks, settings = list(ds["task"].values), list(ds["setting"].values)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    width = 0.8 / len(settings)
    colors = {"original": "#7f7f7f", "instruction->last": "#d62728", "followed_context->last": "#1f77b4"}
    x = np.arange(len(tasks))
    for k, setting in enumerate(settings):
        mean = ds["mfr"].sel(setting=setting).values
        ci = ds["mfr_ci"].sel(setting=setting).values
        ax.bar(x + (k - (len(settings) - 1) / 2) * width, mean, width, yerr=error_bars(mean, ci),
               capsize=3, color=colors.get(setting), label=setting.replace("->", " ↛ "))
    ax.set_xticks(x, [task_title(ds, t) for t in tasks], fontsize=8)
    ax.set(ylabel=f"MFR ({ci_text(ds)})", ylim=(0, 1.05), title=blocked_title(ds))
    legend_outside(ax)
    return [save(fig, Path(fig_dir) / "path_blocking_mfr.png", ds)]


def blocked_title(ds) -> str:
    """"paths blocked in layers 20–25 (of 28)": the blocked layers as ranges, and the model's depth."""
    layers = sorted(int(v) for v in str(ds.attrs.get("blocked_layers", "")).replace(",", " ").split())
    runs: list[list[int]] = []
    for layer in layers:
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    spans = ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)
    depth = f" (of {ds.attrs['model_layers']})" if "model_layers" in ds.attrs else ""
    return f"paths blocked in layer{'s' if len(layers) > 1 else ''} {spans or '?'}{depth}"
