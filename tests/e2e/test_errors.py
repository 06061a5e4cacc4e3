"""Bad input, tried as a user would: one line naming what is wrong and where, exit 2, no traceback."""
import json

import pytest
import yaml
from click.testing import CliRunner

from anchorlab.cli import main
from anchorlab.models.tiny import tiny_model_path


def run_recipe(tmp_path, recipe: dict, *extra):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out"), *extra])


def one_clear_line(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def recipe(model, **analysis):
    return {"model": {"id": str(model)}, "data": {"source": "toy", "n_samples": 2, "filter": "all"},
            "analyses": [{"kind": "signal", **analysis}] if "kind" not in analysis else [analysis]}


@pytest.mark.parametrize("analysis, fragments", [
    ({"kind": "signal", "layers": [0, 9]}, ["analyses[signal].layers: [9] out of range", "4 layers"]),
    ({"kind": "knockout", "layers": [7]}, ["analyses[knockout].layers: [7] out of range"]),
    ({"kind": "heads_block", "n_heads": [1], "seeds": 1, "rows": "all", "heads_from": "/nonexistent/attribution.nc"},
     ["heads_from: /nonexistent/attribution.nc does not exist"]),
    ({"kind": "heads_block", "n_heads": [1], "seeds": 1, "rows": "all"}, ["heads_from is not set"]),
])
def test_analysis_parameters_beyond_the_model(tmp_path, random_toy_path, analysis, fragments):
    one_clear_line(run_recipe(tmp_path, recipe(random_toy_path, **analysis)), *fragments)


def test_empty_role_names_sample_and_role(tmp_path):
    text_model = tiny_model_path("qwen2")  # no image: the vision role is empty
    result = run_recipe(tmp_path, recipe(text_model, kind="knockout", pathways=["vision->last"]))
    one_clear_line(result, "role 'vision' is empty in sample 'toy-0-", "vision->last")


def test_unreadable_model_folder_and_unknown_family(tmp_path):
    one_clear_line(run_recipe(tmp_path, recipe(tmp_path / "no-such-model")), "model.id", "no-such-model")
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    one_clear_line(run_recipe(tmp_path, recipe(folder), "--force"), "model type 'gpt2' has no anchorlab adapter",
                   "llava", "qwen2_5_vl", "internvl")


def test_debug_shows_the_traceback(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(tmp_path / "missing")))
    result = CliRunner().invoke(main, ["--debug", "run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and result.exception is not None
