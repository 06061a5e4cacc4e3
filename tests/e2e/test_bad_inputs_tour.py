"""A tour of bad inputs (issue 25) through the real `anchorlab` command: each ends in exit 2 and exactly one
`error:` line naming the field, file, sample or role, with no traceback and nothing written. Every bad recipe
that `run` refuses before computing, `validate` refuses with the same line (this tour's and test_mistakes')."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner
from test_mistakes import BASE, analysis, with_
from test_mistakes import CASES as MISTAKES

from anchorlab.cli import main
from anchorlab.interventions.knockout import window_layers
from anchorlab.models.tiny import tiny_model_path

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "anchorlab" / "toy" / "weights" / "arbiter"  # toy:arbiter, 4 layers x 8 heads


def refused(result, *fragments, absent=()) -> str:
    """Exit 2, no traceback, one `error:` line holding every fragment; returns that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, (SystemExit, type(None)))
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    for fragment in absent:
        assert fragment not in result.output, (fragment, result.output)
    return errors[0]


def rankings(path: Path, layers: int = 4, heads: int = 8, tasks=("vf", "tf"), analysis="attribution") -> str:
    """An attribution result's head rankings (the part heads_from reads) at a given shape."""
    rank = np.arange(len(tasks) * layers * heads).reshape(len(tasks), layers, heads) % (layers * heads) + 1
    ds = xr.Dataset({"head_rank": (("task", "layer", "head"), rank)},
                    coords={"task": list(tasks), "layer": range(layers), "head": range(heads)},
                    attrs={"analysis": analysis})
    ds.to_netcdf(path, engine="h5netcdf")
    return str(path)


def conflicts(tmp: Path, image: str | None = None) -> Path:
    """examples/conflicts copied, the first line's image path replaced by `image`."""
    dst = tmp / "conflicts"
    shutil.copytree(ROOT / "examples" / "conflicts", dst)
    if image is not None:
        lines = (dst / "samples.jsonl").read_text().splitlines()
        lines[0] = json.dumps({**json.loads(lines[0]), "image": image})
        (dst / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return dst


def jsonl(tmp: Path, image: str | None = None, **data) -> dict:
    return with_("data", {"source": "jsonl", "path": str(conflicts(tmp, image) / "samples.jsonl"), **data})


def toy_copy(tmp: Path, drop: str) -> str:
    dst = tmp / "model"
    shutil.copytree(TOY, dst)
    for f in dst.glob(drop):
        f.unlink()
    return str(dst)


def broken(tmp: Path, name: str, text: str = '{"heads": [[0, 1]') -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def text_model() -> str:
    return str(tiny_model_path("qwen2"))  # no image: the vision role is empty


def outside_image(tmp: Path) -> str:
    path = tmp / "elsewhere.png"
    shutil.copy(ROOT / "examples" / "conflicts" / "images" / "red_square.png", path)
    return str(path)


def mc2_list(tmp: Path) -> dict:
    folder = conflicts(tmp)
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    (folder / "mc2.json").write_text(json.dumps(rows))
    return with_("data", {"source": "jsonl", "path": str(folder / "mc2.json")})


def mc2_path_id(tmp: Path) -> dict:
    item = {"image_id": "../../etc/passwd", "task": "color", "question": "What colour?", "context": "It is blue.",
            "answer_vision": "red", "answer_text": "blue"}
    (tmp / "mc2.json").write_text(json.dumps([item]))
    return with_("data", {"source": "mc2", "path": str(tmp / "mc2.json"), "image_root": str(tmp)})


# name: (recipe from a tmp folder, fragments of the one error line, fragments that must not appear)
TOUR = {
    "negative seed": (lambda t: with_("seed", -5), ["seed: Input should be greater than or equal to 0 (got -5)"], []),
    "negative data.seed": (
        lambda t: with_("data.seed", -1),
        ["data.seed: Input should be greater than or equal to 0"],
        [],
    ),
    "batch_size a list": (
        lambda t: with_("batch_size", [1]),
        ["batch_size: give a number of prompts >= 1 or 'auto' (got [1])"],
        ["batch_size.int", "batch_size.str"],
    ),
    "batch_size 0": (
        lambda t: with_("batch_size", 0),
        ["batch_size: give a number of prompts >= 1 or 'auto' (got 0)"],
        ["(got 0) (got 0)"],
    ),
    "memory_budget unreadable": (
        lambda t: with_("memory_budget", "lots"),
        ["memory_budget: give bytes", "'lots'"],
        ["memory_budget.str"],
    ),
    "empty vf instruction": (
        lambda t: with_("data.prompt.instructions", {"vf": "  "}),
        ["data.prompt.instructions.vf: empty"],
        ["sample"],
    ),
    "a task twice": (lambda t: with_("data.tasks", ["vf", "vf"]), ["data.tasks: 'vf' given twice"], []),
    "a pathway twice": (
        lambda t: analysis(kind="knockout", pathways=["vision->last", "vision -> last"]),
        ["analyses.0.pathways: pathway 'vision -> last' given twice"],
        [],
    ),
    "n_heads twice": (
        lambda t: analysis(kind="heads_block", n_heads=[2, 2]),
        ["analyses.0.n_heads: 2 given twice"],
        [],
    ),
    "two results, one name": (
        lambda t: with_("analyses", [{"kind": "signal", "name": "a"}, {"kind": "knockout", "name": "a"}]),
        ["analyses.1.name: 'a' is also the result name of analyses.0 (a.nc)"],
        [],
    ),
    "layers [99]": (
        lambda t: analysis(kind="signal", layers=[99]),
        ["analyses[signal].layers: [99] out of range for a model with 4 layers"],
        [],
    ),
    "layers []": (
        lambda t: analysis(kind="knockout", layers=[]),
        ["analyses.0.layers: List should have at least 1"],
        [],
    ),
    "last->vision": (
        lambda t: analysis(kind="knockout", pathways=["vision->last", "last->vision"]),
        ["analyses[knockout].pathways: 'last->vision' removes no attention edge"],
        ["'vision->last'"],
    ),
    "vision->vision, no image": (
        lambda t: with_("model.id", text_model(), analysis(kind="knockout", pathways=["vision->vision"])),
        ["analyses[knockout].pathways: 'vision->vision': role 'vision' is empty in sample 'toy-0-"],
        [],
    ),
    "positions vision, no image": (
        lambda t: with_("model.id", text_model(), analysis(kind="signal", positions="vision")),
        ["analyses[signal].positions: role 'vision' is empty in sample"],
        [],
    ),
    "k 100000": (
        lambda t: analysis(kind="signal", k=100000),
        ["analyses[signal].k: 100000 is more than the", "role 'instruction' has in any prompt"],
        [],
    ),
    "k 100000 in a sweep": (
        lambda t: analysis(kind="attribution", sweep={"k": [1, 100000]}),
        ["analyses[attribution].k: 100000"],
        [],
    ),
    "heads_from of another model": (
        lambda t: with_("data.filter", "follows", analysis(kind="heads_block", heads_from=rankings(t / "a.nc", 2, 4))),
        ["analyses[heads_block].heads_from:", "ranks 2 layers × 4 heads, this model has 4 × 8"],
        [],
    ),
    "heads_from not netCDF": (
        lambda t: analysis(kind="heads_block", heads_from=broken(t, "a.nc")),
        ["analyses[heads_block].heads_from:", "a.nc: not a readable netCDF file"],
        [],
    ),
    "heads_from a labels file": (
        lambda t: analysis(kind="heads_block", heads_from=rankings(t / "l.nc", analysis="labels")),
        ["analyses[heads_block].heads_from:", "is not an attribution result"],
        [],
    ),
    "heads_from missing a task": (
        lambda t: analysis(kind="heads_amplify", heads_from=rankings(t / "a.nc", tasks=["vf"])),
        ["analyses[heads_amplify].heads_from:", "has no rankings for task(s) tf"],
        [],
    ),
    "model folder missing": (
        lambda t: with_("model.id", str(t / "no-model")),
        ["model.id '{t}/no-model': {t}/no-model: not found"],
        ["Repo id"],
    ),
    "model folder without tokenizer": (
        lambda t: with_("model.id", toy_copy(t, "tokenizer*")),
        ["model.id", "no tokenizer files in {t}/model"],
        ["sentencepiece"],
    ),
    "mc2 on a JSONL file": (
        lambda t: with_("data", {"source": "mc2", "image_root": str(t), "path": str(conflicts(t) / "samples.jsonl")}),
        ["data.path:", "samples.jsonl: one JSON object per line", "use source: jsonl"],
        ["Extra data"],
    ),
    "jsonl on an MC² list": (mc2_list, ["data.path:", "mc2.json: one JSON list", "use source: mc2"], []),
    "MC² image_id naming a path": (
        mc2_path_id,
        ["mc2.json item 0: field 'image_id': '../../etc/passwd' is not an image id (it names a path)"],
        [],
    ),
    "image is a directory": (
        lambda t: jsonl(t, "images"),
        ["samples.jsonl line 1 (sample 'square-1'): image", "images: is a directory, not an image file"],
        ["not found"],
    ),
    "image path with ../": (
        lambda t: jsonl(t, "../elsewhere.png"),
        ["samples.jsonl line 1: field 'image':", "is outside the data folder", "data.allow_outside_paths: true"],
        [],
    ),
    "absolute image path elsewhere": (
        lambda t: jsonl(t, outside_image(t)),
        ["samples.jsonl line 1: field 'image': {t}/elsewhere.png is outside the data folder"],
        [],
    ),
    "data.path a directory": (
        lambda t: with_("data", {"source": "jsonl", "path": str(t)}),
        ["data.path: {t}: is a directory, not a file"],
        [],
    ),
    "data.image_root missing": (
        lambda t: jsonl(t, image_root=str(t / "pics")),
        ["data.image_root: {t}/pics: not found"],
        [],
    ),
    "dictionary not JSON": (
        lambda t: jsonl(t, dictionary=broken(t, "d.json")),
        ["data.dictionary: {t}/d.json: not valid JSON (", "line 1, column"],
        [],
    ),
    "labels not netCDF": (
        lambda t: with_("data.labels", broken(t, "labels.nc"), with_("data.filter", "follows")),
        ["data.labels: {t}/labels.nc: not a readable netCDF file"],
        [],
    ),
    "memory_budget too small for knockout": (  # the toy's longest prompt: signal 0.24 MB, knockout 0.37 MB of 0.32
        lambda t: with_(
            "analyses",
            [{"kind": "signal"}, {"kind": "knockout"}],
            with_("batch_size", "auto", with_("memory_budget", 400_000)),
        ),
        ["memory_budget:", "less than one prompt needs", "predicted for knockout"],
        [],
    ),
    "circuit.json broken": (
        lambda t: with_("verify", {"circuit": broken(t, "circuit.json")}),
        ["verify.circuit: {t}/circuit.json: not valid JSON"],
        [],
    ),
}


@pytest.mark.parametrize("case", list(TOUR))
def test_run_and_validate_refuse_with_the_same_line(tmp_path, case):
    make, fragments, absent = TOUR[case]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(make(tmp_path), allow_unicode=True))
    out = tmp_path / "out"
    fragments = [f.replace("{t}", str(tmp_path)) for f in fragments]
    ran = refused(CliRunner().invoke(main, ["run", str(recipe), "--out", str(out)]), *fragments, absent=absent)
    assert not out.exists(), sorted(out.rglob("*"))  # refused before the run folder (labels.nc included)
    checked = refused(CliRunner().invoke(main, ["validate", str(recipe), "--out", str(out)]), *fragments, absent=absent)
    assert checked == ran and not out.exists()


NEEDS_WEIGHTS = {"relabelled model type"}  # the weights' names are compared with the architecture when loaded


@pytest.mark.parametrize("case", [c for c in MISTAKES if c not in NEEDS_WEIGHTS])
def test_validate_refuses_what_the_run_refuses(tmp_path, case):
    make, extra, fragments = MISTAKES[case]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(make(tmp_path)))
    out = ["--out", str(tmp_path / "out")] if "--out" not in extra else []
    ran = refused(CliRunner().invoke(main, ["run", str(recipe), *out, *extra]), *fragments)
    checked = refused(CliRunner().invoke(main, ["validate", str(recipe), *out, *extra]), *fragments)
    assert checked == ran


def test_allowed_outside_paths_and_a_wide_window_are_accepted(tmp_path, caplog):
    """The escape hatch for image paths, and a knockout window wider than the model: clipped, with a note in
    the result's attrs and the log that matches the windows the engine knocks out."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(jsonl(tmp_path, "../elsewhere.png", allow_outside_paths=True)))
    outside_image(tmp_path)
    result = CliRunner().invoke(main, ["validate", str(recipe), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0 and "valid (data: 6 samples; model: 4 layers × 8 heads; prompts: 12 encoded" \
        in result.output, result.output
    recipe.write_text(yaml.safe_dump(analysis(kind="knockout", window=100, pathways=["instruction->last"])))
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="anchorlab"):
        result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    ds = xr.load_dataset(out / "knockout.nc")
    spans = {tuple(window_layers(c, 100, 4)) for c in ds["layer"].values}
    assert spans == {(0, 1, 2, 3)} and list(ds["window_start"].values) == [0] * 4
    note = ("window 100 is wider than the model's 4 layers: clipped at the model's ends; every centre knocks out the "
            "same layers 0..3, so NSSD does not vary with the centre layer")
    assert ds.attrs["window_note"] == note and note in caplog.text


def test_remote_without_a_key_names_it(tmp_path, monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.delenv("NDIF_HOST", raising=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(BASE))
    out = tmp_path / "out"
    for command in ("run", "validate"):
        refused(CliRunner().invoke(main, [command, str(recipe), "--out", str(out), "--remote"]),
                "NDIF_API_KEY is not set", "export NDIF_API_KEY=")
    assert not out.exists()


@pytest.mark.parametrize("offline", [False, True])
def test_unreachable_hub_fails_fast_once(tmp_path, monkeypatch, offline):
    """A hub id neither cached nor reachable: one line within seconds naming HF_HUB_OFFLINE, the cache and a
    local folder (transformers alone retried for ~30 s and printed its message twice)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(with_("model.id", "org/some-model")))
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / "out")])
    assert time.perf_counter() - started < 10
    line = refused(result, "model.id 'org/some-model'", "HF_HUB_OFFLINE", f"Hugging Face cache ({tmp_path / 'hf'})",
                   "pass a local folder as model.id")
    assert result.output.count("Hugging Face cache") == 1 and "Retrying" not in result.output, line
    # validate cannot check that model here: it says so and accepts the recipe
    result = CliRunner().invoke(main, ["validate", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0 and "model not checked: model.id 'org/some-model'" in result.output


def test_validate_checks_a_paper_model_from_its_published_shape(tmp_path, monkeypatch):
    """Not cached, no network: Qwen2.5-VL-7B's layers are still checked, from the shapes table (28 layers)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(with_("model.id", "Qwen/Qwen2.5-VL-7B-Instruct", analysis(kind="signal",
                                                                                              layers=[27, 28]))))
    refused(CliRunner().invoke(main, ["validate", str(recipe)]),
            "analyses[signal].layers: [28] out of range for a model with 28 layers (0..27)")


def test_shapes_deeper_than_published_are_refused(tmp_path):
    out = tmp_path / "deep"
    refused(CliRunner().invoke(main, ["shapes", "build", "qwen2.5-vl-7b", "--out", str(out), "--layers", "99"]),
            "--layers 99: qwen2.5-vl-7b (Qwen/Qwen2.5-VL-7B-Instruct) has 28 decoder layers; give 1..28")
    assert not out.exists()


def test_plot_names_a_truncated_result(tmp_path):
    good = xr.Dataset({"x": ("a", np.arange(1000.0))}, attrs={"analysis": "signal"})
    good.to_netcdf(tmp_path / "signal.nc", engine="h5netcdf")
    data = (tmp_path / "signal.nc").read_bytes()
    (tmp_path / "signal.nc").write_bytes(data[: len(data) // 2])
    refused(CliRunner().invoke(main, ["plot", str(tmp_path)]), f"{tmp_path / 'signal.nc'}: not a readable netCDF file")
    assert not (tmp_path / "figures").exists()


def test_standins_never_write_outside_their_folder(tmp_path):
    mc2_path_id(tmp_path)
    out = tmp_path / "pics"
    refused(CliRunner().invoke(main, ["data", "standins", str(tmp_path / "mc2.json"), "--out", str(out)]),
            "field 'image_id': '../../etc/passwd' is not an image id")
    assert not out.exists()
