"""Property-based, over every way a user hands anchorlab numbers and data: every numeric field of every
analysis kind, `--set` on the command line, and JSONL data files. The outcome is success, or exit 2
with one line that names the field, file or line — never a traceback."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anchorlab.analyses import ANALYSES
from anchorlab.cli import main
from anchorlab.data.jsonl import read as read_jsonl
from anchorlab.errors import UserError
from anchorlab.models.loading import inspect_model
from anchorlab.recipe import RecipeError, parse_recipe
from anchorlab.run.executor import check_analyses

ROOT = Path(__file__).resolve().parents[2]
NUMBERS = st.one_of(st.integers(-3, 10**7), st.floats(allow_nan=True, allow_infinity=True), st.just(0),
                    st.sampled_from([-1, 0.5, 1e-9, 1.5, 10**12]))
VALUES = st.one_of(NUMBERS, st.lists(NUMBERS, max_size=4), st.text(max_size=6), st.none(), st.booleans())


def numeric_fields(kind: str) -> list[str]:
    cls = ANALYSES[kind]
    return [n for n, f in cls.model_fields.items() if "int" in str(f.annotation) or "float" in str(f.annotation)]


FIELDS = [(kind, field) for kind in ANALYSES for field in numeric_fields(kind)]


def rankings_file() -> Path:
    """An attribution result with head rankings at toy:arbiter's shape (4 layers x 8 heads): what preflight reads."""
    path = Path(tempfile.mkdtemp(prefix="anchorlab-fuzz-")) / "attribution.nc"
    ds = xr.Dataset(
        {"head_rank": (("task", "layer", "head"), np.arange(2 * 32).reshape(2, 4, 8) % 32 + 1)},
        coords={"task": ["vf", "tf"], "layer": range(4), "head": range(8)},
        attrs={"analysis": "attribution"},
    )
    ds.to_netcdf(path, engine="h5netcdf")
    return path


RANKINGS = rankings_file()


def recipe_with(kind: str, field: str, value) -> dict:
    analysis = {"kind": kind, field: value}
    if kind.startswith("heads"):
        analysis.update(rows="all", heads_from=str(RANKINGS))
    return {"model": {"id": "toy:arbiter"}, "data": {"source": "toy", "n_samples": 2, "filter": "all"},
            "analyses": [analysis]}


@pytest.fixture(scope="module")
def toy_facts():
    return inspect_model("toy:arbiter")


def test_every_numeric_field_is_covered():
    assert {f for _, f in FIELDS} >= {"n_bootstrap", "ci_level", "k", "layers", "window", "n_heads", "alphas",
                                      "seeds", "max_new_tokens", "top_g", "shared_top_n", "lens_memory_mb"}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(FIELDS), VALUES)
def test_numeric_fields_are_accepted_or_named_before_compute(toy_facts, kind_field, value):
    """Schema, then the model-aware check the executor runs before the run folder says "running"."""
    kind, field = kind_field
    try:
        recipe = parse_recipe(recipe_with(kind, field, value))
    except RecipeError as err:
        assert f"analyses.0.{field}" in str(err) or "analyses.0:" in str(err), str(err)
        return
    try:
        check_analyses(recipe, toy_facts)
    except UserError as err:
        assert f".{field}" in str(err) and "\n" not in str(err), str(err)
        return
    spec = recipe.analyses[0]
    got = getattr(spec, field)
    for v in (got if isinstance(got, list) else [got] if got is not None else []):
        if field == "ci_level":
            assert 0 < v < 1
        elif field == "layers":
            assert 0 <= v < toy_facts.n_layers
        elif field == "alphas":
            assert 0 < v < float("inf")
        else:
            assert v >= 1, (field, v)


def _one_named_line(result, *names):
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 or result.output.startswith("error: invalid recipe:"), result.output
        assert any(n in result.output for n in names), result.output


SET_KEYS = st.sampled_from(["data.n_samples", "batch_size", "seed", "analyses.0.k", "analyses.0.layers",
                            "analyses.0.n_bootstrap", "analyses.0.ci_level", "model.device", "model.dtype",
                            "analyses.1.window", "analyses.1.layers", "data.tasks", "analyses.9.k", "nope.x"])
SET_VALUES = st.one_of(st.integers(-2, 50).map(str), st.sampled_from(["[0, 9]", "[]", "1.5", "nan", "cuda", "abc",
                                                                    "[-1]", "0", "{a: 1}", "", "bfloat16", "cpu"]))


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(SET_KEYS, SET_VALUES), min_size=1, max_size=2))
def test_set_overrides_on_a_real_run(tmp_path_factory, sets):
    """`anchorlab run --set` end to end on the toy (2 samples): the run finishes or one line names the field."""
    out = tmp_path_factory.mktemp("set") / "out"
    recipe = tmp_path_factory.mktemp("r") / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"id": "toy:arbiter"}, "data": {"source": "toy", "n_samples": 2, "filter": "all"},
        "analyses": [{"kind": "signal", "n_bootstrap": 20}, {"kind": "knockout", "n_bootstrap": 20,
                                                             "pathways": ["instruction->last"]}]}))
    args = ["run", str(recipe), "--out", str(out)]
    for key, value in sets:
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(main, args)
    keys = [k for k, _ in sets]
    _one_named_line(result, *keys, *(k.split(".")[-1] for k in keys), "--set", "model.device", "output")


LINE_FIELDS = ["id", "image", "question", "context", "answer_vision", "answer_text", "task"]


@st.composite
def jsonl_texts(draw):
    rows = [json.loads(line) for line in (ROOT / "examples" / "conflicts" / "samples.jsonl").read_text().splitlines()]
    lines = [json.dumps(r) for r in rows[:3]]
    i = draw(st.integers(0, 2))
    action = draw(st.sampled_from(["drop", "replace", "garbage", "blank", "duplicate"]))
    row = dict(rows[i])
    if action == "drop":
        row.pop(draw(st.sampled_from(LINE_FIELDS)))
        lines[i] = json.dumps(row)
    elif action == "replace":
        row[draw(st.sampled_from(LINE_FIELDS))] = draw(VALUES)
        lines[i] = json.dumps(row)
    elif action == "garbage":
        lines[i] = draw(st.text(max_size=30))
    elif action == "duplicate":
        lines.append(lines[i])
    else:
        lines.insert(i, "")
    return "\n".join(lines) + "\n", i + 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jsonl_texts())
def test_jsonl_files_load_or_name_file_and_line(tmp_path_factory, case):
    text, line = case
    folder = tmp_path_factory.mktemp("jsonl")
    shutil.copytree(ROOT / "examples" / "conflicts" / "images", folder / "images")
    path = folder / "data.jsonl"
    path.write_text(text)
    try:
        records = read_jsonl(path)
    except UserError as err:
        msg = str(err)
        assert "\n" not in msg and str(path) in msg, msg
        return
    assert records and all(r.id for r in records)
