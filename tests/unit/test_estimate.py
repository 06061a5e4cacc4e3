"""`anchorlab estimate` (issue 13): counts equal the run's, without weights."""
import json

import pytest
from click.testing import CliRunner

from anchorlab.api import run
from anchorlab.cli import main
from anchorlab.estimate import estimate_recipe, meta_bundle, head_tables
from anchorlab.models.tiny import tiny_model_path
from anchorlab.recipe import load_recipe


KNOCKOUT = """
name: est
model: {{id: "{model}"}}
data: {{source: {source}, n_samples: 5, tasks: [vf, tf], filter: all{path}}}
analyses:
  - {{kind: knockout, layers: {layers}, engine: {engine}, variants_per_pass: 5, n_bootstrap: 10}}
batch_size: 3
"""


@pytest.mark.parametrize("model,source,engine", [
    ("toy:arbiter", "toy", "fast"), ("toy:arbiter", "toy", "naive"), ("qwen2_5_vl", "jsonl", "fast")])
def test_knockout_cells_equal_the_runs(tmp_path, model, source, engine, one_thread):
    model_id = str(tiny_model_path(model)) if not model.startswith("toy:") else model
    path = ", path: examples/conflicts/samples.jsonl" if source == "jsonl" else ""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(KNOCKOUT.format(model=model_id, source=source, path=path, layers="[0, 1, 2, 3]", engine=engine))
    est = estimate_recipe(recipe)
    ds = run(recipe, out=tmp_path / "out")["knockout"]
    line = next(a for a in est["analyses"] if a["analysis"] == "knockout")
    assert line["cells_fast" if engine == "fast" else "cells_naive"] == int(ds.attrs["decoder_cells"])
    assert line["variants"] == 8 * 4
    assert est["forward_cells"] * (1 + 32) == line["cells_naive"]  # naive: one forward per variant + clean


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
    assert head_tables(spec) == n


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
