"""The run folder's lifecycle as a user meets it: a failed run's folder is reused, --resume accepts
changes that touch nothing stored and refuses (naming them) those that do, --force removes exactly
what anchorlab wrote, changed inputs are refused, a figure never fails a run, and an analysis with
no prompt to run on is recorded as not run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import anchorlab
from anchorlab.analyses.knockout import KnockoutAnalysis
from anchorlab.cli import main
from anchorlab.errors import UserError
from anchorlab.run.results import escape_text, unescape_text, write_dataset

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


def small(model) -> list[str]:
    return [f"model.id={model}", "data.n_samples=4", "batch_size=2", "data.filter=all"]


def two_analyses(tmp_path: Path, model) -> Path:
    """A recipe with a cheap signal and a cheap knockout, for resuming one while the other is stored."""
    path = tmp_path / "two.yaml"
    path.write_text(f"""
model: {{id: {model}}}
data: {{source: toy, n_samples: 4, filter: all}}
analyses:
  - {{kind: signal, n_bootstrap: 20}}
  - {{kind: knockout, n_bootstrap: 20, pathways: [instruction->last], layers: [1]}}
batch_size: 2
""")
    return path


def test_failed_run_before_storing_anything_leaves_a_reusable_folder(tmp_path, random_toy_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="model.id"):
        anchorlab.run(QUICKSTART, out=out, overrides=small(tmp_path / "no-such-model"))
    assert not (out / "run.json").exists()  # refused before the folder said "running"
    out.mkdir(exist_ok=True)
    with pytest.raises(UserError, match=r"analyses\[signal\]\.layers: \[9\] out of range"):
        anchorlab.run(QUICKSTART, out=out, overrides=small(random_toy_path) + ["analyses.0.layers=[0, 9]"])
    # a run that fails after starting but before its first chunk leaves run.json; a plain rerun reuses it
    (out / "run.json").write_text(json.dumps({"recipe": {}, "status": "running", "finished": [], "written": []}))
    result = anchorlab.run(QUICKSTART, out=out, overrides=small(random_toy_path))
    assert "signal" in result and json.loads((out / "run.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_resume_accepts_changes_to_what_stored_nothing_and_names_what_did(tmp_path, random_toy_path, monkeypatch):
    recipe = two_analyses(tmp_path, random_toy_path)
    out = tmp_path / "run"

    def interrupted(self, batch, rows):
        raise KeyboardInterrupt("stop in knockout")

    monkeypatch.setattr(KnockoutAnalysis, "run_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        anchorlab.run(recipe, out=out)
    monkeypatch.undo()
    state = json.loads((out / "run.json").read_text())
    assert state["finished"] == ["signal"] and state["status"] == "interrupted"
    # the knockout stored nothing: a change there is accepted on --resume
    done = anchorlab.run(recipe, out=out, overrides=["analyses.1.layers=[2]"], resume=True)
    assert list(done["knockout"]["layer"].values) == [2]
    # a finished run: changing the stored signal analysis is refused, naming it
    with pytest.raises(UserError, match=r"analyses\.0\.n_bootstrap: 20 -> 30 \(analysis 'signal' has stored results\)"):
        anchorlab.run(recipe, out=out, overrides=["analyses.1.layers=[2]", "analyses.0.n_bootstrap=30"], resume=True)
    with pytest.raises(UserError, match=r"in what is already stored: batch_size: 2 -> 3"):
        anchorlab.run(recipe, out=out, overrides=["analyses.1.layers=[2]", "batch_size=3"], resume=True)
    with pytest.raises(UserError, match=r"inputs changed since .*run was started: data\.n_samples changed: 4 -> 3; "
                                        r"pass --force to start over$"):
        anchorlab.run(recipe, out=out, overrides=["analyses.1.layers=[2]", "data.n_samples=3"], resume=True)


def test_resume_refuses_changed_data_and_attrs_record_the_hashes(tmp_path, monkeypatch):
    data = tmp_path / "conflicts"
    shutil.copytree(ROOT / "examples" / "conflicts", data)
    recipe = tmp_path / "jsonl.yaml"
    recipe.write_text((ROOT / "recipes" / "jsonl_signal.yaml").read_text().replace(
        "examples/conflicts/samples.jsonl", str(data / "samples.jsonl")))
    out = tmp_path / "run"
    calls = {"n": 0}
    from anchorlab.analyses.signal import SignalAnalysis

    original = SignalAnalysis.run_batch

    def once(self, batch, rows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("after one batch")
        return original(self, batch, rows)

    monkeypatch.setattr(SignalAnalysis, "run_batch", once)
    with pytest.raises(KeyboardInterrupt):
        anchorlab.run(recipe, out=out, overrides=["batch_size=2"])
    monkeypatch.undo()
    lines = (data / "samples.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace("The square in the picture is blue.", "The square in the picture is yellow.")
    (data / "samples.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"--resume refused: the run's inputs changed since .*: data\.path: "
                                        r"\S+samples\.jsonl changed on disk; pass --force to start over$"):
        anchorlab.run(recipe, out=out, overrides=["batch_size=2"], resume=True)
    ds = anchorlab.run(recipe, out=out, overrides=["batch_size=2"], force=True)["signal"]
    assert len(ds.attrs["sha256_data_file"]) == 64 and len(ds.attrs["sha256_data_samples"]) == 64
    assert len(ds.attrs["sha256_weights_model.safetensors"]) == 64
    assert ds.attrs["anchorlab_commit"]


@pytest.mark.slow
def test_force_removes_exactly_what_anchorlab_wrote(tmp_path, random_toy_path):
    out = tmp_path / "run"
    recipe = two_analyses(tmp_path, random_toy_path)
    anchorlab.run(recipe, out=out)
    assert (out / "knockout.nc").is_file() and (out / "summary.md").is_file()
    (out / "my_notes.txt").write_text("mine")
    (out / "figures" / "my_plot.png").write_bytes(b"mine")
    anchorlab.run(QUICKSTART, out=out, overrides=small(random_toy_path), force=True)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "knockout.nc" not in left and "summary.md" not in left  # the other run's results are gone
    assert "my_notes.txt" in left and "figures/my_plot.png" in left  # the user's own files stay
    written = json.loads((out / "run.json").read_text())["written"]
    assert sorted(written) == sorted(p for p in left if p not in ("run.json", "run.lock", "my_notes.txt",
                                                                  "figures/my_plot.png"))


def test_a_failing_figure_does_not_fail_the_run_and_plot_retries(tmp_path, random_toy_path, monkeypatch, caplog):
    from anchorlab.analyses.signal import SignalAnalysis

    def broken(cls, ds, fig_dir):
        raise ValueError("simulated plotting bug")

    monkeypatch.setattr(SignalAnalysis, "figures", classmethod(broken))
    out = tmp_path / "run"
    result = anchorlab.run(QUICKSTART, out=out, overrides=small(random_toy_path))
    assert "signal" in result and json.loads((out / "run.json").read_text())["status"] == "complete"
    assert any(
        "figures of signal failed (ValueError: simulated plotting bug)" in r.message and "anchorlab plot" in r.message
        for r in caplog.records
    )
    assert not (out / "figures" / "signal_ldar.png").exists()
    monkeypatch.undo()
    drawn = CliRunner().invoke(main, ["plot", str(out)])
    assert drawn.exit_code == 0, drawn.output
    assert (out / "figures" / "signal_ldar.png").stat().st_size > 10_000


def test_negative_error_bars_are_clipped():
    from anchorlab.plots.style import error_bars

    mean = np.array([0.5, 0.1])
    ci = np.array([[0.6, 0.9], [0.0, 0.05]])  # a percentile CI need not contain the mean
    bars = error_bars(mean, ci)
    assert (bars >= 0).all() and bars.tolist() == [[0.0, 0.1], [0.4, 0.0]]


@pytest.mark.slow
def test_analysis_without_selected_prompts_is_recorded_not_run(tmp_path):
    """toy:arbiter follows every prompt: amplification (on failures) has nothing to run on."""
    recipe = tmp_path / "amp.yaml"
    recipe.write_text("""
model: {id: "toy:arbiter"}
data: {source: toy, n_samples: 4, filter: all, filter_rule: first_token}
analyses:
  - {kind: attribution, n_bootstrap: 20}
  - {kind: heads_amplify, n_heads: [2], alphas: [2], seeds: 2, rule: first_token, n_bootstrap: 20}
""")
    out = tmp_path / "run"
    result = anchorlab.run(recipe, out=out)
    ds = xr.open_dataset(out / "heads_amplify.nc")
    assert ds.attrs["status"] == "not run" and "no prompt is selected (rows: fails" in ds.attrs["not_run_reason"]
    assert result["heads_amplify"].attrs["status"] == "not run"
    summary = (out / "summary.md").read_text()
    assert "- heads_amplify: not run — no prompt is selected" in summary


@pytest.mark.parametrize("text", ["answer\x00with NUL", "back\\slash \\x41", "esc \x1b[31m red", "tab\tnew\nline", ""])
def test_generated_strings_round_trip_through_netcdf(tmp_path, text):
    ds = xr.Dataset({"answer": (("sample",), np.array([text, "plain"], dtype=object))})
    path = write_dataset(ds, tmp_path / "s.nc")
    with xr.open_dataset(path) as back:
        stored = [str(v) for v in back["answer"].values]
        escaped = "escaped" in back["answer"].attrs
    assert [unescape_text(v) if escaped else v for v in stored] == [text, "plain"]
    assert unescape_text(escape_text(text)) == text


def test_sigint_says_how_to_resume(tmp_path, monkeypatch):
    import anchorlab.api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(anchorlab.api, "run", interrupted)
    result = CliRunner().invoke(main, ["run", str(QUICKSTART), "--out", str(tmp_path / "o"), "--set", "seed=1"])
    assert result.exit_code == 130
    assert f"anchorlab run {QUICKSTART} --out {tmp_path / 'o'} --set seed=1 --resume" in result.output
