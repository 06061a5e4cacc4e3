"""Run a validated recipe: load, compile rows, run each analysis batch by batch, write results."""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from .analyses import REGISTRY, Context
from .backends import LocalBackend
from .batching import collate
from .compiler import compile_rows, prompt_style
from .data.sources import load_samples
from .filters import first_token_follows, select_rows
from .models.loading import load_model
from .recipe import Recipe
from .results import now, provenance, write_dataset

log = logging.getLogger("anchorlab")


def run_batches(analysis, rows, batch_size: int, desc: str) -> dict[str, np.ndarray]:
    """Rows are batched by prompt length (less padding) and results put back in row order."""
    bundle = analysis.ctx.bundle
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].encoded.input_ids))
    parts: dict[str, list] = defaultdict(list)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        idx = order[start : start + batch_size]
        chunk = [rows[i] for i in idx]
        batch = collate([r.encoded for r in chunk], bundle.adapter, bundle.pad_token_id)
        for key, value in analysis.run_batch(batch, chunk).items():
            parts[key].append(value)
    inverse = np.argsort(np.array(order))
    return {key: np.concatenate(values)[inverse] for key, values in parts.items()}


def run_recipe(recipe: Recipe, recipe_text: str, out_dir: str | Path | None = None, overrides=()) -> dict[str, xr.Dataset]:
    out = Path(out_dir) if out_dir else recipe.output_dir
    m = recipe.model
    bundle = load_model(m.id, m.dtype, m.device, m.attn_implementation, m.revision)
    backend = LocalBackend(bundle)
    log.info("model %s (%s family, %d layers × %d heads) on %s, backend %s; results -> %s",
             m.id, bundle.adapter.family, bundle.n_layers, bundle.n_heads, bundle.device, backend.name, out)
    samples = load_samples(recipe.data, recipe.seed)
    rows = compile_rows(bundle, samples, recipe.data.tasks, prompt_style(recipe.data.prompt))
    log.info("data: %d samples from %s × tasks %s = %d prompts", len(samples), recipe.data.source,
             ",".join(recipe.data.tasks), len(rows))
    follows = first_token_follows(bundle, backend, rows, recipe.batch_size) if recipe.data.filter != "all" else None
    selected = select_rows(recipe.data.filter, follows, len(rows))
    if recipe.data.filter != "all":
        log.info("filter %s (first-token rule): %d of %d prompts kept", recipe.data.filter, selected.sum(), len(rows))
    ctx = Context(bundle=bundle, backend=backend, seed=recipe.seed)
    results: dict[str, xr.Dataset] = {}
    for i, spec in enumerate(recipe.analyses):
        name = spec.kind if [s.kind for s in recipe.analyses].count(spec.kind) == 1 else f"{spec.kind}_{i}"
        started = now()
        analysis = REGISTRY[spec.kind](spec, ctx)
        log.info("analysis %s on %s -> %s", name, m.id, out / f"{name}.nc")
        per_row = run_batches(analysis, rows, recipe.batch_size, desc=f"{name} [{m.id}]")
        ds = analysis.reduce(rows, per_row, selected)
        ds.attrs.update(provenance(recipe, recipe_text, overrides, bundle, backend.name, started))
        ds.attrs.update(data_source=recipe.data.source, data_filter=recipe.data.filter,
                        data_filter_rule="first_token" if recipe.data.filter != "all" else "none")
        write_dataset(ds, out / f"{name}.nc")
        figures = analysis.plot(ds, out / "figures")
        log.info("wrote %s and %d figure(s) under %s", out / f"{name}.nc", len(figures), out / "figures")
        results[name] = ds
    return results
