"""Figures read alone (issue 25): every figure names its model, recipe and prompts in a footer; every point
shows its CI (error bars where a sweep has one value); mathtext renders; the synchrony panel names its
positions; the path-blocking title names the blocked layers and the depth; a layer-matched control
that reuses targeted heads is marked in the result and in the figure. Drawn by the real plotting code
(anchorlab.plots) on small synthetic results, and on a real HeadsAnalysis.reduce."""
from __future__ import annotations

import re
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.container import ErrorbarContainer
from matplotlib.text import Text

from anchorlab.analyses.base import Context
from anchorlab.analyses.head_interventions import HeadsAnalysis, HeadsSpec
from anchorlab.plots.ablation import plot_ablation
from anchorlab.plots.attribution import plot_attribution
from anchorlab.plots.head_interventions import plot_heads
from anchorlab.plots.knockout import plot_knockout, plot_path_blocking
from anchorlab.plots.signal import plot_signal

TASKS = ["vf", "tf"]
SAMPLES = [f"s{i}" for i in range(6)]
SELECTED = np.array([[1, 1, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1]], dtype=bool)  # 4 + 6 prompts
ATTRS = {"model_id": "org/some-model-7b", "recipe": "name: my-study\nmodel: {id: org/some-model-7b}\n",
         "recipe_resolved": "name: my-study\nmodel:\n  id: org/some-model-7b\n", "param_ci_level": 0.9}
rng = np.random.default_rng(0)


def with_ci(shape):
    mean = rng.uniform(0.2, 0.8, shape)
    return mean, np.stack([mean - 0.1, mean + 0.15], -1)


def base(**coords):
    ds = xr.Dataset(coords={"task": TASKS, "sample": SAMPLES, "bound": ["lo", "hi"], **coords}, attrs=dict(ATTRS))
    ds["selected"] = (("task", "sample"), SELECTED)
    return ds


def signal_result():
    ds = base(layer=range(4), side=["followed", "competitor"])
    for var in ("ldar", "sync_rate"):
        mean, ci = with_ci((2, 4))
        ds[var], ds[f"{var}_ci"] = (("task", "layer"), mean), (("task", "layer", "bound"), ci)
    mean, ci = with_ci((2, 2, 4))
    ds["signal_mean"], ds["signal_mean_ci"] = (
        (("task", "side", "layer"), mean),
        (("task", "side", "layer", "bound"), ci),
    )
    ds.attrs.update(analysis="signal", param_positions="context")
    return ds


def ablation_result():
    """A signal sweep over k (two values): the ablation panel."""
    ds = base(layer=range(4), k=[1, 2])
    mean, ci = with_ci((2, 2, 4))
    ds["ldar"], ds["ldar_ci"] = (("k", "task", "layer"), mean), (("k", "task", "layer", "bound"), ci)
    ds.attrs.update(analysis="signal", ablation="k", param_positions="instruction")
    return ds


def knockout_result():
    pathways = ["vision->last", "instruction->last"]
    ds = base(layer=range(4), pathway=pathways)
    mean, ci = with_ci((2, 2))
    ds["nssd_pathway"], ds["nssd_pathway_ci"] = (("task", "pathway"), mean), (("task", "pathway", "bound"), ci)
    mean, ci = with_ci((2, 2, 4))
    ds["nssd_mean"], ds["nssd_mean_ci"] = (
        (("task", "pathway", "layer"), mean),
        (("task", "pathway", "layer", "bound"), ci),
    )
    ds.attrs.update(analysis="knockout", param_window=3)
    return ds


def path_blocking_result(layers="20, 21, 22, 23, 24, 25", depth=28):
    ds = base(setting=["original", "instruction->last", "followed_context->last"])
    mean, ci = with_ci((2, 3))
    ds["mfr"], ds["mfr_ci"] = (("task", "setting"), mean), (("task", "setting", "bound"), ci)
    ds.attrs.update(analysis="path_blocking", blocked_layers=layers, model_layers=depth)
    return ds


def attribution_result():
    ds = base(layer=range(3), head=range(4), side=["followed", "competitor"], metric=["S_f", "dS"],
              sublayer=["attn", "mlp"])
    mean, ci = with_ci((2, 2, 3))
    ds["phi_mean"], ds["phi_mean_ci"] = (("task", "side", "layer"), mean), (("task", "side", "layer", "bound"), ci)
    mean, ci = with_ci((2, 2, 2, 3))
    ds["delta_mean"] = (("task", "metric", "sublayer", "layer"), mean)
    ds["delta_mean_ci"] = (("task", "metric", "sublayer", "layer", "bound"), ci)
    ds["head_score_mean"] = (("task", "layer", "head"), rng.normal(size=(2, 3, 4)))
    ds["head_rank"] = (("task", "layer", "head"), np.stack([rng.permutation(12).reshape(3, 4) + 1 for _ in TASKS]))
    ds["shared_heads"] = (("layer", "head"), np.eye(3, 4, dtype=bool))
    ds.attrs.update(analysis="attribution", shared_top_n=3, param_positions="instruction")
    return ds


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


PLOTS = {"signal": plot_signal, "knockout": plot_knockout, "path_blocking": plot_path_blocking,
         "attribution": plot_attribution, "heads_block": plot_heads}


def drawn(ds, tmp_path, monkeypatch):
    """The figures the result's plot function makes, kept open (the real code closes them after saving)."""
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    if "ablation" in ds.attrs:
        paths = plot_ablation(ds, tmp_path, "signal_ablation")
    else:
        paths = PLOTS[ds.attrs["analysis"]](ds, tmp_path)
    monkeypatch.undo()
    assert len(paths) == len(figures) > 0 and all(p.stat().st_size > 10_000 for p in paths)
    return figures


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def heads_attribution(n_layers=2, n_heads=2):
    """An attribution result whose vf top-2 heads are both heads of layer 0 (that layer has no others)."""
    rank = np.arange(1, n_layers * n_heads + 1).reshape(n_layers, n_heads)
    return xr.Dataset({"head_rank": (("task", "layer", "head"), np.stack([rank, rank[::-1]])),
                       "shared_layer": ("shared", [0]), "shared_head": ("shared", [1])},
                      coords={"task": TASKS}, attrs={"analysis": "attribution"})


def heads_analysis(n_heads=(1, 2), seeds=3):
    spec = HeadsSpec(kind="heads_block", n_heads=list(n_heads), seeds=seeds, n_bootstrap=20,
                     settings=["original", "targeted", "random", "random_layer_matched"])
    bundle = SimpleNamespace(n_layers=2, n_heads=2)
    return HeadsAnalysis(
        spec, Context(bundle=bundle, backend=None, seed=0, results={"attribution": heads_attribution()})
    )


def heads_result(n_heads=(1, 2)):
    """HeadsAnalysis.reduce on made-up per-row outcomes (2 tasks x 6 samples)."""
    analysis = heads_analysis(n_heads)
    rows = [SimpleNamespace(task=t, sample=SimpleNamespace(id=s)) for t in TASKS for s in SAMPLES]
    shape = (len(rows), 4, len(n_heads), 3)
    results = {"follows": rng.random(shape) < 0.6, "neutral_correct": rng.random(shape) < 0.9,
               "neutral_applicable": np.ones(len(rows), dtype=bool), "cells": np.zeros(len(rows), dtype=np.int64)}
    ds = analysis.reduce(rows, results, SELECTED.reshape(-1))
    ds.attrs.update(ATTRS)
    return ds


@pytest.mark.parametrize("make", [signal_result, ablation_result, knockout_result, path_blocking_result,
                                  attribution_result, heads_result])
def test_every_figure_has_a_footer_naming_model_recipe_and_prompts(make, tmp_path, monkeypatch):
    ds = make()
    for fig in drawn(ds, tmp_path, monkeypatch):
        footer = [t for t in fig.texts if "org/some-model-7b" in t.get_text()]
        assert len(footer) == 1, texts(fig)
        line = footer[0].get_text().splitlines()[-1]
        assert "recipe my-study" in line and f"{SELECTED.sum()} prompts" in line
        assert footer[0].get_position()[1] <= 0.0  # below the axes, never over the data
        assert ("positions" in line) == ("param_positions" in ds.attrs)
        assert "param_positions" not in ds.attrs or line.endswith(f"positions {ds.attrs['param_positions']}")


@pytest.mark.parametrize("make", [signal_result, ablation_result, knockout_result, path_blocking_result,
                                  attribution_result, heads_result])
def test_no_raw_subscripts_and_the_ci_level_is_the_results(make, tmp_path, monkeypatch):
    for fig in drawn(make(), tmp_path, monkeypatch):
        for text in texts(fig):
            outside_math = re.sub(r"\$[^$]*\$", "", text)
            assert not re.search(r"[δΦΔ][_^]|\^\(", outside_math), text  # e.g. δ_A^(l,h) printed raw
            assert "CI" not in text or "90% CI" in text  # the results were made at 90%


def test_head_map_title_is_mathtext(tmp_path, monkeypatch):
    figures = drawn(attribution_result(), tmp_path, monkeypatch)
    titles = [ax.get_title() for ax in figures[-1].axes if ax.get_title()]
    assert titles and all(r"$\delta_A^{(l,h)}(\Delta S)$" in t for t in titles)


def test_synchrony_panel_names_the_positions_it_compares_with_last(tmp_path, monkeypatch):
    fig = drawn(signal_result(), tmp_path, monkeypatch)[0]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "LDAR at context positions"
    assert titles[1].startswith("decision synchrony: context positions vs last")


@pytest.mark.parametrize("layers, depth, title", [
    ("20, 21, 22, 23, 24, 25", 28, "paths blocked in layers 20–25 (of 28)"),
    ("3", 8, "paths blocked in layer 3 (of 8)"),
    ("1, 3, 4, 6", 8, "paths blocked in layers 1, 3–4, 6 (of 8)"),
])
def test_path_blocking_title_names_layers_and_depth(layers, depth, title, tmp_path, monkeypatch):
    fig = drawn(path_blocking_result(layers, depth), tmp_path, monkeypatch)[0]
    assert fig.axes[0].get_title() == title


def test_a_one_value_sweep_shows_every_points_ci(tmp_path, monkeypatch):
    ds = heads_result(n_heads=(2,))
    fig = drawn(ds, tmp_path, monkeypatch)[0]
    axes = np.array(fig.axes[:4]).reshape(2, 2)  # rows mfr / accuracy, columns vf / tf
    for row, var in enumerate(("mfr", "accuracy")):
        for col, task in enumerate(TASKS):
            bars = [c for c in axes[row, col].containers if isinstance(c, ErrorbarContainer)]
            labels = sorted(c.get_label() for c in bars)
            assert labels == sorted(s.replace("_", " ") for s in ds["setting"].values)
            for bar in bars:
                setting = bar.get_label().replace(" ", "_")
                ci = ds[f"{var}_ci"].sel(task=task, setting=setting, n_heads=2).values
                mean = float(ds[var].sel(task=task, setting=setting, n_heads=2).mean("seed"))
                (segment,) = bar.lines[2][0].get_segments()
                lo, hi = sorted(segment[:, 1])
                assert np.isclose(lo, min(ci[0], mean)) and np.isclose(hi, max(ci[1], mean))
                assert len(bar.lines[1]) == 2  # caps drawn


def test_layer_matched_control_that_reuses_targeted_heads_is_recorded():
    """vf's top-2 heads are both heads of layer 0: a layer-matched set of 2 must take them again."""
    analysis = heads_analysis(n_heads=(1, 2))
    sets, reuse = analysis._draw("vf")
    targeted = {v: set(sets[("targeted", v, 0)]) for v in (0, 1)}
    assert targeted == {0: {(0, 0)}, 1: {(0, 0), (0, 1)}}
    for v in (0, 1):
        for seed in range(3):
            matched = sets[("random_layer_matched", v, seed)]
            assert sorted(l for l, _ in matched) == sorted(l for l, _ in targeted[v])
            assert reuse[v, seed] == len(set(matched) & targeted[v])
    assert reuse.tolist() == [[0, 0, 0], [2, 2, 2]]
    ds = heads_result()
    assert ds["control_reuses_targeted"].dims == ("task", "n_heads", "seed")
    assert ds["control_reuses_targeted"].sel(task="vf").values.tolist() == [[0, 0, 0], [2, 2, 2]]
    # tf's top-2 are (1, 0) and (1, 1): the same situation in layer 1
    assert ds["control_reuses_targeted"].sel(task="tf").values.tolist() == [[0, 0, 0], [2, 2, 2]]


def test_layer_matched_control_that_reuses_targeted_heads_is_marked_in_the_figure(tmp_path, monkeypatch):
    fig = drawn(heads_result(), tmp_path, monkeypatch)[0]
    mfr_vf = fig.axes[0]
    marked = [c for c in mfr_vf.collections if c.get_hatch() and "reuses targeted" in c.get_label()]
    assert len(marked) == 1
    assert marked[0].get_offsets()[:, 0].round().tolist() == [2.0]  # G = 2 only, not G = 1
    legend = [t.get_text() for t in fig.axes[1].get_legend().texts]  # one legend, right of the last column
    assert "layer-matched set reuses targeted heads (no control)" in legend and "random layer matched" in legend
    note = next(t.get_text() for t in fig.texts if "org/some-model-7b" in t.get_text())
    assert "the random layer-matched set reuses targeted heads" in note
    assert "vf at G = 2; tf at G = 2" in note and "G = 1" not in note
