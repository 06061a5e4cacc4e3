"""An interrupted run resumes to the identical result; finished runs are not overwritten by accident."""
from pathlib import Path

import pytest
import xarray as xr

import anchorlab
from anchorlab.analyses.signal import SignalAnalysis
from anchorlab.errors import UserError
from anchorlab.run.executor import WORK_ATTRS

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
TIME_ATTRS = {"started", "finished", *WORK_ATTRS}


def overrides(model_path):
    return [f"model.id={model_path}", "data.n_samples=12", "batch_size=4", "data.filter=all"]


@pytest.mark.slow
def test_interrupted_run_resumes_to_identical_result(tmp_path, random_organism_path, monkeypatch):
    full = anchorlab.run(RECIPE, out=tmp_path / "full", overrides=overrides(random_organism_path))["signal"]

    calls = {"n": 0}
    original = SignalAnalysis.run_batch

    def flaky(self, batch, rows):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated interruption")
        return original(self, batch, rows)

    monkeypatch.setattr(SignalAnalysis, "run_batch", flaky)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        anchorlab.run(RECIPE, out=out, overrides=overrides(random_organism_path))
    assert len(list((out / ".chunks" / "signal").glob("*.npz"))) == 3
    with pytest.raises(UserError, match="unfinished run; pass --resume"):
        anchorlab.run(RECIPE, out=out, overrides=overrides(random_organism_path))

    calls["n"] = -100  # no more failures; count what the resumed run computes
    resumed = anchorlab.run(RECIPE, out=out, overrides=overrides(random_organism_path), resume=True)["signal"]
    assert calls["n"] == -100 + 3  # 6 batches in all, 3 were already stored
    xr.testing.assert_identical(resumed.drop_attrs(), full.drop_attrs())
    assert {k: v for k, v in resumed.attrs.items() if k not in TIME_ATTRS} == {
        k: v for k, v in full.attrs.items() if k not in TIME_ATTRS
    }
    assert not (out / ".chunks").exists()


@pytest.mark.slow
def test_finished_run_needs_force_and_resume_refuses_changed_recipe(tmp_path, random_organism_path):
    out = tmp_path / "run"
    anchorlab.run(RECIPE, out=out, overrides=overrides(random_organism_path))
    with pytest.raises(UserError, match="already holds a finished run; pass --force"):
        anchorlab.run(RECIPE, out=out, overrides=overrides(random_organism_path))
    with pytest.raises(UserError, match=r"recipe changed .*analyses\.0\.k: 1 -> 2"):
        anchorlab.run(RECIPE, out=out, overrides=overrides(random_organism_path) + ["analyses.0.k=2"], resume=True)
    again = anchorlab.run(RECIPE, out=out, overrides=overrides(random_organism_path) + ["analyses.0.k=2"], force=True)
    assert again["signal"].attrs["param_k"] == 2
