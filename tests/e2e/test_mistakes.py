"""Thirty mistakes a new user makes — in recipes, model folders, data files and command lines — each
ending in exit 2 and one line that names the field, file, sample or role, with no traceback, and none
of them leaving a run folder that says "running"."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from anchorlab.cli import main
from anchorlab.models.tiny import tiny_model_path

ROOT = Path(__file__).resolve().parents[2]
BASE = {"model": {"id": "toy:arbiter"}, "data": {"source": "toy", "n_samples": 2, "filter": "all"},
        "analyses": [{"kind": "signal", "n_bootstrap": 10}]}


def with_(path: str, value, base=None):
    """BASE with one field (dotted path; list items by index) replaced."""
    recipe = json.loads(json.dumps(base or BASE))
    node, parts = recipe, path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = value
    return recipe


def analysis(**fields):
    return with_("analyses.0", {"n_bootstrap": 10, **fields})


def model_folder(tmp: Path, kind: str) -> str:
    src = tiny_model_path("llama")
    dst = tmp / f"model-{kind}"
    shutil.copytree(src, dst)
    if kind == "no-weights":
        for f in dst.glob("*.safetensors"):
            f.unlink()
    elif kind == "corrupt":
        f = next(dst.glob("*.safetensors"))
        f.write_bytes(f.read_bytes()[:200])
    elif kind == "relabelled":  # Llama weights labelled as Qwen2 (which has q/k/v biases)
        cfg = json.loads((dst / "config.json").read_text())
        cfg.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
        (dst / "config.json").write_text(json.dumps(cfg))
    return str(dst)


def jsonl_folder(tmp: Path, edit: str) -> Path:
    dst = tmp / "conflicts"
    shutil.copytree(ROOT / "examples" / "conflicts", dst)
    lines = (dst / "samples.jsonl").read_text().splitlines()
    if edit == "broken-line":
        lines[2] = lines[2][:-5]
    elif edit == "missing-image":
        (dst / json.loads(lines[1])["image"]).unlink()
    (dst / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return dst / "samples.jsonl"


def jsonl_recipe(tmp: Path, edit: str, **data):
    return with_("data", {"source": "jsonl", "path": str(jsonl_folder(tmp, edit)), "filter": "all", **data})


def changed(recipe, base=BASE, prefix=""):
    """(dotted path, new value) of every field where `recipe` differs from `base`."""
    if isinstance(recipe, dict) and isinstance(base, dict):
        for key in recipe:
            yield from changed(recipe[key], base.get(key), f"{prefix}{key}.")
    elif isinstance(recipe, list) and isinstance(base, list) and len(recipe) == len(base):
        for i, (new, old) in enumerate(zip(recipe, base)):
            yield from changed(new, old, f"{prefix}{i}.")
    elif recipe != base:
        yield prefix.rstrip("."), recipe


def broken_samples(path: Path) -> set[str]:
    """By brute force over a JSONL file: "line N" of each line that is not JSON, the id of each sample
    whose image is not there."""
    names = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            item = json.loads(line)
        except ValueError:
            names.add(f"line {n}")
            continue
        if not (path.parent / item["image"]).is_file():
            names.add(item["id"])
    return names


def names_of_the_mistake(recipe: dict, extra: list[str]) -> set[str]:
    """What an error line may name to point at the mistake: a changed field (also as analyses[KIND].FIELD),
    the file a changed path points to, a broken sample in that file, or the command-line value given."""
    names = set()
    data = Path(str(recipe["data"].get("path")))
    if data.suffix == ".jsonl" and data.is_file():
        names |= broken_samples(data)
    for path, value in changed(recipe):
        names.add(path)
        parts = path.split(".")
        if parts[0] == "analyses" and len(parts) > 2:
            kind = recipe["analyses"][int(parts[1])].get("kind")
            names.add(f"analyses[{kind}]" + ("" if parts[2] == "kind" else "." + ".".join(parts[2:])))
        if isinstance(value, str) and "/" in value:
            names.add(Path(value).name)
    names.update(arg.partition("=")[0] for arg in extra if not arg.startswith("--"))
    return names


CASES = {
    "n_bootstrap 0": (lambda t: analysis(kind="signal", n_bootstrap=0), [], ["analyses.0.n_bootstrap"]),
    "ci_level 1.5": (lambda t: analysis(kind="signal", ci_level=1.5), [], ["analyses.0.ci_level"]),
    "n_heads -1": (lambda t: analysis(kind="heads_block", n_heads=[-1]), [], ["analyses.0.n_heads.0"]),
    "n_heads 0": (lambda t: analysis(kind="heads_block", n_heads=[0]), [], ["analyses.0.n_heads.0"]),
    "negative alpha": (lambda t: analysis(kind="heads_amplify", alphas=[2, -1]), [], ["analyses.0.alphas.1"]),
    "no CUDA here": (lambda t: with_("model.device", "cuda"), [], ["model.device", "no CUDA device"]),
    "no such device": (lambda t: with_("model.device", "gpu0"), [], ["model.device", "'gpu0'"]),
    "misspelt kind": (lambda t: analysis(kind="signl"), [], ["analyses.0.kind", "did you mean 'signal'"]),
    "misspelt field": (lambda t: with_("data.n_sample", 4), [], ["data.n_sample", "did you mean 'n_samples'"]),
    "too many toy samples": (lambda t: with_("data.n_samples", 100_000_000), [], ["data.n_samples", "at most 20000"]),
    "batch_size 0": (lambda t: with_("batch_size", 0), [], ["batch_size"]),
    "no tasks": (lambda t: with_("data.tasks", []), [], ["data.tasks"]),
    "unknown task": (lambda t: with_("data.tasks", ["vf", "xf"]), [], ["data.tasks.1"]),
    "knockout layer out of range": (
        lambda t: analysis(kind="knockout", layers=[7]),
        [],
        ["analyses[knockout].layers", "[7]"],
    ),
    "signal layer out of range": (
        lambda t: analysis(kind="signal", layers=[0, 9]),
        [],
        ["analyses[signal].layers", "[9]"],
    ),
    "more heads than the model": (
        lambda t: analysis(kind="heads_block", n_heads=[99], heads_from=str(t)),
        [],
        ["analyses[heads_block].n_heads", "32 heads"],
    ),
    "heads_from missing": (
        lambda t: analysis(kind="heads_block", heads_from=str(t / "nope.nc")),
        [],
        ["analyses[heads_block].heads_from", "nope.nc"],
    ),
    "no rankings anywhere": (
        lambda t: analysis(kind="heads_block"),
        [],
        ["analyses[heads_block].heads_from is not set"],
    ),
    "unknown role in a pathway": (
        lambda t: analysis(kind="knockout", pathways=["vision->nowhere"]),
        [],
        ["analyses.0.pathways", "nowhere"],
    ),
    "unwritable output": (
        lambda t: BASE,
        ["--out", "/proc/anchorlab-out"],
        ["output: cannot write to /proc/anchorlab-out"],
    ),
    "model folder without weights": (
        lambda t: with_("model.id", model_folder(t, "no-weights")),
        [],
        ["model.id", "no weights in"],
    ),
    "corrupt weights": (lambda t: with_("model.id", model_folder(t, "corrupt")), [], ["model.id", "corrupt"]),
    "relabelled model type": (
        lambda t: with_("model.id", model_folder(t, "relabelled")),
        [],
        ["model.id", "the weights do not fit", "missing keys", "model_type 'qwen2'"],
    ),
    "no such model": (lambda t: with_("model.id", str(t / "missing-model")), [], ["model.id", "missing-model"]),
    "broken JSONL line": (lambda t: jsonl_recipe(t, "broken-line"), [], ["samples.jsonl line 3", "not valid JSON"]),
    "JSONL image missing": (lambda t: jsonl_recipe(t, "missing-image"), [], ["square-2"]),
    "more samples than the file holds": (
        lambda t: jsonl_recipe(t, "none", n_samples=50),
        [],
        ["data.n_samples", "50 asked for", "holds 6 samples"],
    ),
    "no data file": (
        lambda t: with_("data", {"source": "jsonl", "path": str(t / "none.jsonl")}),
        [],
        ["data.path", "none.jsonl"],
    ),
    "--set without =": (lambda t: BASE, ["--set", "data.n_samples"], ["--set 'data.n_samples'", "FIELD.PATH=VALUE"]),
    "--set past the list": (lambda t: BASE, ["--set", "analyses.5.k=2"], ["--set analyses.5.k", "no item 5"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mistake_ends_in_one_named_line(tmp_path, case):
    make, extra, fragments = CASES[case]
    recipe = tmp_path / "recipe.yaml"
    data = make(tmp_path)
    recipe.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    args = ["run", str(recipe), "--out", str(out)]
    if "--out" in extra:
        args = ["run", str(recipe)]
    result = CliRunner().invoke(main, args + extra)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    text = result.output[result.output.index("error: "):]
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    named = names_of_the_mistake(data, extra)
    assert any(name in text for name in named), (named, text)  # derived from the case, not from `fragments`
    state = out / "run.json"
    assert not state.exists() or json.loads(state.read_text())["status"] != "running"


def test_duplicate_yaml_key_names_both_lines(tmp_path):
    recipe = tmp_path / "dup.yaml"
    recipe.write_text("model: {id: 'toy:arbiter'}\ndata:\n  n_samples: 4\n  n_samples: 8\nanalyses: [{kind: signal}]\n")
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "dup.yaml: line 4: key 'n_samples' given twice (first on line 3)" in result.output

