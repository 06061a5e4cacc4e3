"""Run a validated recipe: load, compile rows, run each analysis batch by batch, write results."""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from .ablation import expand, stack
from .analyses import REGISTRY, Context
from .backends import make_backend
from .batching import collate
from .compiler import compile_rows, prompt_style
from .data.sources import load_dataset
from .filters import select_rows
from .labels import follow_labels
from .models.loading import load_model
from .recipe import Recipe
from .plots.ablation import plot_ablation
from .results import now, provenance, write_dataset
from .store import RunStore
from .summary import write_summary

log = logging.getLogger("anchorlab")


def run_batches(
    work, bundle, rows, batch_size: int, desc: str, store: RunStore | None = None, name: str = ""
) -> dict[str, np.ndarray]:
    """`work(batch, rows) -> per-row arrays`, batched by prompt length (less padding); each finished
    batch is stored as a chunk, so a resumed run recomputes nothing. Results come back in row order."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].encoded.input_ids))
    starts = range(0, len(order), batch_size)
    parts: dict[str, list] = defaultdict(list)
    for index, start in enumerate(tqdm(starts, desc=desc, unit="batch")):
        chunk_rows = [rows[i] for i in order[start : start + batch_size]]
        arrays = store.load_chunk(name, index) if store else None
        if arrays is None:
            batch = collate([r.encoded for r in chunk_rows], bundle.adapter, bundle.pad_token_id)
            arrays = work(batch, chunk_rows)
            if store:
                store.save_chunk(name, index, arrays)
        for key, value in arrays.items():
            parts[key].append(value)
    inverse = np.argsort(np.array(order))
    return {key: np.concatenate(values)[inverse] for key, values in parts.items()}


def run_recipe(
    recipe: Recipe, recipe_text: str, out_dir: str | Path | None = None, overrides=(), resume: bool = False,
    force: bool = False, simulate_remote: bool = False,
) -> dict[str, xr.Dataset]:
    """`simulate_remote`: a `backend: ndif` recipe runs through nnsight's remote="local" (no server)."""
    out = Path(out_dir) if out_dir else recipe.output_dir
    store = RunStore(out, recipe.model_dump(mode="json"), resume=resume, force=force)
    m = recipe.model
    samples, data_attrs = load_dataset(recipe.data, recipe.seed)  # data errors before a long model load
    if recipe.backend == "ndif" and not simulate_remote:
        from .backends.ndif import preflight

        preflight(m.id, m.revision)  # fail before loading anything when NDIF does not serve the model
    bundle = load_model(m.id, m.dtype, m.device, m.attn_implementation, m.revision)
    backend = make_backend(recipe.backend, bundle, simulate=simulate_remote, check=False)  # checked above
    log.info("model %s (%s family, %d layers × %d heads) on %s, backend %s; results -> %s",
             m.id, bundle.adapter.family, bundle.n_layers, bundle.n_heads, bundle.device, backend.name, out)
    rows = compile_rows(bundle, samples, recipe.data.tasks, prompt_style(recipe.data.prompt), on_unusable="skip")
    data_attrs["data_samples_unusable"] = len(samples) - len({r.sample.id for r in rows})
    log.info("data: %d samples from %s × tasks %s = %d prompts", len(samples), recipe.data.source,
             ",".join(recipe.data.tasks), len(rows))
    own = {spec.selection() for spec in recipe.analyses} - {"data", "all"}
    budget = None
    if recipe.batch_size == "auto":
        from .autobatch import choose, default_budget, parse_bytes

        budget = parse_bytes(recipe.memory_budget) if recipe.memory_budget is not None else default_budget(bundle)
        data_attrs["memory_budget_bytes"] = budget
    label_recipe = recipe if budget is None else recipe.model_copy(
        update={"batch_size": choose(bundle, rows, None, budget)[0]})
    labels, filter_attrs = follow_labels(label_recipe, recipe_text, overrides, bundle, backend, rows, store, out,
                                         run_batches, needed=bool(own))
    data_attrs.update(filter_attrs)
    results: dict[str, xr.Dataset] = {}
    ctx = Context(bundle=bundle, backend=backend, seed=recipe.seed, style=prompt_style(recipe.data.prompt),
                  results=results)
    for i, spec in enumerate(recipe.analyses):
        unnamed = [s.kind for s in recipe.analyses if not s.name]
        name = spec.name or (spec.kind if unnamed.count(spec.kind) == 1 else f"{spec.kind}_{i}")
        if store.is_finished(name):
            log.info("analysis %s already finished in %s (resumed)", name, out)
            results[name] = xr.load_dataset(out / f"{name}.nc")
            continue
        started = now()
        log.info("analysis %s on %s -> %s", name, m.id, out / f"{name}.nc")
        mark = len(backend.requests)
        mode = spec.selection()
        selected = select_rows(recipe.data.filter if mode == "data" else mode, labels, len(rows))
        parts = []
        for j, (combo, sub) in enumerate(expand(spec, f"analyses.{i}")):
            batch_size = recipe.batch_size
            if budget is not None:
                batch_size, per_pass = choose(bundle, rows, sub, budget)
                knob = {"knockout": "variants_per_pass", "heads_block": "settings_per_pass",
                         "heads_amplify": "settings_per_pass"}.get(sub.kind)
                if knob:
                    sub = sub.model_copy(update={knob: per_pass})
                log.info("%s: batch_size auto -> %d prompts%s under a %.0f MiB budget", name, batch_size,
                         f", {knob} {per_pass}" if knob else "", budget / 2**20)
            analysis = REGISTRY[spec.kind](sub, ctx)
            tag = f"{name}@{j}" if combo else name
            desc = f"{name} {combo} [{m.id}]" if combo else f"{name} [{m.id}]"
            per_row = run_batches(analysis.run_batch, bundle, rows, batch_size, desc, store, tag)
            parts.append((combo, analysis.reduce(rows, per_row, selected)))
        ds = stack(parts)
        ds.attrs["rows"] = recipe.data.filter if mode == "data" else mode
        if budget is not None:
            ds.attrs["batch_size_used"] = batch_size
        ds.attrs.update(provenance(recipe, recipe_text, overrides, bundle, backend.name, started))
        ds.attrs.update(backend.summary(mark))
        ds.attrs.update(data_attrs)
        write_dataset(ds, out / f"{name}.nc")
        figures = plot_ablation(ds, out / "figures", name) if spec.sweep else analysis.plot(ds, out / "figures")
        log.info("wrote %s and %d figure(s) under %s", out / f"{name}.nc", len(figures), out / "figures")
        store.mark_finished(name)
        results[name] = ds
    if len(results) > 1:
        log.info("wrote %s", write_summary(results, out, m.id))
    store.complete()
    return results
