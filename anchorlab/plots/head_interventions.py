"""Fig. 9 style: MFR vs number of blocked heads / vs α per task, targeted vs random (CI band over
samples, seed-averaged) vs layer-matched vs shared, and the general-capability accuracy beside it.

Every setting has its own colour, marker and a small x offset, so lines that coincide stay visible
(and a note names them); a setting whose head set is empty (no shared heads) gets no line. A layer-matched
point whose set had to reuse targeted heads (result var `control_reuses_targeted`) is hatched and named:
it is no control there."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from .style import MARKERS, band, ci_text, legend_outside, plt, save, task_title

COLORS = {"original": "#7f7f7f", "targeted": "#d62728", "random": "#1f77b4", "random_layer_matched": "#9467bd",
          "shared": "#2ca02c"}


def _coinciding(curves: dict[str, np.ndarray]) -> list[str]:
    """Groups of settings whose curves are the same ("original = targeted = random"), for a note."""
    groups: list[list[str]] = []
    for name, values in curves.items():
        for group in groups:
            if np.allclose(curves[group[0]], values):
                group.append(name)
                break
        else:
            groups.append([name])
    return [" = ".join(g) for g in groups if len(g) > 1]


def plot_heads(ds, fig_dir) -> list[Path]:
    sweep = ds.attrs["sweep_dim"]
    tasks = list(ds["task"].values)
    x = ds[sweep].values.astype(float)
    step = np.diff(x).min() if len(x) > 1 else 2.0  # a lone value: its settings' error bars side by side
    settings = [str(s) for s in ds["setting"].values]
    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks) + 1.5, 6.6), squeeze=False, sharex=True)
    for col, task in enumerate(tasks):
        for row, (var, label) in enumerate((("mfr", "MFR"), ("accuracy", "no-conflict accuracy"))):
            ax = axes[row][col]
            curves = {}
            for k, setting in enumerate(settings):
                empty = (
                    "set_size" in ds
                    and setting != "original"
                    and int(ds["set_size"].sel(task=task, setting=setting).max()) == 0
                )
                if empty:
                    continue
                mean = ds[var].sel(task=task, setting=setting).mean("seed").values
                ci = ds[f"{var}_ci"].sel(task=task, setting=setting).values
                curves[setting] = mean
                offset = (k - (len(settings) - 1) / 2) * 0.03 * step
                band(ax, x, mean, ci, COLORS.get(setting), setting.replace("_", " "), marker=MARKERS[k % len(MARKERS)],
                     offset=offset)
                if setting == "random_layer_matched" and "control_reuses_targeted" in ds:
                    reused = ds["control_reuses_targeted"].sel(task=task).max("seed").values > 0
                    if reused.any():
                        ax.scatter(x[reused] + offset, mean[reused], s=110, marker="o", facecolors="none",
                                   edgecolors=COLORS[setting], hatch="////", linewidths=1.2,
                                   label="layer-matched set reuses targeted heads (no control)")
            same = _coinciding(curves)
            if same:
                note = "lines coincide: " + "; ".join(same).replace("_", " ")
                ax.text(0.02, 0.5, textwrap.fill(note, 48), transform=ax.transAxes, fontsize=6.5, color="#444444",
                        va="center")
            ax.set(ylim=(-0.02, 1.02), ylabel=f"{label} ({ci_text(ds)})")
            if row == 0:
                n_sets = int(ds.attrs.get("param_seeds", ds.sizes.get("seed", 1)))
                ax.set_title(task_title(ds, task, "blocking" if sweep == "n_heads" else "amplifying")
                             + f"\nrandom sets: {n_sets} seeds")
            else:
                ax.set_title(f"no-conflict twins: n = {int(ds['n_neutral'].sel(task=task))}", fontsize=9)
                ax.set_xlabel("heads blocked (G)" if sweep == "n_heads" else "amplification α")
    # ticks at the swept values only (a lone value would otherwise get ticks at its settings' small offsets)
    axes[-1][0].set_xticks(x, [f"{v:g}" for v in x])
    if len(x) == 1:
        axes[-1][0].set_xlim(x[0] - 0.5, x[0] + 0.5)
    entries = {}  # every column's entries (a setting or the reuse marker may be drawn in one task only)
    for ax in axes[0]:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(text, handle)
    entries = dict(sorted(entries.items(), key=lambda e: "reuses targeted" in e[0]))  # the settings first
    legend_outside(axes[0][-1], handles=list(entries.values()), labels=list(entries))
    notes = reuse_notes(ds, tasks, sweep)
    if ds.attrs.get("tasks_not_run"):
        notes.append(f"not run: {ds.attrs['tasks_not_run']}")
    empty_sets = [
        s for s in settings if "set_size" in ds and s != "original" and int(ds["set_size"].sel(setting=s).max()) == 0
    ]
    if empty_sets:
        notes.append(f"not drawn (empty head set): {', '.join(empty_sets)}")
    name = "heads_block_mfr.png" if sweep == "n_heads" else "heads_amplify_mfr.png"
    return [save(fig, Path(fig_dir) / name, ds, notes="\n".join(notes))]


def reuse_notes(ds, tasks, sweep) -> list[str]:
    """"the random layer-matched set reuses targeted heads (...): vf at G = 8": where it is no control."""
    if "control_reuses_targeted" not in ds:
        return []
    symbol = "G" if sweep == "n_heads" else "α"
    where = []
    for task in tasks:
        reused = ds["control_reuses_targeted"].sel(task=task).max("seed")
        values = [f"{v:g}" for v, n in zip(ds[sweep].values, reused.values) if n > 0]
        if values:
            where.append(f"{task} at {symbol} = {', '.join(values)}")
    if not where:
        return []
    return ["the random layer-matched set reuses targeted heads (hatched; a layer has too few other heads), "
            f"so it is no control there: {'; '.join(where)}"]
