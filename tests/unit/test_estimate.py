"""`anchorlab estimate` (issue 13): counts equal the run's, without weights."""
import json

import pytest
import xarray as xr
from click.testing import CliRunner

from anchorlab.api import run
from anchorlab.cli import main
from anchorlab.estimate import estimate_recipe, meta_bundle
from anchorlab.models.tiny import tiny_model_path
from anchorlab.recipe import load_recipe

KNOCKOUT = """
name: est
model: {{id: "{model}"}}
data: {{source: {source}, n_samples: 5, tasks: [vf, tf], filter: all{path}}}
analyses:
  - {{kind: knockout, layers: {layers}, engine: {engine}, variants_per_pass: 5, n_bootstrap: 10, decision: {decision}}}
batch_size: 3
"""


@pytest.mark.parametrize("model,source,engine,decision", [
    ("toy:arbiter", "toy", "fast", "answer"), ("toy:arbiter", "toy", "naive", "answer"),
    ("toy:arbiter", "toy", "fast", "dictionary_best"), ("qwen2_5_vl", "jsonl", "fast", "answer")])
def test_knockout_cells_equal_the_runs(tmp_path, model, source, engine, decision, one_thread):
    model_id = str(tiny_model_path(model)) if not model.startswith("toy:") else model
    path = ", path: examples/conflicts/samples.jsonl" if source == "jsonl" else ""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(KNOCKOUT.format(model=model_id, source=source, path=path, layers="[0, 1, 2, 3]", engine=engine,
                                      decision=decision))
    est = estimate_recipe(recipe)
    ds = run(recipe, out=tmp_path / "out")["knockout"]
    line = next(a for a in est["analyses"] if a["analysis"] == "knockout")
    assert line["cells_fast" if engine == "fast" else "cells_naive"] == int(ds.attrs["decoder_cells"])
    assert line["passes_fast" if engine == "fast" else "passes_naive"] == ds.attrs["passes"]  # traces the run made
    assert line["variants"] == 8 * 4
    # naive: one forward per variant + clean (+ dictionary_best's pass)
    assert est["forward_cells"] * (1 + 32 + (decision == "dictionary_best")) == line["cells_naive"]


STEPS = """
name: est
model: {{id: "{model}"}}
data: {{source: toy, n_samples: 4, tasks: [vf, tf], filter: all, filter_rule: first_token}}
analyses:
  - {{kind: signal, n_bootstrap: 10}}
  - {{kind: attribution, top_g: 4, n_bootstrap: 10}}
  - {{kind: {heads}, n_heads: [1, 2], alphas: [2, 4], settings: [original, targeted], rule: {rule}, max_new_tokens: 3,
     engine: {engine}, settings_per_pass: 2, rows: follows, n_bootstrap: 10}}
batch_size: 5
"""


@pytest.mark.slow
@pytest.mark.parametrize("heads,engine,rule", [
    ("heads_block", "fast", "first_token"), ("heads_block", "naive", "first_token"),
    ("heads_amplify", "fast", "first_token"), ("heads_block", "fast", "generation")])
def test_every_step_counts_the_runs_passes_and_cells(tmp_path, heads, engine, rule, one_thread):
    """Labels, signal, attribution and the head sweep (decoder cells and traces counted by the run)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(STEPS.format(model="toy:arbiter", heads=heads, engine=engine, rule=rule))
    results = run(recipe, out=tmp_path / "out")
    labels = xr.load_dataset(tmp_path / "out" / "labels.nc")  # heads choose their own rows: labels run first
    drawn = {k.removeprefix("head_tables_"): v for k, v in results[heads].attrs.items() if k.startswith("head_tables_")}
    est = estimate_recipe(recipe)
    lines = {a["analysis"]: a for a in est["analyses"]}
    assert lines["labels (first_token)"]["passes_fast"] == labels.attrs["passes"]
    for name in ("signal", "attribution"):
        assert (lines[name]["cells_fast"], lines[name]["passes_fast"]) == (
            results[name].attrs["decoder_cells"], results[name].attrs["passes"])
    line, ds = lines[heads], results[heads]
    assert (
        set(drawn.values()) == {line["variants"]} == {1 + 2}
    )  # original + targeted at two sizes (or factors): no repeats
    kind = "fast" if engine == "fast" else "naive"
    if rule == "first_token":
        assert (line[f"cells_{kind}"], line[f"passes_{kind}"]) == (ds.attrs["decoder_cells"], ds.attrs["passes"])
    else:  # generation counted at max_new_tokens: an upper bound the run's early stops stay under
        assert line[f"cells_{kind}"] >= ds.attrs["decoder_cells"] and line[f"passes_{kind}"] >= ds.attrs["passes"]
        assert line["passes_fast"] - ds.attrs["passes"] <= line["work_fast"]["loops"] * 2  # at most 2 steps saved each


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fast", "naive"])
def test_probe_prices_the_pilots_own_passes(tmp_path, engine, one_thread):
    """A recipe no larger than the pilot: the probe's counts at the pilot's generation steps are the
    run's passes and cells exactly (the timing itself is benchmarks/estimate_accuracy.py's)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(STEPS.format(model="toy:arbiter", heads="heads_block", engine=engine, rule="generation")
                      .replace("filter_rule: first_token", "filter_rule: generation, max_new_tokens: 4"))
    est = estimate_recipe(recipe, ["batch_size=8"], probe=True)
    results = run(recipe, out=tmp_path / "out", overrides=["batch_size=8"])
    labels = xr.load_dataset(tmp_path / "out" / "labels.nc")
    lines = {a["analysis"]: a for a in est["analyses"]}
    assert est["probe"]["pilot"]["prompts"] == est["prompts"] == 8
    assert lines["labels (generation)"]["timed_passes_fast"] == labels.attrs["passes"]
    for name in ("signal", "attribution", "heads_block"):
        kind = lines[name]["engine"]
        assert lines[name][f"timed_passes_{kind}"] == pytest.approx(results[name].attrs["passes"])
        assert lines[name][f"timed_cells_{kind}"] == pytest.approx(results[name].attrs["decoder_cells"])
    assert lines["heads_block"]["engine"] == engine
    total = est["analyses"][-1]
    assert total["seconds_fast"] > sum(a["seconds_fast"] for a in est["analyses"][:-1]) > 0  # + the set-up


@pytest.mark.slow
def test_probe_draws_the_runs_head_tables(tmp_path, one_thread):
    """recipes/heads_amplify.yaml ranks heads over 96 samples; one batch of them ranks the toy's 32 heads
    differently, and its targeted sets fill other layers, so layer-matched draws collapse differently.
    The probe ranks on every prompt first (estimate.timing.full_rankings): the tables, hence the
    passes and cells, are the run's own (before it: 816 passes priced against 672 run)."""
    overrides = ["analyses.1.rule=first_token", "analyses.1.seeds=4", "analyses.1.general_check=false"]
    est = estimate_recipe("recipes/heads_amplify.yaml", overrides, probe=True)
    ds = run("recipes/heads_amplify.yaml", out=tmp_path / "out", overrides=overrides)["heads_amplify"]
    line = next(a for a in est["analyses"] if a["analysis"] == "heads_amplify")
    assert line["variants"] == max(v for k, v in ds.attrs.items() if k.startswith("head_tables_"))
    assert (line["timed_passes_fast"], line["timed_cells_fast"]) == (ds.attrs["passes"], ds.attrs["decoder_cells"])
    assert est["probe"]["pilot"]["rankings_seconds"] > 0


def test_meta_bundle_holds_no_weights():
    from anchorlab.models.loading import inspect_model

    recipe, _ = load_recipe("recipes/quickstart.yaml")
    bundle = meta_bundle(recipe.model)
    assert all(p.is_meta for p in bundle.model.parameters())
    assert bundle.n_layers == inspect_model(recipe.model.id).n_layers and bundle.tokenizer is not None


def test_head_table_count():
    from anchorlab.analyses.head_interventions import HeadsSpec

    spec = HeadsSpec(kind="heads_block", n_heads=[1, 4], seeds=3)
    # original once; targeted + shared per G; random and layer-matched per G and seed
    n = 1 + sum(s in spec.settings for s in ("targeted", "shared")) * 2 \
        + sum(s in spec.settings for s in ("random", "random_layer_matched")) * 2 * 3
    assert spec.distinct_tables() == n


def test_cli_prints_every_analysis_and_total(tmp_path):
    out = tmp_path / "est.json"
    result = CliRunner().invoke(main, ["estimate", "recipes/paper.yaml", "--set", "data.n_samples=4",
                                       "--tokens-per-s", "1000", "--json", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("signal", "knockout", "path_blocking", "attribution", "heads_block", "heads_amplify", "total"):
        assert name in result.output
    est = json.loads(out.read_text())
    total = est["analyses"][-1]
    assert total["cells_fast"] == sum(a["cells_fast"] for a in est["analyses"][:-1])
    assert total["seconds_fast"] == pytest.approx(total["cells_fast"] / (1000 * est["layers"]))
    bad = CliRunner().invoke(main, ["estimate", "recipes/paper.yaml", "--image-size", "big"])
    assert bad.exit_code == 2 and "WIDTHxHEIGHT" in bad.output
