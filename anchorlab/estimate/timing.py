"""`anchorlab estimate --probe`: what a pass and a decoder cell cost on this machine, measured.

Plain passes through the engines' trace path fit a fixed cost per pass plus a cost per cell; a pilot
run of the recipe on one batch then gives each step its own cost per pass, its generation steps and
the head tables it drew. The counts themselves come from the package's pricing, not from here.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ..recipe import load_recipe
from ..rows.batching import collate
from ..rows.encoding import encode
from .costs import Cost, Work


def probe_costs(recipe, rows, costs: list[Cost], repeats: int = 5) -> dict:
    """Load the model for real and time passes through the engines' trace path (LocalBackend.trace):
    prompt passes of the first batch, of one row, and the one-token steps of a greedy generation of
    that batch. A least-squares fit of seconds = a + b × cells per pass gives the fixed cost of a pass
    (trace set-up, Python, hooks: it dominates small models) and the cost of a decoder cell; the
    generation gives the steps a batch really runs before every row has stopped."""
    from dataclasses import replace

    from ..backends import LocalBackend
    from ..engines.generation import greedy_generate
    from ..labels.capture import first_token_margin
    from ..models.loading import load_model

    m = recipe.model
    clock = time.perf_counter()
    bundle = load_model(m.id, m.dtype, m.device, m.attn_implementation, m.revision)
    load_seconds = time.perf_counter() - clock
    size = recipe.batch_size if isinstance(recipe.batch_size, int) else 8
    # rows were encoded against the meta-device model: encode the probe batch again with the real one
    chunk = [replace(r, encoded=encode(bundle, r.prompt)) for r in rows[:size]]
    batch = collate([r.encoded for r in chunk], bundle.adapter, bundle.pad_token_id)
    one = collate([chunk[0].encoded], bundle.adapter, bundle.pad_token_id)
    backend = LocalBackend(bundle)
    samples: list[tuple[int, float]] = []
    trace = backend.trace

    def timed(inputs, fn, *args):
        start = time.perf_counter()
        result = trace(inputs, fn, *args)
        if bundle.device.type == "cuda":
            torch.cuda.synchronize()
        ids = inputs.get("input_ids", inputs.get("inputs_embeds"))
        samples.append((bundle.n_layers * ids.shape[0] * ids.shape[1], time.perf_counter() - start))
        return result

    backend.trace = timed
    cap = max((c.max_new_tokens for c in costs), default=1)
    first_token_margin(bundle, backend, batch, chunk)  # warm-up
    greedy_generate(bundle, backend, batch.inputs, min(cap, 2))
    groups: dict[int, list[float]] = {}  # cells of a pass -> seconds of each repeat (medians: the machine is shared)
    for _ in range(repeats):
        samples.clear()
        first_token_margin(bundle, backend, batch, chunk)
        first_token_margin(bundle, backend, one, chunk[:1])
        before = backend.traces
        greedy_generate(bundle, backend, batch.inputs, cap)
        steps = backend.traces - before
        for cells, seconds in samples[:2] + samples[3:]:  # the generation's own prompt pass repeats the first
            groups.setdefault(cells, []).append(seconds)
    points = [(cells, statistics.median(v)) for cells, v in groups.items()]
    x = torch.tensor([[1.0, cells] for cells, _ in points], dtype=torch.float64)
    y = torch.tensor([[seconds] for _, seconds in points], dtype=torch.float64)
    a, b = torch.linalg.lstsq(x, y).solution[:, 0].tolist()
    if b <= 0 or a < 0:  # noise on a tiny model: fall back to the mean rate through the origin
        a, b = 0.0, float(y.sum() / x[:, 1].sum())
    return {"seconds_per_pass": a, "seconds_per_cell": b, "tokens_per_s": 1.0 / (b * bundle.n_layers),
            "generation_steps": steps, "generation_cap": cap, "load_seconds": load_seconds,
            "passes_timed": sum(map(len, groups.values()))}


def pilot_run(recipe_path, overrides: list[str], recipe, seconds_per_cell: float, price) -> tuple[dict, dict, dict]:
    """Run the recipe for real on one batch of prompts (no figures), once in a fresh process and three
    times here, and read back what each step cost (result attrs `compute_seconds`, `passes`,
    `decoder_cells`). Against `price`'s (`estimate_recipe`'s) count of the same pilot, each step gets
    its own cost per pass (the engine's Python, its hooks, per-batch work: seconds less the cells at
    the probe's rate, per pass) and, where it generates, the steps its generations really ran. The
    fresh process pays what a run pays once (first calls, lazy imports, caches): what it spent
    beyond the others counts once, per step and outside the steps. The run's set-up (everything
    outside the steps, less the encoding, priced from this estimate's own) comes from the later
    pilots' wall time (medians of three, as their steps'). Returns (per step name: seconds_per_pass,
    seconds_per_cell, generation_steps, fixed_seconds; pilot facts; distinct head tables per analysis
    and task, as the pilot drew them)."""
    size = recipe.batch_size if isinstance(recipe.batch_size, int) else 8
    n = max(1, -(-size // len(recipe.data.tasks)))
    if recipe.data.n_samples is not None:
        n = min(n, recipe.data.n_samples)
    # every analysis on all the pilot's prompts: what a batch costs does not depend on which prompts a
    # result aggregates, and a step with none selected would not run at all
    pilot_overrides = overrides + [f"data.n_samples={n}", "backend=local"] + [
        f"analyses.{i}.rows=all" for i in range(len(recipe.analyses))]
    if recipe.data.filter == "all" and {a.selection() for a in recipe.analyses} - {"data", "all"}:
        pilot_overrides.append("data.filter=follows")  # the labels the analyses chose their rows by still run
    rankings = full_rankings(recipe_path, overrides, recipe)
    pilot_overrides += rankings["overrides"]
    # the first pilot runs in a fresh process, as the run will: what it spends beyond the others (first
    # calls, lazy imports, caches) a run pays once
    try:
        cold_wall, cold = pilot_in_fresh_process(recipe_path, pilot_overrides)
        warm = [pilot_once(recipe_path, pilot_overrides) for _ in range(3)]  # medians: the machine may be shared
    finally:
        if "dir" in rankings:
            import shutil

            shutil.rmtree(rankings.pop("dir"), ignore_errors=True)
    wall, attrs = statistics.median(w for w, _ in warm), warm[0][1]
    for key, a in attrs.items():
        a["compute_seconds"] = statistics.median(_seconds(run[key]) for _, run in warm)
    drawn = {name: {k.removeprefix("head_tables_"): int(v) for k, v in a.items() if k.startswith("head_tables_")}
             for name, a in attrs.items()}
    drawn = {name: t for name, t in drawn.items() if t}
    plan = price(recipe_path, pilot_overrides, tables=drawn)
    steps, spent = {}, 0.0
    for line in plan["analyses"][:-1]:
        key = "labels" if line["analysis"].startswith("labels") else line["analysis"]
        a = attrs.get(key, {})
        if "passes" not in a or not a["passes"]:
            continue  # not run by the pilot: the plain probe's figures stand
        work, passes = Work(**line[f"work_{line['engine']}"]), int(a["passes"])
        seconds = float(a["compute_seconds"])
        spent += seconds
        generation = min(line["max_new_tokens"], 1 + (passes - work.passes) / work.loops) if work.loops else 1
        cells = a.get("decoder_cells", work.at(generation, plan["layers"])[1])
        reducing = float(a.get("reduce_seconds", 0.0))  # once per analysis, whatever its size
        first = max(float(cold.get(key, {}).get("compute_seconds", seconds)) - seconds, 0.0)
        variable = max(seconds - reducing, 0.0)
        # the probe's rate, unless the pilot says cells cost less here (a shared machine's noise)
        per_cell = min(seconds_per_cell, variable / max(float(cells), 1.0))
        steps[line["analysis"]] = {"seconds_per_pass": (variable - per_cell * float(cells)) / passes,
                                   "seconds_per_cell": per_cell, "generation_steps": generation,
                                   "fixed_seconds": reducing + first}
    once = max(
        (cold_wall - sum(_seconds(a) for a in cold.values())) - (wall - sum(_seconds(a) for a in attrs.values())), 0.0
    )
    setup = max(wall - spent - plan["encode_seconds"], 0.0) + once
    facts = {"samples": n, "prompts": plan["prompts"], "wall_seconds": wall, "setup_seconds": setup,
             "rankings_seconds": rankings.get("seconds")}
    return steps, facts, drawn


def _seconds(attrs) -> float:
    return float(attrs.get("compute_seconds", 0.0)) if attrs else 0.0


def pilot_once(recipe_path, overrides: list[str]) -> tuple[float, dict]:
    """One pilot run (no figures) in a temporary folder: its wall time and every step's result attrs."""
    import tempfile

    import xarray as xr

    from ..run.executor import run_recipe

    parsed, text = load_recipe(recipe_path, overrides)
    with tempfile.TemporaryDirectory() as out:
        clock = time.perf_counter()
        results = run_recipe(parsed, text, out, overrides, force=True, figures=False)
        wall = time.perf_counter() - clock
        attrs = {name: dict(ds.attrs) for name, ds in results.items()}
        labels = Path(out) / "labels.nc"
        if labels.exists():
            attrs["labels"] = dict(xr.load_dataset(labels).attrs)
    return wall, attrs


def pilot_in_fresh_process(recipe_path, overrides: list[str]) -> tuple[float, dict]:
    """pilot_once in a new Python process with this one's thread count (timed inside it, around the run
    alone, as a run's own clock would be): (wall, {step: {"compute_seconds": s}})."""
    import json
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "anchorlab.estimate.timing",
        str(recipe_path),
        str(torch.get_num_threads()),
        *overrides,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the estimate's pilot run failed:\n{done.stderr[-2000:]}")
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    return facts["wall"], facts["steps"]


def full_rankings(recipe_path, overrides: list[str], recipe) -> dict:
    """An analysis that reads an earlier result of the run (its `sources`, e.g. a head sweep's heads_from
    -> attribution) draws what that result says, and one batch of prompts says something else than all
    of them (random and layer-matched head draws exclude the top-ranked heads, and coincide with them
    where a layer runs out of other heads). So run those earlier analyses (and the labels they select
    their rows by) on every prompt, as the run will, and point the pilot's readers at their results:
    the pilot then draws the run's own tables. It costs what those analyses cost in the run. Returns
    {"overrides": [...], "seconds": s, "dir": where} (no overrides: nothing reads an earlier result)."""
    import tempfile

    from ..run.executor import run_recipe

    specs = recipe.analyses
    reads = [(i, field, kind) for i, a in enumerate(specs) for field, kind in a.sources().items()
             if getattr(a, field) is None and any(e.kind == kind for e in specs[:i])]
    if not reads:
        return {"overrides": []}
    kinds = {kind for _, _, kind in reads}
    parsed, text = load_recipe(recipe_path, overrides + ["backend=local"])
    parsed = parsed.model_copy(update={"analyses": [a for a in specs if a.kind in kinds]})
    out = Path(tempfile.mkdtemp(prefix="anchorlab-sources-"))
    clock = time.perf_counter()
    run_recipe(parsed, text, out, overrides, force=True, figures=False)
    seconds = time.perf_counter() - clock
    names = [a.name or a.kind for a in specs]
    found = []
    for i, field, kind in reads:  # the last earlier analysis of that kind, as the run finds it
        source = [names[j] for j in range(i) if specs[j].kind == kind][-1]
        found.append(f"analyses.{i}.{field}={out / (source + '.nc')}")
    return {"overrides": found, "seconds": round(seconds, 2), "dir": out}


if __name__ == "__main__":  # pilot_in_fresh_process's child: RECIPE THREADS [OVERRIDE ...]
    import json
    import sys

    torch.set_num_threads(int(sys.argv[2]))
    pilot_wall, pilot_attrs = pilot_once(sys.argv[1], sys.argv[3:])
    print(
        json.dumps({"wall": pilot_wall, "steps": {k: {"compute_seconds": _seconds(v)} for k, v in pilot_attrs.items()}})
    )
