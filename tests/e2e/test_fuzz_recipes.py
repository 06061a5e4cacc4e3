"""Property-based: malformed and edge-case recipes give a named RecipeError, never a traceback."""
import copy

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


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=3))
def test_arbitrary_overrides_never_crash(overrides):
    try:
        parse_recipe(apply_overrides(BASE, overrides))
    except RecipeError:
        pass


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
