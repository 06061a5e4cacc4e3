"""`anchorlab run` as a user runs it: MC² (stand-in images) and a hand-written JSONL dataset, docs/method.md §3.2
on tiny random Qwen2.5-VL and LLaVA checkpoints, through the example recipes shipped in recipes/."""
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from data_support import write_mc2

from anchorlab.cli import main
from anchorlab.data.sources import read_records
from anchorlab.data.standins import write_standins
from anchorlab.models.tiny import tiny_model_path

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


def run(recipe: Path, out: Path, *sets: str) -> xr.Dataset:
    args = ["run", str(recipe), "--out", str(out), "--set", "analyses.0.n_bootstrap=20", "--set", "batch_size=4"]
    for item in sets:
        args += ["--set", item]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "signal: signal('task', 'modality', 'layer', 'sample')" in result.output
    return xr.load_dataset(out / "signal.nc")


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
def test_mc2_recipe_with_standin_images(tmp_path, family):
    path = write_mc2(tmp_path / "mc2")
    records, _ = read_records("mc2", path)
    write_standins(records, tmp_path / "coco" / "val2014", "coco_val")
    model = str(tiny_model_path(family))
    ds = run(ROOT / "recipes" / "mc2_signal.yaml", tmp_path / "out", f"model.id={model}", "model.device=cpu",
             "model.dtype=float32", f"data.path={path}", f"data.image_root={tmp_path / 'coco'}",
             "data.n_samples=3", "data.filter=all")
    assert ds.sizes["sample"] == 3 and all(str(s).startswith("mc2-") for s in ds["sample"].values)
    assert list(ds["task"].values) == ["vf", "tf"] and ds.sizes["layer"] == 4
    assert np.isfinite(ds["signal"].values).all() and ((ds["ldar"] >= 0) & (ds["ldar"] <= 1)).all()
    assert ds.attrs["data_source"] == "mc2" and ds.attrs["data_path"] == str(path)
    assert ds.attrs["model_family"] == family and ds.attrs["data_prompt_format"] == "open"


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
def test_jsonl_example_recipe(tmp_path, family):
    model = str(tiny_model_path(family))
    ds = run(ROOT / "recipes" / "jsonl_signal.yaml", tmp_path / "out", f"model.id={model}")
    assert [str(s) for s in ds["sample"].values] == [f"square-{i}" for i in range(1, 7)]
    assert ds.attrs["data_dictionary"].endswith("examples/conflicts/samples.dictionary.json")
    assert np.isfinite(ds["signal"].values).all() and (tmp_path / "out" / "figures").is_dir()


def test_jsonl_two_option_both_orders(tmp_path):
    model = str(tiny_model_path("llava"))
    ds = run(ROOT / "recipes" / "jsonl_signal.yaml", tmp_path / "out", f"model.id={model}",
             "data.prompt.format=two_option", "data.n_samples=2")
    ids = [str(s) for s in ds["sample"].values]
    assert len(ids) == 4 and {i.split("#")[1] for i in ids} == {"vA", "tA"}
    assert ds.attrs["data_option_order"] == "both" and "option letters" in ds.attrs["data_answer_tokens"]
