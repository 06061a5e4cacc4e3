"""recipes/paper.yaml end to end on the shipped flawed toy: every result, figure and summary.md."""
from pathlib import Path

import pytest
import xarray as xr
from click.testing import CliRunner

from anchorlab.cli import main

pytestmark = pytest.mark.slow  # the whole paper recipe
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ("signal", "signal_ablation", "knockout", "path_blocking", "attribution", "heads_block", "heads_amplify")
FIGURES = ("signal_ldar.png", "signal_trajectory.png", "signal_ablation.png", "knockout_pathways.png",
           "knockout_layers.png", "path_blocking_mfr.png", "heads_block_mfr.png", "heads_amplify_mfr.png")


def test_paper_recipe_writes_everything(tmp_path):
    small = ["data.n_samples=24", "analyses.5.n_heads=[1,4]", "analyses.5.seeds=2", "analyses.6.alphas=[1,4]",
             "analyses.6.seeds=2", "analyses.2.layers=[1,2]"]
    args = ["run", str(ROOT / "recipes" / "paper.yaml"), "--out", str(tmp_path)]
    for item in small:
        args += ["--set", item]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name in RESULTS:
        ds = xr.open_dataset(tmp_path / f"{name}.nc")
        assert ds.attrs["model_id"] == "toy:arbiter-flawed"
    for fig in FIGURES:
        assert (tmp_path / "figures" / fig).exists(), fig
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("# Does the paper hold on `toy:arbiter-flawed`?")
    for claim in ("Instruction anchors (vf)", "LDAR phase transition (tf)", "Path blocking (vf)",
                  "Deep attention arbitrates", "Blocking 4 targeted heads (vf)", "Amplifying targeted heads ×4"):
        assert claim in summary, claim
    assert summary.count("**holds**") + summary.count("**does not hold**") >= 12
    amplify = xr.open_dataset(tmp_path / "heads_amplify.nc")
    assert amplify.attrs["rows"] == "fails" and amplify["selected"].any()
    block = xr.open_dataset(tmp_path / "heads_block.nc")
    assert block.attrs["rows"] == "follows"
    # α = 1 is the original model: identical MFR
    assert (
        amplify["mfr"].sel(alpha=1.0, setting="targeted") == amplify["mfr"].sel(alpha=1.0, setting="original")
    ).all()
