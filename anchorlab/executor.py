"""Run a validated recipe: load, compile rows, run each analysis batch by batch, write results."""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from .sweeps import expand, stack
from .analyses import REGISTRY, Context
from .backends import make_backend
from .rows.batching import collate
from .rows.compiler import compile_rows, prompt_style
from .data.sources import load_dataset
from .labels.rules import select_rows
from .labels import store as labels_store
from .labels.capture import label_batch
from .models.loading import load_model
from .recipe import Recipe
from .plots import draw
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


def follow_labels(recipe, recipe_text, overrides, bundle, backend, rows, store, out: Path, run_batches,
                  needed: bool = False):
    """Labels per row for `data.filter` or for analyses choosing their own rows (`needed`); None when
    nothing asks for them. Also the attrs every result records."""
    d = recipe.data
    if d.filter == "all" and not needed:
        return None, {"data_filter": "all", "data_filter_rule": "none"}
    attrs = {"data_filter": d.filter, "data_filter_rule": d.filter_rule}
    if d.labels:
        labels = labels_store.reuse(d.labels, recipe, rows)
        attrs["data_labels"] = str(labels_store.resolve(d.labels))
        log.info("labels reused from %s (not recomputed)", attrs["data_labels"])
    elif store.is_finished("labels") and (out / labels_store.FILE).is_file():
        labels = labels_store.reuse(out / labels_store.FILE, recipe, rows)
        attrs["data_labels"] = str(out / labels_store.FILE)
    else:
        started = now()
        desc = f"follow labels ({d.filter_rule})"
        per_row = run_batches(lambda batch, chunk: label_batch(bundle, backend, batch, chunk, d.filter_rule,
                                                                d.max_new_tokens),
                              bundle, rows, recipe.batch_size, desc, store, "labels")
        labels = per_row["label"]
        ds = labels_store.labels_dataset(rows, per_row, recipe)
        ds.attrs.update(provenance(recipe, recipe_text, overrides, bundle, backend.name, started))
        write_dataset(ds, out / labels_store.FILE)
        store.mark_finished("labels")
        attrs["data_labels"] = str(out / labels_store.FILE)
        log.info("wrote %s", out / labels_store.FILE)
    table = labels_store.counts(rows, labels)
    attrs["data_filter_counts"] = labels_store.counts_text(table)
    if d.filter != "all":
        kept = sum(c["follows" if d.filter == "follows" else "fails"] for c in table.values())
        log.info("filter %s (%s rule): %d of %d prompts kept [%s]", d.filter, d.filter_rule, kept, len(rows),
                 attrs["data_filter_counts"])
    return labels, attrs


def draw_safely(ds: xr.Dataset, out: Path, name: str) -> list[Path]:
    """Figures never fail a run: a plotting error is one line, and `anchorlab plot OUT` retries."""
    try:
        figures = draw(ds, out / "figures", name)
    except Exception as exc:  # noqa: BLE001 - any figure failure is reported, the results stay
        log.error("figures of %s failed (%s: %s); %s is stored, `anchorlab plot %s` draws them again",
                  name, type(exc).__name__, exc, out / f"{name}.nc", out)
        return []
    log.info("wrote %s and %d figure(s) under %s", out / f"{name}.nc", len(figures), out / "figures")
    return figures


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
    labels, filter_attrs = follow_labels(recipe, recipe_text, overrides, bundle, backend, rows, store, out, run_batches,
                                         needed=bool(own))
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
        if not selected.any():
            rule = recipe.data.filter if mode == "data" else mode
            reason = f"no prompt is selected (rows: {rule}; labels per task: {data_attrs.get('data_filter_counts', 'none')})"
            log.warning("analysis %s not run: %s", name, reason)
            ds = xr.Dataset(attrs={"analysis": spec.kind, "status": "not run", "not_run_reason": reason})
            ds.attrs.update(provenance(recipe, recipe_text, overrides, bundle, backend.name, started))
            ds.attrs.update(data_attrs)
            write_dataset(ds, out / f"{name}.nc")
            store.mark_finished(name)
            results[name] = ds
            continue
        parts = []
        for j, (combo, sub) in enumerate(expand(spec, f"analyses.{i}")):
            analysis = REGISTRY[spec.kind](sub, ctx)
            tag = f"{name}@{j}" if combo else name
            desc = f"{name} {combo} [{m.id}]" if combo else f"{name} [{m.id}]"
            per_row = run_batches(analysis.run_batch, bundle, rows, recipe.batch_size, desc, store, tag)
            parts.append((combo, analysis.reduce(rows, per_row, selected)))
        ds = stack(parts)
        ds.attrs["rows"] = recipe.data.filter if mode == "data" else mode
        ds.attrs.update(provenance(recipe, recipe_text, overrides, bundle, backend.name, started))
        ds.attrs.update(backend.summary(mark))
        ds.attrs.update(data_attrs)
        write_dataset(ds, out / f"{name}.nc")
        store.mark_finished(name)  # the data is safe: a figure that fails below cannot undo that
        results[name] = ds
        draw_safely(ds, out, name)
    if len(results) > 1:
        log.info("wrote %s", write_summary(results, out, m.id))
    store.complete()
    return results
