"""The quickstart recipe end to end, as a user runs it, on the shipped toy model."""
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from anchorlab.cli import main
from anchorlab.recipe import sha256

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_writes_labelled_result_and_figures(tmp_path):
    out = tmp_path / "qs"
    result = CliRunner().invoke(main, ["run", str(ROOT / "recipes" / "quickstart.yaml"), "--out", str(out),
                                       "--set", "data.n_samples=24"])
    assert result.exit_code == 0, result.output
    ds = xr.open_dataset(out / "signal.nc")
    assert ds["signal"].dims == ("task", "modality", "layer", "sample")
    assert ds["ldar"].dims == ("task", "layer")
    assert ds["ldar_ci"].dims == ("task", "layer", "bound")
    assert list(ds["task"].values) == ["vf", "tf"] and list(ds["modality"].values) == ["vision", "text"]
    assert list(ds["layer"].values) == list(range(8)) and ds.sizes["sample"] == 24
    assert all(str(s).startswith("org-") for s in ds["sample"].values)
    text = (ROOT / "recipes" / "quickstart.yaml").read_text()
    assert ds.attrs["recipe"] == text and ds.attrs["recipe_sha256"] == sha256(text)
    assert ds.attrs["overrides"] == "data.n_samples=24" and "n_samples: 24" in ds.attrs["recipe_resolved"]
    for pkg in ("anchorlab", "nnsight", "transformers", "torch"):
        assert ds.attrs[f"version_{pkg}"]
    assert ds.attrs["model_id"] == "toy:anchored" and ds.attrs["backend"] == "local"
    assert ds.attrs["param_k"] == 1 and ds.attrs["param_pool"] == "max"
    # the shipped arbiter follows instructions: the filter keeps (almost) everything, and what it
    # keeps is exactly what the first-token rule says it follows
    np.testing.assert_array_equal(ds["selected"].values, ds["followed_first_token"].values)
    assert ds["selected"].values.mean() >= 0.9
    # LDAR is a rate with a CI around it; at the last position of the last layer the followed
    # modality's signal wins for the samples the model follows
    assert ((ds["ldar"] >= 0) & (ds["ldar"] <= 1)).all()
    assert (ds["ldar_ci"].sel(bound="lo") <= ds["ldar"] + 1e-9).all()
    assert (ds["ldar_ci"].sel(bound="hi") >= ds["ldar"] - 1e-9).all()
    for fig in ("signal_ldar.png", "signal_trajectory.png"):
        assert (out / "figures" / fig).stat().st_size > 10_000
    replot = CliRunner().invoke(main, ["plot", str(out)])
    assert replot.exit_code == 0 and "signal_ldar.png" in replot.output


def test_python_entry_point_returns_datasets(tmp_path):
    import anchorlab

    results = anchorlab.run(ROOT / "recipes" / "quickstart.yaml", out=tmp_path,
                            overrides=["data.n_samples=4", "data.filter=all", "data.tasks=[tf]"])
    ds = results["signal"]
    assert list(ds["task"].values) == ["tf"] and ds.sizes["sample"] == 4
    assert (tmp_path / "signal.nc").exists()
