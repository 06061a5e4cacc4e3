"""anchorlab verify: recovery scores of a run against a circuit.json, on hand-made results."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from anchorlab.cli import main
from anchorlab.report.verify import SECTION, roc_auc, verify

CIRCUIT = {"heads": [[2, 1], [3, 0]], "buffer_layers": [0, 1], "arbitration_layers": [2, 3]}


def test_roc_auc():
    pos = np.array([True, False, False, True])
    assert roc_auc(np.array([3.0, 1.0, 2.0, 4.0]), pos) == 1.0
    assert roc_auc(np.array([0.0, 1.0, 2.0, 4.0]), pos) == 0.5
    assert roc_auc(np.array([1.0, 1.0, 1.0, 1.0]), pos) == 0.5


def _run(tmp_path, good: bool):
    tasks, layers, heads = ["vf", "tf"], [0, 1, 2, 3], [0, 1]
    score = np.zeros((2, 4, 2))
    for l, h in CIRCUIT["heads"]:
        score[:, l, h] = 1.0 if good else -1.0
    rank = np.argsort(np.argsort(-score.reshape(2, -1), axis=1), axis=1).reshape(2, 4, 2) + 1
    xr.Dataset({"head_score_mean": (("task", "layer", "head"), score), "head_rank": (("task", "layer", "head"), rank)},
               coords={"task": tasks, "layer": layers, "head": heads}, attrs={"analysis": "attribution", "model_id": "x"}
               ).to_netcdf(tmp_path / "attribution.nc")
    paths = ["vision->last", "context->last", "instruction->last", "vision->instruction", "context->instruction"]
    nssd = np.zeros((2, 5, 4, 3))
    nssd[:, 2, 2:] = 0.5 if good else 0.0
    nssd[:, 3, 0] = nssd[:, 4, 1] = 0.3
    nssd[:, 0] = 0.01
    xr.Dataset({"nssd": (("task", "pathway", "layer", "sample"), nssd),
                "selected": (("task", "sample"), np.ones((2, 3), dtype=bool))},
               coords={"task": tasks, "pathway": paths, "layer": layers}, attrs={"analysis": "knockout"}
               ).to_netcdf(tmp_path / "knockout.nc")
    xr.Dataset({"ldar": (("task", "layer"), np.array([[0.5, 0.6, 0.9, 1.0]] * 2))}, coords={"task": tasks, "layer": layers},
               attrs={"analysis": "signal"}).to_netcdf(tmp_path / "signal.nc")
    (tmp_path / "summary.md").write_text("# Does the paper hold?\n\n- a claim\n")
    (tmp_path / "circuit.json").write_text(json.dumps(CIRCUIT))


def test_verify_scores_a_recovered_circuit(tmp_path):
    _run(tmp_path, good=True)
    s = verify(tmp_path, tmp_path / "circuit.json")
    assert s["attribution"]["vf"]["auc"] == 1.0 and s["attribution"]["vf"]["gstar_ranks"] == [1, 2]
    assert s["knockout"]["vf"]["ratio"] == {"vision->last": 50.0, "context->last": float("inf")}
    assert s["knockout"]["tf"]["holds_localisation"] and s["knockout"]["tf"]["holds_buffer_peak"]
    assert s["signal"]["vf"]["holds"]
    text = (tmp_path / "summary.md").read_text()
    assert text.startswith("# Does the paper hold?") and text.count(SECTION) == 1 and "holds**" in text
    verify(tmp_path, tmp_path / "circuit.json")  # re-running replaces the section
    assert (tmp_path / "summary.md").read_text().count(SECTION) == 1
    assert json.loads((tmp_path / "verify.json").read_text())["attribution"]["tf"]["auc"] == 1.0


def test_verify_flags_a_missed_circuit_from_the_cli(tmp_path):
    _run(tmp_path, good=False)
    result = CliRunner().invoke(main, ["verify", str(tmp_path), "--circuit", str(tmp_path / "circuit.json")])
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "verify.json").read_text())
    assert s["attribution"]["vf"]["auc"] == 0.0 and not s["attribution"]["vf"]["holds"]
    assert not s["knockout"]["vf"]["holds_localisation"]
    assert "does not hold" in (tmp_path / "summary.md").read_text()


def test_buffer_peak_scores_only_routes_with_an_effect(tmp_path):
    """The competitor's cue route (tf: vision->instruction) has nothing to lose: a flat ~0 curve whose
    argmax lands anywhere is reported, not scored; a route with an effect peaking outside the buffer fails."""
    _run(tmp_path, good=True)
    ds = xr.load_dataset(tmp_path / "knockout.nc")
    ds["nssd"][1, 3] = 0.0
    ds["nssd"][1, 3, 3] = 1e-4  # tf vision->instruction: "peaks" at layer 3, in the arbitration layers
    ds.to_netcdf(tmp_path / "knockout.nc")
    tf = verify(tmp_path, tmp_path / "circuit.json")["knockout"]["tf"]
    assert tf["into_instruction_peaks"]["vision->instruction"] == {"peak_layer": 3, "peak_nssd": 0.0001,
                                                                  "in_buffer": False, "effect": False}
    assert tf["holds_buffer_peak"]
    ds["nssd"][1, 3, 3] = 0.2  # now it matters, and in the wrong layers
    ds.to_netcdf(tmp_path / "knockout.nc")
    assert not verify(tmp_path, tmp_path / "circuit.json")["knockout"]["tf"]["holds_buffer_peak"]


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
        assert abs(scores["heads_amplify"][t]["repair_targeted"]["4.0"] - direct) < 1e-4
        assert scores["attribution"][t]["auc"] >= 0.95


def test_recipe_verify_errors_before_any_compute(tmp_path):
    (tmp_path / "main.yaml").write_text(MAIN)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(tmp_path / "main.yaml"), "--out", str(out)])
    assert r.exit_code != 0 and "verify.amplify: no recipe at" in r.output and not out.exists()
    (tmp_path / "main.yaml").write_text(MAIN.replace("toy:anchored", "toy:arbiter").replace("organism", "toy"))
    r = CliRunner().invoke(main, ["run", str(tmp_path / "main.yaml"), "--out", str(out)])
    assert r.exit_code != 0 and "verify: no circuit.json" in r.output and not out.exists()
