"""The Python entry point: the same as `anchorlab run`, returning the xarray datasets."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from .errors import UserError, read_file
from .recipe import Recipe, RecipeError, load_recipe

# --set fields a companion recipe (verify.amplify) takes over from the main run: where and how it runs, and
# which data; never its model or analyses
COMPANION_FIELDS = ("data.", "batch_size", "memory_budget", "seed", "backend", "model.device", "model.dtype")


def run(
    recipe: str | Path, out: str | Path | None = None, overrides: list[str] = (), resume: bool = False,
    force: bool = False, remote: bool | str = False,
) -> dict[str, xr.Dataset]:
    """`remote=True` runs on NDIF (host NDIF_HOST, key NDIF_API_KEY) as `backend: ndif` would;
    `remote="local"` is nnsight's offline simulation of that (serialized as for the server, run here).
    A recipe with `verify:` then scores the run against the model's circuit.json (after running its
    `verify.amplify` companion recipe into OUT/<companion name>); the companion's results come back as
    "<companion name>/<analysis>"."""
    from .run.executor import run_recipe

    if resume and force:
        raise UserError("--force and --resume: choose one (--resume continues the run in the output folder, "
                        "--force deletes what it wrote and starts over)")
    overrides = list(overrides) + (["backend=ndif"] if remote else [])
    parsed, text = load_recipe(recipe, overrides)
    companion = _companion(Path(recipe), parsed, overrides)  # checked before anything runs
    family = _family(Path(recipe), parsed, overrides)
    results = run_recipe(parsed, text, out, overrides, resume=resume, force=force, simulate_remote=remote == "local")
    if parsed.verify is None:
        return results
    out_dir = Path(out) if out else parsed.output_dir
    amplify_dir = None
    if companion is not None:
        c_parsed, c_text, c_overrides = companion
        amplify_dir = out_dir / c_parsed.name
        for name, ds in run_recipe(c_parsed, c_text, amplify_dir, c_overrides, resume=resume, force=force,
                                   simulate_remote=remote == "local").items():
            results[f"{c_parsed.name}/{name}"] = ds
    from .backends.distributed import from_env

    primary = from_env().primary  # rank 0 writes verify.json and the summary section, as it writes the results
    from .report.verify import verify

    scores = {parsed.model.id: verify(out_dir, parsed.verify.circuit, amplify_dir)} if primary else {}
    for member, (m_parsed, m_overrides) in family.items():
        m_dir = out_dir / member.replace(":", "-").replace("/", "--")
        for name, ds in run_recipe(m_parsed, text, m_dir, m_overrides, resume=resume, force=force,
                                   simulate_remote=remote == "local").items():
            results[f"{member}/{name}"] = ds
        if primary:
            scores[member] = verify(m_dir)
    if primary and family:
        from .report.method_table import write_method_table

        write_method_table(scores, out_dir)
    return results


def _family(path: Path, recipe: Recipe, overrides: list[str]) -> dict[str, tuple[Recipe, list[str]]]:
    """verify.family: the same recipe on each member (its own circuit.json must exist), {id: (recipe, overrides)}."""
    if recipe.verify is None or not recipe.verify.family:
        return {}
    from .report.verify import model_circuit

    out = {}
    for i, member in enumerate(recipe.verify.family):
        try:
            circuit = model_circuit(member)
        except ValueError as exc:  # an unknown toy:NAME
            raise RecipeError(f"{path}: verify.family.{i}: {exc}") from None
        if not circuit.is_file():
            raise RecipeError(f"{path}: verify.family.{i}: no circuit.json for {member} (at {circuit})")
        m_overrides = list(overrides) + [f"model.id={member}"]
        out[member] = (load_recipe(path, m_overrides)[0], m_overrides)
    return out


def validate(recipe: str | Path, overrides: list[str] = (), out: str | Path | None = None,
             remote: bool | str = False) -> tuple[Recipe, list[str]]:
    """Every check `run` makes before it loads weights or computes anything, in the run's order and with its
    messages, creating nothing. Returns the recipe and what was checked; a hub model that is neither cached
    nor reachable is checked from its published config when it is one of `anchorlab shapes`, else not at all."""
    from .backends.ndif import check_key, ndif_host
    from .data.sources import load_dataset
    from .models.loading import HubUnreachable, inspect_model
    from .models.shapes import published_facts
    from .run.executor import check_analyses, check_device
    from .run.preflight import check_writable, prompt_rows

    overrides = list(overrides) + (["backend=ndif"] if remote else [])
    parsed, _ = load_recipe(recipe, overrides)
    companion = _companion(Path(recipe), parsed, overrides)
    family = _family(Path(recipe), parsed, overrides)
    m = parsed.model
    if parsed.backend == "local":
        check_device(m.device)
    samples, _ = load_dataset(parsed.data, parsed.seed)
    checked = [f"data: {len(samples)} samples"]
    try:
        facts, offline = inspect_model(m.id, m.revision), None
    except HubUnreachable as exc:
        facts, offline = published_facts(m.id), exc
    if facts is None:
        checked.append(f"model not checked: {offline}")
    else:
        check_analyses(parsed, facts)
        checked.append(f"model: {facts.n_layers} layers × {facts.n_heads} heads")
    if offline is None:  # the model's files are at hand: encode the prompts as the run will
        checked.append(f"prompts: {len(prompt_rows(parsed, samples))} encoded, token roles checked")
    elif facts is not None:
        checked[-1] += " from its published config (not in the HF cache here: prompts not encoded)"
    if parsed.backend == "ndif" and remote != "local":
        check_key(ndif_host())
    out_dir = Path(out) if out else parsed.output_dir
    check_writable(out_dir)
    if companion is not None:
        c_parsed, _, c_overrides = companion
        _, c_checked = validate(Path(recipe).parent / parsed.verify.amplify, c_overrides, out_dir / c_parsed.name,
                                remote)
        checked.append(f"verify.amplify: {'; '.join(c_checked)}")
    if family:
        checked.append(f"verify.family: {', '.join(family)} (circuit.json found)")
    return parsed, checked


def _companion(path: Path, recipe: Recipe, overrides: list[str]) -> tuple[Recipe, str, list[str]] | None:
    """verify's circuit.json must exist and its companion recipe must load: (recipe, text, overrides) or None."""
    if recipe.verify is None:
        return None
    from .report.verify import model_circuit, scored_models

    circuit = Path(recipe.verify.circuit) if recipe.verify.circuit else model_circuit(recipe.model.id)
    if not circuit.is_file():
        raise RecipeError(f"{path}: verify: no circuit.json at {circuit} for model {recipe.model.id} "
                          "(set verify.circuit, or drop verify:)")
    circuit_data = read_file(circuit, "verify.circuit", "json", expect=dict, shape="a circuit.json mapping")
    if not recipe.verify.amplify:
        return None
    c_path = path.parent / recipe.verify.amplify
    if not c_path.is_file():
        raise RecipeError(f"{path}: verify.amplify: no recipe at {c_path}")
    c_overrides = [o for o in overrides if o.partition("=")[0].startswith(COMPANION_FIELDS)]
    c_parsed, c_text = load_recipe(c_path, c_overrides)
    allowed = scored_models(recipe.model.id, circuit_data)
    if c_parsed.model.id not in allowed:
        raise RecipeError(f"{c_path}: verify.amplify of {path}: the companion runs {c_parsed.model.id}, but the "
                          f"circuit scores only {', '.join(sorted(allowed))} (the model under test, or the flawed twin "
                          f"its circuit.json names as flawed_twin)")
    return c_parsed, c_text, c_overrides
