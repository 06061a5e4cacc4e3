"""`anchorlab estimate --probe`: what a pass and a decoder cell cost on this machine, measured.

Plain passes through the engines' trace path fit a fixed cost per pass plus a cost per cell; a pilot
run of the recipe on one batch then gives each step its own cost per pass, its generation steps and
the head tables it drew. The counts themselves come from the package's pricing, not from here.
"""
from __future__ import annotations

import statistics
import time
import torch

from ..rows.batching import collate
from ..recipe import load_recipe
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
    """Run the recipe for real on one batch of prompts (no figures), twice, and read back what each
    step cost (result attrs `compute_seconds`, `passes`, `decoder_cells`). Against `price`'s
    (`estimate_recipe`'s) count of the same pilot, each step gets its own cost per pass (the engine's Python, its hooks,
    per-batch work: seconds less the cells at the probe's rate, per pass) and, where it generates,
    the steps its generations really ran; the reduction and what the first pilot spent beyond the
    second (first calls, caches: a fresh process pays them once) count once per step. The run's
    set-up (everything outside the steps, less the encoding, priced from this estimate's own) comes
    from the second pilot's wall time. Returns (per step name: seconds_per_pass, seconds_per_cell,
    generation_steps, fixed_seconds; pilot facts; distinct head tables per analysis and task, as
    the pilot drew them)."""
    import tempfile
    from pathlib import Path

    import xarray as xr

    from ..executor import run_recipe

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
    parsed, text = load_recipe(recipe_path, pilot_overrides)
    runs = []
    for _ in range(2):  # the first pays what a fresh process pays once; the second is the one timed
        with tempfile.TemporaryDirectory() as out:
            clock = time.perf_counter()
            results = run_recipe(parsed, text, out, pilot_overrides, force=True, figures=False)
            wall = time.perf_counter() - clock
            labels = Path(out) / "labels.nc"
            attrs = {name: ds.attrs for name, ds in results.items()}
            if labels.exists():
                attrs["labels"] = xr.load_dataset(labels).attrs
        runs.append((wall, attrs))
    (_, cold), (wall, attrs) = runs
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
    setup = max(wall - spent - plan["encode_seconds"], 0.0)
    return steps, {"samples": n, "prompts": plan["prompts"], "wall_seconds": wall, "setup_seconds": setup}, drawn
