"""The `mc2` source: MC²'s JSON with COCO images in either layout (stand-ins here, never COCO)."""
import json
from pathlib import Path

import numpy as np
import pytest
from data_support import MC2_ITEMS, write_mc2

from anchorlab.data import mc2
from anchorlab.data.sources import load_dataset, read_records
from anchorlab.data.standins import mc2_name, standin, write_standins
from anchorlab.errors import UserError
from anchorlab.recipe import DataSpec, RecipeError, parse_recipe

SHARED_MC2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "mc2" / "evaluate_final.json"


def spec(path, root, **kw) -> DataSpec:
    return DataSpec.model_validate({"source": "mc2", "path": str(path), "image_root": str(root), **kw})


def test_both_filename_layouts_and_subfolders_are_found(tmp_path):
    path = write_mc2(tmp_path / "mc2")
    root = tmp_path / "coco"
    records, _ = read_records("mc2", path, root)
    layouts = [
        ("val2014", "coco_val"),
        ("", "coco_train"),
        ("", "plain"),
        ("train2014", "coco_train"),
        ("", "coco_val"),
    ]
    for record, (sub, layout) in zip(records, layouts):
        write_standins([record], root / sub, layout)
    samples, info = load_dataset(spec(path, root), seed=0)
    assert [s.id for s in samples] == [f"mc2-{i:04d}" for i in range(5)]
    assert samples[0].answer_text == "playing in a field"  # MC²'s stray spaces removed
    assert [s.category for s in samples] == [item["task"] for item in MC2_ITEMS]
    assert samples[2].extra["image_id"] == "000000372428"
    # each sample got the stand-in drawn for its own image id
    for sample in samples:  # JPEG is lossy: close to its own stand-in, far from the others'
        own = _distance(sample.image, standin(sample.extra["image_id"]))
        assert own < 8 and all(
            own < _distance(sample.image, standin(s.extra["image_id"])) for s in samples if s is not sample
        )
    assert info["data_images_skipped"] == 0 and info["data_source"] == "mc2"


def _distance(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


def test_unpadded_plain_ids_are_accepted(tmp_path):
    root = tmp_path / "coco"
    root.mkdir()
    candidates = mc2.image_candidates(root, "000000000139")
    assert root / "139.jpg" in candidates and root / "COCO_val2014_000000000139.jpg" in candidates
    assert mc2_name("139", "plain") == "000000000139.jpg"


def test_missing_images_error_names_count_and_first_ids(tmp_path):
    path = write_mc2(tmp_path / "mc2")
    records, _ = read_records("mc2", path, tmp_path / "coco")
    write_standins(records[1:2], tmp_path / "coco")
    with pytest.raises(UserError) as err:
        load_dataset(spec(path, tmp_path / "coco"), seed=0)
    message = str(err.value)
    assert "4 of 5 images not found under" in message
    assert "first: 000000046962, 000000372428, 000000000139, 000000581929" in message
    assert "COCO_val2014_<id>.jpg" in message and "data.missing_images: skip" in message


def test_skip_leaves_out_missing_then_draws_n(tmp_path):
    path = write_mc2(tmp_path / "mc2")
    records, _ = read_records("mc2", path, tmp_path / "coco")
    write_standins([records[i] for i in (0, 2, 4)], tmp_path / "coco")
    samples, info = load_dataset(spec(path, tmp_path / "coco", missing_images="skip"), seed=0)
    assert [s.id for s in samples] == ["mc2-0000", "mc2-0002", "mc2-0004"] and info["data_images_skipped"] == 2
    two, _ = load_dataset(spec(path, tmp_path / "coco", missing_images="skip", n_samples=2), seed=0)
    assert len(two) == 2 and {s.id for s in two} <= {"mc2-0000", "mc2-0002", "mc2-0004"}
    assert [s.id for s in two] == sorted(s.id for s in two)  # kept in file order
    again, _ = load_dataset(spec(path, tmp_path / "coco", missing_images="skip", n_samples=2), seed=0)
    assert [s.id for s in again] == [s.id for s in two]  # a seeded draw


def test_error_mode_only_needs_the_drawn_samples(tmp_path):
    path = write_mc2(tmp_path / "mc2")
    records, _ = read_records("mc2", path, tmp_path / "coco")
    write_standins([r for r in records if r.category == "counting"], tmp_path / "coco")
    samples, _ = load_dataset(spec(path, tmp_path / "coco", categories=["counting"]), seed=0)
    assert [s.id for s in samples] == ["mc2-0001", "mc2-0003"]


def test_malformed_item_names_index_and_field(tmp_path):
    items = [dict(MC2_ITEMS[0]), {k: v for k, v in MC2_ITEMS[1].items() if k != "question"}]
    path = write_mc2(tmp_path, items)
    with pytest.raises(UserError, match=r"evaluate_final.json item 1: field 'question': missing"):
        read_records("mc2", path, tmp_path)
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(UserError, match="expected MC²'s list of samples"):
        read_records("mc2", path, tmp_path)


def test_recipe_requires_path_and_image_root():
    base = {"model": {"id": "x"}, "analyses": [{"kind": "signal"}]}
    with pytest.raises(RecipeError, match=r"data.image_root: required when data.source is 'mc2'"):
        parse_recipe({**base, "data": {"source": "mc2", "path": "x.json"}})
    with pytest.raises(RecipeError, match=r"data.path: required when data.source is 'jsonl'"):
        parse_recipe({**base, "data": {"source": "jsonl"}})


@pytest.mark.skipif(not SHARED_MC2.is_file(), reason="MC² text data not present")
def test_the_shipped_mc2_file_reads_completely():
    records, _ = read_records("mc2", SHARED_MC2, "/nonexistent")
    assert len(records) == 2000 and len({r.id for r in records}) == 2000
    tasks = {}
    for r in records:
        tasks[r.category] = tasks.get(r.category, 0) + 1
    assert len(tasks) == 8 and set(tasks.values()) == {250}
    assert all(r.answer_vision == r.answer_vision.strip() and r.answer_vision for r in records)


def test_cli_standins_then_run_finds_them(tmp_path):
    from click.testing import CliRunner

    from anchorlab.cli import main

    path = write_mc2(tmp_path / "mc2")
    result = CliRunner().invoke(main, ["data", "standins", str(path), "--out", str(tmp_path / "coco"),
                                       "--layout", "plain", "--categories", "color"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 stand-in images" in result.output
    assert sorted(p.name for p in (tmp_path / "coco").iterdir()) == ["000000372428.jpg", "000000581929.jpg"]
    samples, _ = load_dataset(spec(path, tmp_path / "coco", categories=["color"]), seed=0)
    assert [s.id for s in samples] == ["mc2-0002", "mc2-0004"]
