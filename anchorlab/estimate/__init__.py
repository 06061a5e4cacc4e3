"""`anchorlab estimate RECIPE`: what a run will cost, from the recipe, the data and the model config
only (the model is built on the meta device: no weights are read or allocated).

Per analysis and in total: prompts, variants, forward passes and decoder cells (layer × position,
padding included) of the fast and the naive engine, forward-equivalents (cells ÷ the cells of one
plain forward of every prompt), the predicted peak memory of one batch (weights + engines/memory.py)
and time. Prompts are encoded and batched exactly as a run does (same order, batch size and
padding) and every engine's passes are counted as it makes them (knockout from its own planner,
`plan_passes`), so passes and cells equal the run's attrs `passes` and `decoder_cells`; generation
is counted at `max_new_tokens` (an upper bound: a batch stops when every row has reached EOS), head
tables as if every random draw differs (an upper bound) unless a probe's pilot drew them (from the
rankings of the recipe's own attribution over every prompt: timing.full_rankings).

Time: `--tokens-per-s` prices cells only (cells ÷ (tokens/s × layers)): right for a large model on a
GPU, where a pass is all arithmetic. `--probe` loads the model and measures what a small model's
run is made of: a fixed cost per pass (trace set-up, Python, hooks) besides the cost per cell
(timed plain passes, fitted as a + b × cells), then a pilot run of the recipe on one batch of
prompts gives each step its own cost per pass and the generation steps it really runs.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict

import torch
from PIL import Image

from ..analyses import Context
from ..data.sources import load_dataset
from ..engines.memory import plain_forward_bytes
from ..recipe import load_recipe
from ..rows.batching import collate
from ..rows.compiler import compile_rows, prompt_style
from ..run.plan import batch_order, make_plan, resolve_budget
from .costs import Cost

log = logging.getLogger("anchorlab")


def meta_bundle(model_spec):
    """A ModelBundle whose model lives on the meta device (config, tokenizer and processors real)."""
    from ..models.loading import load_model

    m = model_spec
    return load_model(m.id, m.dtype, "cpu", m.attn_implementation, m.revision, weights=False)


def batches_like_a_run(bundle, rows, batch_size):
    """(batch, rows) in the run's order (run.plan.batch_order)."""
    for index in batch_order(rows, batch_size):
        chunk = [rows[i] for i in index]
        yield collate([r.encoded for r in chunk], bundle.adapter, bundle.pad_token_id), chunk


def estimate_recipe(recipe_path, overrides=(), tokens_per_s: float | None = None, probe: bool = False,
                    image_size: tuple[int, int] | None = None, tables: dict | None = None) -> dict:
    """`tables`: {analysis name: {task: distinct head tables}} as a run drew them (the pilot's result
    attrs `head_tables_<task>`); without, every random draw counts as distinct (an upper bound)."""
    recipe, _ = load_recipe(recipe_path, list(overrides))
    samples, _ = load_dataset(recipe.data, recipe.seed)
    if image_size is not None:  # only the size of an image matters for its token count
        for s in samples:
            if s.image is not None:
                object.__setattr__(s, "image", Image.new("RGB", image_size))
    bundle = meta_bundle(recipe.model)
    rows, clock = [], time.perf_counter()
    for start in range(0, len(samples), 64):  # pixels are dropped as we go: only their shape is priced
        part = compile_rows(bundle, samples[start : start + 64], recipe.data.tasks, prompt_style(recipe.data.prompt),
                            on_unusable="skip")
        for r in part:
            for key, value in r.encoded.extras.items():
                if key == "pixel_values":
                    r.encoded.extras[key] = torch.empty(value.shape, dtype=value.dtype, device="meta")
        rows += part
    encode_seconds = time.perf_counter() - clock  # the run encodes the same prompts with the same tokenizer
    n_layers = bundle.n_layers
    weights = sum(p.numel() * p.element_size() for p in bundle.model.parameters())
    ctx = Context(bundle=bundle, backend=None, seed=recipe.seed, style=prompt_style(recipe.data.prompt), results={})
    # the meta model has no device: without memory_budget, this machine's free memory
    plan = make_plan(recipe, bundle, rows, ctx, resolve_budget(recipe, bundle))
    cache: dict[int, list] = {}

    def batches(size: int) -> list:
        if size not in cache:
            cache[size] = list(batches_like_a_run(bundle, rows, size))
        return cache[size]

    plain = batches(plan.label_batch_size if plan.budget is not None else recipe.batch_size)
    forward_cells = sum(n_layers * b.inputs["input_ids"].numel() for b, _ in plain)
    costs: list[Cost] = []
    d = recipe.data
    if plan.labels and d.labels is None:  # the executor's follow labels run first
        generation = d.filter_rule == "generation"
        c = Cost(f"labels ({d.filter_rule})", prompts=len(rows), variants=1,
                 max_new_tokens=d.max_new_tokens if generation else 1)
        for batch, _ in batches(plan.label_batch_size):
            b, s = batch.inputs["input_ids"].shape
            for w in (c.fast, c.naive):
                w.add(1, n_layers * s * b, int(generation), b * generation)
            c.peak_bytes = max(c.peak_bytes, weights + plain_forward_bytes(bundle, batch, 1, cache=generation))
        costs.append(c)

    def price_analyses(tables: dict) -> list[Cost]:
        priced = []
        for step in plan.steps:
            total = Cost(step.name, prompts=len(rows))
            for part in step.parts:
                total.engine = getattr(part.analysis.spec, "engine", "fast")
                for batch, chunk in batches(part.batch_size):
                    total.add(part.analysis.batch_cost(batch, chunk, tables.get(step.name, {})), weights)
            if len(step.parts) > 1:
                total.notes.append(f"{len(step.parts)} sweep combinations")
            priced.append(total)
        return priced

    labels = costs
    costs = labels + price_analyses(tables or {})
    timing = None
    if probe:
        from .timing import pilot_run, probe_costs

        timing = probe_costs(recipe, rows, costs)
        timing["steps"], timing["pilot"], drawn = pilot_run(recipe_path, list(overrides), recipe,
                                                            timing["seconds_per_cell"], estimate_recipe)
        if drawn:  # head tables as the pilot drew them
            costs = labels + price_analyses(drawn)
    if timing:
        tokens_per_s = timing["tokens_per_s"]
    out = {"model": recipe.model.id, "dtype": recipe.model.dtype, "layers": n_layers, "prompts": len(rows),
           "batches": len(plain), "batch_size": recipe.batch_size, "weights_bytes": weights,
           "mean_seq": sum(len(r.encoded.input_ids) for r in rows) / max(len(rows), 1),
           "forward_cells": forward_cells, "tokens_per_s": tokens_per_s, "probe": timing,
           "encode_seconds": encode_seconds, "analyses": []}
    for c in costs:
        out["analyses"].append(cost_line(c, n_layers, forward_cells, tokens_per_s, timing))
    out["analyses"].append(total_line(out["analyses"], forward_cells, timing, encode_seconds))
    return out


def cost_line(c: Cost, n_layers: int, forward_cells: int, tokens_per_s, timing) -> dict:
    """One analysis as printed: passes and cells at max_new_tokens (upper bounds where it generates);
    time at the probe's measured generation length, or cells ÷ (tokens/s × layers) without a probe."""
    passes, cells = c.fast.at(c.max_new_tokens, n_layers)
    passes_naive, cells_naive = c.naive.at(c.max_new_tokens, n_layers)
    line = {"analysis": c.analysis, "prompts": c.prompts, "variants": c.variants, "cells_fast": cells,
            "cells_naive": cells_naive, "passes_fast": passes, "passes_naive": passes_naive,
            "peak_bytes": c.peak_bytes, "max_new_tokens": c.max_new_tokens, "engine": c.engine, "notes": c.notes,
            "work_fast": asdict(c.fast), "work_naive": asdict(c.naive),
            "forward_equivalents_fast": cells / forward_cells, "forward_equivalents_naive": cells_naive / forward_cells}
    if timing:
        pilot = timing["steps"].get(c.analysis, {})
        steps = pilot.get("generation_steps", min(c.max_new_tokens, timing["generation_steps"]))
        per_pass = pilot.get("seconds_per_pass", timing["seconds_per_pass"])
        fixed, per_cell = pilot.get("fixed_seconds", 0.0), pilot.get("seconds_per_cell", timing["seconds_per_cell"])
        line.update(generation_steps=steps, seconds_per_pass=per_pass, seconds_per_cell=per_cell)
        for key, work in (("fast", c.fast), ("naive", c.naive)):
            p, n = work.at(steps, n_layers)
            line[f"seconds_{key}"] = fixed + per_pass * p + per_cell * n
            line[f"timed_passes_{key}"], line[f"timed_cells_{key}"] = p, n  # at the pilot's generation steps
    elif tokens_per_s:
        line["seconds_fast"] = cells / (tokens_per_s * n_layers)
        line["seconds_naive"] = cells_naive / (tokens_per_s * n_layers)
    if "seconds_fast" in line:
        line["seconds_run"] = line[f"seconds_{c.engine}"]  # with the engine the recipe chose
    return line


def total_line(lines: list[dict], forward_cells: int, timing, encode_seconds: float) -> dict:
    """The sum of every line; with a probe, the run's set-up (loading the model, encoding the prompts) too."""
    t = {"analysis": "total", "prompts": max((a["prompts"] for a in lines), default=0),
         "variants": sum(a["variants"] for a in lines), "peak_bytes": max((a["peak_bytes"] for a in lines), default=0),
         "notes": []}
    for key in ("cells_fast", "cells_naive", "passes_fast", "passes_naive", "seconds_fast", "seconds_naive",
                "seconds_run"):
        if all(key in a for a in lines):
            t[key] = sum(a[key] for a in lines)
    if timing:
        setup = timing["pilot"]["setup_seconds"] + encode_seconds
        for key in ("seconds_fast", "seconds_naive", "seconds_run"):
            t[key] += setup
        t["notes"].append(f"set-up {setup:.1f} s (load + encode)")
    t["forward_equivalents_fast"] = t["cells_fast"] / forward_cells
    t["forward_equivalents_naive"] = t["cells_naive"] / forward_cells
    return t
