"""The hand-written JSONL format: round trip, the shipped schema, errors naming line and field."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from data_support import JSONL_ROWS, write_jsonl

from anchorlab.cli import main
from anchorlab.data import jsonl
from anchorlab.data.sources import load_dataset
from anchorlab.errors import UserError
from anchorlab.recipe import DataSpec

ROOT = Path(__file__).resolve().parents[2]


def spec(**kw) -> DataSpec:
    return DataSpec.model_validate({"source": "jsonl", **kw})


def test_round_trip_write_read_load(tmp_path):
    written = jsonl.write(tmp_path / "out.jsonl", JSONL_ROWS)
    path = write_jsonl(tmp_path)  # same rows, with images
    assert [json.loads(line) for line in written.read_text().splitlines()] == JSONL_ROWS
    records = jsonl.read(written)
    assert [r.id for r in records] == ["car", "dogs", "sheep"]
    assert records[1].options == {"vision": "2 dogs", "text": "3 dogs"} and records[1].category == "counting"
    assert records[0].images == (tmp_path / "img" / "car.png",)  # relative to the file's folder
    samples, info = load_dataset(spec(path=str(path)), seed=0)
    assert [s.id for s in samples] == ["car", "dogs", "sheep"]
    assert samples[0].image.size == (40, 30) and samples[0].image.mode == "RGB"
    assert (samples[2].answer_vision, samples[2].answer_text, samples[2].category) == ("eating", "playing", "activity")
    assert samples[0].forms("vision") == ("red",)  # no dictionary beside the data: the answer alone
    assert info["data_source"] == "jsonl" and info["data_dictionary"].startswith("none")


def test_schema_ships_with_the_package_and_accepts_the_example():
    assert jsonl.SCHEMA_PATH.parent == Path(__import__("anchorlab.data").data.__file__).parent
    assert "data/*.json" in (ROOT / "pyproject.toml").read_text()  # package-data
    schema = json.loads(jsonl.SCHEMA_PATH.read_text())
    assert set(schema["required"]) == {"id", "image", "question", "context", "answer_vision", "answer_text"}
    records = jsonl.read(ROOT / "examples" / "conflicts" / "samples.jsonl")
    assert len(records) == 6 and all(r.images[0].is_file() for r in records)


BAD = [
    (
        {"id": "x", "image": "a.png", "question": "q", "context": "c", "answer_vision": "red"},
        "line 2: field 'answer_text': missing (required)",
    ),
    (
        {**JSONL_ROWS[0], "id": "x", "answer_txt": "blue"},
        "line 2: field 'answer_txt': unknown field (did you mean 'answer_text'?)",
    ),
    ({**JSONL_ROWS[0], "id": "x", "question": 12}, "line 2: field 'question': expected string, got 12"),
    ({**JSONL_ROWS[0], "id": "x", "context": "   "}, "line 2: field 'context': empty"),
    ({**JSONL_ROWS[0], "id": "x#1"}, "line 2: field 'id':"),
    ({**JSONL_ROWS[0], "id": "x", "options": {"vision": "a"}}, "line 2: field 'options.text': missing (required)"),
    (
        {**JSONL_ROWS[0], "id": "x", "answer_text": "Red "},
        "line 2: fields 'answer_vision' and 'answer_text' are the same",
    ),
    ({**JSONL_ROWS[0]}, "line 2: field 'id': 'car' already used on line 1"),
]


@pytest.mark.parametrize("bad,expected", BAD)
def test_bad_line_names_line_and_field(tmp_path, bad, expected):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(JSONL_ROWS[0]) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(UserError) as err:
        jsonl.read(path)
    assert f"{path} {expected}" in str(err.value)


def test_invalid_json_and_later_bad_lines_are_counted(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(JSONL_ROWS[0]), "", '{"id": "y", "image": ', json.dumps({"id": "z"}), json.dumps({"id": "w"})]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as err:
        jsonl.read(path)
    message = str(err.value)
    assert message.startswith(f"{path} line 3: not valid JSON (") and "column" in message
    assert "and 2 more line(s) with problems: 4, 5" in message


def test_cli_run_reports_a_broken_line_in_one_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(JSONL_ROWS[0]) + "\n" + json.dumps({**JSONL_ROWS[1], "answer_vision": None}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {{id: /nonexistent}}\ndata: {{source: jsonl, path: {path}}}\nanalyses: [{{kind: signal}}]\n"
    )
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    # the data is checked before any model is loaded, so the model error does not hide it
    assert f"{path} line 2: field 'answer_vision': expected string, got null" in errors[0]


def test_missing_images_error_lists_count_and_ids_or_skip(tmp_path):
    path = write_jsonl(tmp_path)
    (tmp_path / "img" / "car.png").unlink()
    (tmp_path / "img" / "sheep.png").unlink()
    with pytest.raises(UserError, match=r"2 of 3 images not found .*first: car, sheep\. Set data.missing_images: skip"):
        load_dataset(spec(path=str(path)), seed=0)
    samples, info = load_dataset(spec(path=str(path), missing_images="skip"), seed=0)
    assert [s.id for s in samples] == ["dogs"] and info["data_images_skipped"] == 2


def test_image_root_and_categories(tmp_path):
    path = write_jsonl(tmp_path / "text", images=False)
    write_jsonl(tmp_path / "pics")  # the same relative image paths under another root
    samples, _ = load_dataset(spec(path=str(path), image_root=str(tmp_path / "pics"), categories=["counting"]), seed=0)
    assert [s.id for s in samples] == ["dogs"]
    with pytest.raises(
        UserError, match=r"data.categories: \['colour'\] not in the data; it has: activity, color, counting"
    ):
        load_dataset(spec(path=str(path), image_root=str(tmp_path / "pics"), categories=["colour"]), seed=0)
