"""anchorlab verify: recovery scores of a run against a circuit.json, on hand-made results."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from anchorlab.analyses.base import head_auc_target
from anchorlab.cli import main
from anchorlab.method.stats import bootstrap_aucs, layer_matched_aucs, roc_auc
from anchorlab.report.verify import SECTION, verify


def row(scores: dict, target: str, task: str) -> dict:
    """The one verify.json row of this target and task."""
    found = [r for r in scores["results"] if r["target"] == target and r["task"] == task]
    assert len(found) == 1, found
    return found[0]

CIRCUIT = {"heads": [[2, 1], [3, 0]], "buffer_layers": [0, 1], "arbitration_layers": [2, 3]}


def test_roc_auc():
    pos = np.array([True, False, False, True])
    assert roc_auc(np.array([3.0, 1.0, 2.0, 4.0]), pos) == 1.0
    assert roc_auc(np.array([0.0, 1.0, 2.0, 4.0]), pos) == 0.5
    assert roc_auc(np.array([1.0, 1.0, 1.0, 1.0]), pos) == 0.5


def test_layer_matched_aucs_are_every_other_set_with_the_circuits_layer_counts():
    """Exact: each set with the circuit's number of heads per layer, but the circuit, once (brute force over all
    masks); sampled (n_draws below their number): each value is one of them."""
    import itertools

    rng = np.random.default_rng(3)
    scores, positive = rng.normal(size=(3, 4)), np.zeros((3, 4), dtype=bool)
    positive[0, [1, 3]] = positive[2, 0] = True
    masks = [np.array(m) for m in itertools.product([False, True], repeat=12)]
    brute = sorted(roc_auc(scores.ravel(), m) for m in masks
                   if (m.reshape(3, 4).sum(1) == positive.sum(1)).all() and (m != positive.ravel()).any())
    assert len(brute) == 6 * 4 - 1
    np.testing.assert_allclose(sorted(layer_matched_aucs(scores, positive)), brute)
    drawn = layer_matched_aucs(scores, positive, n_draws=5)
    assert len(drawn) == 5 and all(np.isclose(brute, v).any() for v in drawn)


def test_a_score_that_favours_the_circuits_layers_does_not_hold():
    """Every layer-0 head scored high: a layer-0 circuit's AUROC passes the bound but not the layer-matched random
    arm; a score that singles the circuit's heads out within their layer holds. A circuit filling its layer has
    no random arm: not evaluable."""
    rng = np.random.default_rng(0)
    positive = np.zeros((6, 8), dtype=bool)
    positive[0, [5, 2]] = True  # 2nd and 4th of all 48 heads: AUROC 89/92
    layer = rng.normal(size=(6, 8)) * 0.1
    layer[0] = 5.0 + np.array([0.9, 1.0, 0.8, 0.7, 0.6, 0.95, 0.5, 0.4])
    def steady(grid):  # every prompt scores the same
        return np.repeat(grid[..., None], 4, axis=-1)

    weak = head_auc_target("attribution_head_auc", "vf", layer, positive, 0.95, steady(layer))
    assert weak["value"] == round(89 / 92, 5) and weak["holds"] is False
    arm = weak["detail"]["layer_matched"]
    assert arm["n_sets"] == 27 and arm["share_at_or_above"] > 0.05 and arm["auroc_at_quantile"] > weak["value"]
    single = layer.copy()
    single[0, [5, 2]] += 1.0
    strong = head_auc_target("attribution_head_auc", "vf", single, positive, 0.95, steady(single))
    assert strong["value"] == 1.0 and strong["holds"] is True
    assert strong["detail"]["layer_matched"]["resampled_auroc_low"] == 1.0
    full = np.zeros((6, 8), dtype=bool)
    full[0] = True
    assert head_auc_target("patching_head_auc", "tf", single, full, 0.95, steady(single))["holds"] is None


def test_a_ranking_that_other_prompts_would_reorder_does_not_hold():
    """Near-equal per-prompt scores whose mean happens to put the circuit on top: AUROC 1 and above every
    layer-matched set, but not in 95 % of prompt resamples, so it does not hold; the same means with no spread
    between prompts hold. bootstrap_aucs: a plain resampling loop's values."""
    rng = np.random.default_rng(1)
    positive = np.zeros((4, 8), dtype=bool)
    positive[0, [2, 6]] = True
    per = rng.normal(size=(4, 8, 30))
    per += rng.uniform(-0.1, 0.1, size=(4, 8, 1)) - per.mean(-1, keepdims=True)
    per[0, [2, 6]] += 0.2  # the circuit on top by an edge that the noise in a mean over 30 prompts swamps
    mean = per.mean(-1)
    assert roc_auc(mean.ravel(), positive.ravel()) == 1.0
    shaky = head_auc_target("attribution_head_auc", "tf", mean, positive, 0.95, per)
    arm = shaky["detail"]["layer_matched"]
    assert shaky["value"] == 1.0 and arm["share_at_or_above"] == 0.0 and shaky["holds"] is False
    assert arm["resampled_auroc_low"] <= arm["auroc_at_quantile"]
    flat = np.repeat(mean[..., None], 30, axis=-1)
    assert head_auc_target("attribution_head_auc", "tf", mean, positive, 0.95, flat)["holds"] is True
    draws = np.random.default_rng(0)
    loop = [roc_auc(per[..., draws.integers(0, 30, 30)].mean(-1).ravel(), positive.ravel()) for _ in range(1000)]
    np.testing.assert_allclose(bootstrap_aucs(per, positive), loop)


def _run(tmp_path, good: bool):
    tasks, layers, heads = ["vf", "tf"], [0, 1, 2, 3], [0, 1]
    score = np.zeros((2, 4, 2))
    for l, h in CIRCUIT["heads"]:
        score[:, l, h] = 1.0 if good else -1.0
    rank = np.argsort(np.argsort(-score.reshape(2, -1), axis=1), axis=1).reshape(2, 4, 2) + 1
    xr.Dataset(
        {"head_score_mean": (("task", "layer", "head"), score), "head_rank": (("task", "layer", "head"), rank),
         "head_score": (("task", "layer", "head", "sample"), np.repeat(score[..., None], 3, axis=-1))},
        coords={"task": tasks, "layer": layers, "head": heads},
        attrs={"analysis": "attribution", "model_id": "x"},
    ).to_netcdf(tmp_path / "attribution.nc")
    paths = ["vision->last", "context->last", "instruction->last", "vision->instruction", "context->instruction"]
    nssd = np.zeros((2, 5, 4, 3))
    nssd[:, 2, 2:] = 0.5 if good else 0.0
    nssd[0, 3, :2] = nssd[1, 4, :2] = (
        0.3  # the followed cue (vf: vision, tf: context) into the instruction, buffer layers
    )
    nssd[:, 0] = 0.01
    xr.Dataset(
        {
            "nssd": (("task", "pathway", "layer", "sample"), nssd),
            "selected": (("task", "sample"), np.ones((2, 3), dtype=bool)),
        },
        coords={"task": tasks, "pathway": paths, "layer": layers},
        attrs={"analysis": "knockout", "model_id": "x"},
    ).to_netcdf(tmp_path / "knockout.nc")
    xr.Dataset(
        {"ldar": (("task", "layer"), np.array([[0.5, 0.5, 0.8, 1.0]] * 2))},
        coords={"task": tasks, "layer": layers},
        attrs={"analysis": "signal", "model_id": "x"},
    ).to_netcdf(tmp_path / "signal.nc")
    (tmp_path / "summary.md").write_text("# Does the paper hold?\n\n- a claim\n")
    (tmp_path / "circuit.json").write_text(json.dumps(CIRCUIT))


def test_verify_scores_a_recovered_circuit(tmp_path):
    _run(tmp_path, good=True)
    s = verify(tmp_path, tmp_path / "circuit.json")
    auc = row(s, "attribution_head_auc", "vf")
    assert auc["value"] == 1.0 and auc["detail"]["circuit_ranks"] == [1, 2] and auc["level"] == "heads"
    for task in ("vf", "tf"):
        for name in ("knockout_arbitration_auc", "knockout_buffer_auc", "ldar_rise_auc"):
            assert row(s, name, task)["value"] == 1.0 and row(s, name, task)["holds"], (name, task)
    assert row(s, "knockout_buffer_auc", "tf")["detail"]["pathway"] == "context->instruction"
    assert {r["analysis"] for r in s["results"]} == {"attribution", "knockout", "signal"}
    text = (tmp_path / "summary.md").read_text()
    assert text.startswith("# Does the paper hold?") and text.count(SECTION) == 1 and "holds**" in text
    verify(tmp_path, tmp_path / "circuit.json")  # re-running replaces the section
    assert (tmp_path / "summary.md").read_text().count(SECTION) == 1
    assert row(json.loads((tmp_path / "verify.json").read_text()), "attribution_head_auc", "tf")["value"] == 1.0


def test_verify_flags_a_missed_circuit_from_the_cli(tmp_path):
    _run(tmp_path, good=False)
    result = CliRunner().invoke(main, ["verify", str(tmp_path), "--circuit", str(tmp_path / "circuit.json")])
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "verify.json").read_text())
    assert (
        row(s, "attribution_head_auc", "vf")["value"] == 0.0 and row(s, "attribution_head_auc", "vf")["holds"] is False
    )
    assert (
        row(s, "knockout_arbitration_auc", "vf")["value"] == 0.5
        and row(s, "knockout_arbitration_auc", "vf")["holds"] is False
    )
    assert "does not hold" in (tmp_path / "summary.md").read_text()


def test_layer_targets_read_the_circuits_layers(tmp_path):
    """The same results against decoy layers (the true buffer and arbitration layers swapped) hold no layer
    target, and a circuit that declares no layers leaves them not evaluable, reported rather than dropped."""
    _run(tmp_path, good=True)
    decoy = dict(CIRCUIT, buffer_layers=[2, 3], arbitration_layers=[0, 1])
    (tmp_path / "decoy.json").write_text(json.dumps(decoy))
    s = verify(tmp_path, tmp_path / "decoy.json")
    layers = [r for r in s["results"] if r["level"] == "layers"]
    assert len(layers) == 6 and not any(r["holds"] for r in layers)
    (tmp_path / "heads_only.json").write_text(json.dumps({"heads": CIRCUIT["heads"]}))
    s = verify(tmp_path, tmp_path / "heads_only.json")
    layers = [r for r in s["results"] if r["level"] == "layers"]
    assert len(layers) == 6 and all(r["holds"] is None and "declares no" in r["detail"]["reason"] for r in layers)
    assert "not evaluable" in (tmp_path / "summary.md").read_text()


def test_only_the_followed_cue_route_is_scored_for_the_buffer(tmp_path):
    """tf follows the text: its buffer target reads context->instruction; vision->instruction (the competitor's
    cue, nothing to lose) may peak anywhere without changing it."""
    _run(tmp_path, good=True)
    ds = xr.load_dataset(tmp_path / "knockout.nc")
    ds["nssd"][1, 3] = 0.0
    ds["nssd"][1, 3, 3] = 0.2  # tf vision->instruction "peaks" in the arbitration layers
    ds.to_netcdf(tmp_path / "knockout.nc")
    assert row(verify(tmp_path, tmp_path / "circuit.json"), "knockout_buffer_auc", "tf")["holds"]
    ds["nssd"][1, 4] = 0.0
    ds["nssd"][1, 4, 3] = 0.2  # tf context->instruction now matters in the wrong layers
    ds.to_netcdf(tmp_path / "knockout.nc")
    tf = row(verify(tmp_path, tmp_path / "circuit.json"), "knockout_buffer_auc", "tf")
    assert tf["holds"] is False and tf["detail"]["peak_layer"] == 3


MAIN = """name: main
model: {id: "toy:anchored"}
data: {source: organism, n_samples: 16, filter: all, filter_rule: first_token}
analyses: [{kind: attribution}]
verify: {amplify: flawed.yaml}
"""
FLAWED = """name: flawed
model: {id: "toy:anchored-flawed"}
data: {source: organism, n_samples: 999, filter: all, filter_rule: first_token}
analyses:
  - {kind: attribution}
  - {kind: heads_amplify, n_heads: [3], alphas: [4], seeds: 2, rule: first_token}
"""


@pytest.mark.slow
def test_a_recipe_with_verify_runs_its_companion_and_scores_both(tmp_path):
    """`verify:` in a recipe: the companion recipe runs into OUT/<its name> (taking over the run's data.*
    --set), and verify.json scores the main run's attribution and the companion's amplification, the
    latter equal to the repair read directly off the companion's per-prompt results."""
    import anchorlab

    (tmp_path / "main.yaml").write_text(MAIN)
    (tmp_path / "flawed.yaml").write_text(FLAWED)
    out = tmp_path / "out"
    res = anchorlab.run(tmp_path / "main.yaml", out=out, overrides=["data.n_samples=64"])
    assert {"attribution", "flawed/attribution", "flawed/heads_amplify"} <= set(res)
    scores = json.loads((out / "verify.json").read_text())
    assert scores["amplify_dir"] == str(out / "flawed") and SECTION in (out / "summary.md").read_text()
    amp = xr.open_dataset(out / "flawed" / "heads_amplify.nc")
    assert amp.sizes["sample"] == 64  # the main run's --set data.n_samples reached the companion
    for t in ("vf", "tf"):
        follows = amp["follows"].sel(task=t, setting="targeted", alpha=4.0).squeeze(drop=True)
        failing = amp["selected"].sel(task=t).values.astype(bool)
        assert failing.any()
        direct = float(follows.values[:, failing].mean())  # (seed, sample) -> over seeds and the failing prompts
        amp_row = row(scores, "amplification", t)
        assert abs(amp_row["detail"]["repair_targeted"]["4.0"] - direct) < 1e-4
        rank = xr.load_dataset(out / "flawed" / "attribution.nc")["head_rank"].sel(task=t).values
        top = sorted([int(l), int(h)] for l, h in zip(*np.nonzero(rank <= 3)))
        assert amp_row["detail"]["chosen"] == top  # what was amplified: the companion's attribution top 3
        assert row(scores, "attribution_head_auc", t)["value"] >= 0.95


def test_recipe_verify_errors_before_any_compute(tmp_path):
    (tmp_path / "main.yaml").write_text(MAIN)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(tmp_path / "main.yaml"), "--out", str(out)])
    assert r.exit_code != 0 and "verify.amplify: no recipe at" in r.output and not out.exists()
    (tmp_path / "main.yaml").write_text(MAIN.replace("toy:anchored", "toy:arbiter").replace("organism", "toy"))
    r = CliRunner().invoke(main, ["run", str(tmp_path / "main.yaml"), "--out", str(out)])
    assert r.exit_code != 0 and "verify: no circuit.json" in r.output and not out.exists()


FAMILY = """name: family
model: {id: "toy:anchored"}
data: {source: organism, n_samples: 8, filter: all, filter_rule: first_token}
analyses: [{kind: attribution, n_bootstrap: 20}]
verify: {family: ["toy:anchored-flawed"]}
"""


def test_a_family_is_run_verified_and_tabled(tmp_path):
    """verify.family: the recipe runs on each member into OUT/<member>, each is verified against its own
    circuit.json, and method_table.md holds each member's verify values; an unknown member is refused
    before any compute."""
    import anchorlab

    (tmp_path / "family.yaml").write_text(FAMILY)
    out = tmp_path / "out"
    anchorlab.run(tmp_path / "family.yaml", out=out)
    table = (out / "method_table.md").read_text()
    for model, folder in (("toy:anchored", out), ("toy:anchored-flawed", out / "toy-anchored-flawed")):
        auc = [row(json.loads((folder / "verify.json").read_text()), "attribution_head_auc", t)["value"]
               for t in ("vf", "tf")]
        line = next(x for x in table.splitlines() if x.startswith(f"| `{model}` |"))
        assert line.count(" / ") == 1 and all(f"{v:.3f}" in line for v in auc), (line, auc)
    (tmp_path / "family.yaml").write_text(FAMILY.replace("toy:anchored-flawed", "toy:nope"))
    r = CliRunner().invoke(main, ["run", str(tmp_path / "family.yaml"), "--out", str(tmp_path / "out2")])
    assert r.exit_code != 0 and "verify.family.0" in r.output and not (tmp_path / "out2").exists()
