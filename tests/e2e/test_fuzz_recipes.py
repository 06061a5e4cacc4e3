"""Property-based: malformed and edge-case recipes give a named RecipeError, never a traceback."""
import copy
import re

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anchorlab.cli import main
from anchorlab.recipe import RecipeError, apply_overrides, load_recipe, parse_recipe

BASE = {
    "name": "fuzz",
    "model": {"id": "toy:arbiter", "dtype": "float32", "attn_implementation": "sdpa"},
    "data": {"source": "toy", "n_samples": 8, "tasks": ["vf", "tf"], "filter": "all"},
    "analyses": [{"kind": "signal", "k": 1, "pool": "max"}, {"kind": "knockout", "window": 3}],
    "batch_size": 4,
    "seed": 0,
}
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["signal", "knockout", "vf", "tf", "max", "->", "a->b"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)
keys = st.one_of(st.text(max_size=10), st.sampled_from(["model", "data", "analyses", "kind", "k", "n_samples",
                                                         "n_sample", "modle", "id", "layers", "pathways", "window"]))


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


@st.composite
def mutated(draw):
    recipe = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(list(paths(recipe))))
        parent = recipe
        for part in where[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if not where:
            continue
        last = where[-1]
        if action == "replace":
            parent[last] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[last]
        elif isinstance(parent.get(last) if isinstance(parent, dict) else None, dict):
            parent[last][draw(keys)] = draw(values)
    return recipe


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_recipes_validate_or_name_the_problem(recipe):
    try:
        parsed = parse_recipe(recipe)
    except RecipeError as err:
        lines = str(err).splitlines()  # one problem: one line; several: one per line
        problems = [lines[0].removeprefix("invalid recipe: ")] if len(lines) == 1 else lines[1:]
        assert lines[0].startswith("invalid recipe:") and (len(lines) == 1 or lines[0] == "invalid recipe:")
        assert all(": " in p and (len(lines) == 1 or p.startswith("  - ")) for p in problems)  # each names a field
        return
    # accepted: it round-trips to the same recipe, and nothing invalid slipped through
    again = parse_recipe(parsed.model_dump(mode="json"))
    assert again == parsed
    assert parsed.batch_size >= 1 and (parsed.data.n_samples or 1) >= 1 and parsed.analyses


FIELDS = ["seed", "batch_size", "name", "data.n_samples", "data.tasks", "data.tasks.1", "data.filter", "model.dtype",
          "model.id", "analyses.0.k", "analyses.0.pool", "analyses.1.window", "analyses.1.pathways", "analyses.2.k",
          "data.n_sampels", "modle.id", "analyses.0.kind"]
RAW = st.one_of(st.text(max_size=8), st.integers(-3, 40).map(str),
                st.sampled_from(["[vf]", "[]", "null", "true", "max", "2.5", "{a: 1}", "float16", "knockout"]))
SET = st.builds("{}={}".format, st.sampled_from(FIELDS), RAW)
OVERRIDES = st.one_of(SET, SET, SET, st.text(max_size=20))  # mostly well-formed, some anything


def at(node, key: str):
    """The value at a dotted --set path (list items by index)."""
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def as_yaml(raw: str):
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def related(a: str, b: str) -> bool:
    """One dotted path is the other or lies under it."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


@settings(max_examples=300, deadline=None)
@given(st.lists(OVERRIDES, max_size=3))
def test_overrides_land_where_they_say_or_the_error_names_them(overrides):
    keys = [item.partition("=")[0] for item in overrides]
    try:
        data = apply_overrides(BASE, overrides)
    except RecipeError as err:
        text = str(err)
        assert any(text.startswith(f"--set {item!r}: expected FIELD.PATH=VALUE") or text.startswith(f"--set {key}: ")
                   for item, key in zip(overrides, keys)), text
        return
    for i, (item, key) in enumerate(zip(overrides, keys)):
        if not any(related(key, later) for later in keys[i + 1:]):  # not overwritten by a later --set
            assert at(data, key) == as_yaml(item.partition("=")[2]), (item, data)
    try:
        parsed = parse_recipe(data)
    except RecipeError as err:
        # BASE is a valid recipe: every problem lies in (or above) a field some --set changed, or in an analysis
        # whose kind a --set changed (its fields are then another kind's)
        lines = str(err).splitlines()
        problems = [line.removeprefix("  - ") for line in lines[1:]] or [lines[0].removeprefix("invalid recipe:")]
        shown = [".".join(p if re.fullmatch(r"[\w-]+", p) else repr(p) for p in key.split(".")) for key in keys]
        shown += [key.removesuffix(".kind") for key in keys if re.fullmatch(r"analyses\.\d+\.kind", key)]
        for line in map(str.strip, problems):
            assert any(line.startswith((f"{name}:", f"{name}.")) or name.startswith(line.split(": ")[0] + ".")
                       for name in shown), (line, overrides)
        return
    resolved = parsed.model_dump(mode="json")
    for i, (item, key) in enumerate(zip(overrides, keys)):
        if not any(related(key, later) for later in keys[i + 1:]):
            assert at(resolved, key) == at(data, key), (item, resolved)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(mutated().map(lambda r: yaml.safe_dump(r)), st.text(max_size=80)))
def test_cli_validate_prints_one_error_without_traceback(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "recipe.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.output.startswith("error: ")
    else:
        load_recipe(path)
