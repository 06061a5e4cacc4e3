"""Run a validated recipe: check everything that can be checked, then load, compile rows, run each
analysis batch by batch, and write results, figures and summary.md into a resumable run folder."""
from __future__ import annotations

import logging
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from ..analyses import Context
from ..backends import make_backend
from ..backends.distributed import SOLO, Group, from_env
from ..data.sources import load_dataset
from ..errors import UserError
from ..labels import store as labels_store
from ..labels.capture import label_batch
from ..labels.rules import select_rows
from ..models.loading import ModelFacts, inspect_model, load_model
from ..recipe import Recipe, result_names
from ..report.figures import draw
from ..report.summary import write_summary
from ..rows.batching import collate
from ..rows.compiler import prompt_style
from .plan import RunPlan, Step, batch_order, make_plan, resolve_budget
from .preflight import prompt_rows
from .results import input_hashes, now, provenance, write_dataset
from .store import RunStore
from .sweeps import expand, stack

log = logging.getLogger("anchorlab")


def run_batches(
    work, bundle, rows, batch_size: int, desc: str, store: RunStore | None = None, name: str = "",
    group: Group = SOLO, gather: bool = True,
) -> dict[str, np.ndarray] | None:
    """`work(batch, rows) -> per-row arrays`, batched by prompt length (less padding); each finished
    batch is stored as a chunk, so a resumed run recomputes nothing. Results come back in row order.

    Data-parallel: rank 0 lists the batches not stored yet, each rank computes its share of them and
    stores them as chunks (keyed by global batch index and size, so any number of processes resumes
    them), and once all are done the ranks that `gather` read every chunk; the others get None."""
    batches = batch_order(rows, batch_size)
    todo = list(range(len(batches)))
    if store is not None:
        todo = group.share([i for i in todo if not store.has_chunk(name, i, batch_size)] if group.primary else None)
    computed = {}
    label = f"{desc} [{group}]" if group.world > 1 else desc
    for index in tqdm(group.mine(todo), desc=label, unit="batch", disable=not group.primary):
        chunk_rows = [rows[i] for i in batches[index]]
        batch = collate([r.encoded for r in chunk_rows], bundle.adapter, bundle.pad_token_id)
        arrays = work(batch, chunk_rows)
        if store:
            store.save_chunk(name, index, arrays, batch_size)
        if gather:
            computed[index] = arrays
    group.barrier()
    if not gather:
        return None
    parts: dict[str, list] = defaultdict(list)
    for index in range(len(batches)):
        arrays = computed[index] if index in computed else store.load_chunk(name, index, batch_size)
        if arrays is None:  # another rank stored it, but not where this one reads
            raise UserError(f"{store.out}: batch {index} of {name}, stored by another rank, is not here: the run "
                            "folder must be on a filesystem that every node of a multi-node run shares")
        for key, value in arrays.items():
            parts[key].append(value)
    inverse = np.argsort(np.array([i for b in batches for i in b]))
    return {key: np.concatenate(values)[inverse] for key, values in parts.items()}


@dataclass
class Run:
    """One run's fixed parts: what every result written records (provenance, input hashes) and where
    it goes (the store's manifest lists each file written)."""

    recipe: Recipe
    recipe_text: str
    overrides: tuple
    bundle: object
    backend: object
    store: RunStore
    out: Path
    inputs: dict
    plan: RunPlan
    group: Group = SOLO  # data-parallel: this process's rank; rank 0 alone writes files other than chunks

    def stamp(self, ds: xr.Dataset, started: str) -> xr.Dataset:
        ds.attrs.update(provenance(self.recipe, self.recipe_text, self.overrides, self.bundle, self.backend.name,
                                   started, self.inputs))
        return ds

    def write(self, ds: xr.Dataset, name: str) -> Path:
        path = write_dataset(ds, self.out / name)
        self.store.record(path)
        return path

    def draw(self, ds: xr.Dataset, name: str) -> list[Path]:
        """Figures never fail a run: a plotting error is one line, and `anchorlab plot OUT` retries."""
        try:
            figures = draw(ds, self.out / "figures", name)
        except Exception as exc:  # noqa: BLE001 - any figure failure is reported, the results stay
            log.error("figures of %s failed (%s: %s); %s is stored, `anchorlab plot %s` draws them again",
                      name, type(exc).__name__, exc, self.out / f"{name}.nc", self.out)
            return []
        self.store.record(*figures)
        log.info("wrote %s and %d figure(s) under %s", self.out / f"{name}.nc", len(figures), self.out / "figures")
        return figures


def follow_labels(run: Run, rows, batch_size: int, needed: bool = False):
    """Labels per row for `data.filter` or for analyses choosing their own rows (`needed`); None when
    nothing asks for them. Also the attrs every result records."""
    recipe, out, store = run.recipe, run.out, run.store
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
        started, clock, traces = now(), time.perf_counter(), getattr(run.backend, "traces", 0)
        desc = f"follow labels ({d.filter_rule})"
        per_row = run_batches(lambda batch, chunk: label_batch(run.bundle, run.backend, batch, chunk, d.filter_rule,
                                                                d.max_new_tokens),
                              run.bundle, rows, batch_size, desc, store, "labels", run.group)  # every rank reads all
        labels = per_row["label"]
        work = work_attrs(run.backend, traces, clock, run.group)
        if run.group.primary:
            ds = labels_store.labels_dataset(rows, per_row, recipe)
            ds.attrs.update(work)
            run.write(run.stamp(ds, started), labels_store.FILE)
            store.mark_finished("labels")
            log.info("wrote %s", out / labels_store.FILE)
        attrs["data_labels"] = str(out / labels_store.FILE)
    table = labels_store.counts(rows, labels)
    attrs["data_filter_counts"] = labels_store.counts_text(table)
    if d.filter != "all":
        kept = sum(c["follows" if d.filter == "follows" else "fails"] for c in table.values())
        log.info("filter %s (%s rule): %d of %d prompts kept [%s]", d.filter, d.filter_rule, kept, len(rows),
                 attrs["data_filter_counts"])
    return labels, attrs


# what this process spent on a result: they differ between identical runs, and a resumed run counts
# only the batches it computed itself
WORK_ATTRS = ("compute_seconds", "reduce_seconds", "passes")


def work_attrs(backend, traces: int, clock: float, group: Group = SOLO) -> dict:
    """What a step cost, for checking `anchorlab estimate` against the run: forward passes (traces;
    local backend only; summed over a data-parallel run's ranks) and seconds of compute and reduction
    (figures excluded; analyses also record the reduction's share, `reduce_seconds`)."""
    attrs = {"compute_seconds": time.perf_counter() - clock}
    if hasattr(backend, "traces"):
        attrs["passes"] = group.total(backend.traces - traces)
    return attrs


def summed(summaries: list[dict]) -> dict:
    """Per-rank backend summaries as one: numbers added, anything else (the host) as rank 0 has it."""
    out = dict(summaries[0])
    for other in summaries[1:]:
        for key, value in other.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = round(out[key] + value, 3) if isinstance(value, float) else out[key] + value
    return out


def check_device(device: str) -> str:
    """model.device names a device this machine has (checked before anything is loaded); `auto` is
    the first CUDA device when there is one, else the CPU. Returns the device to load on."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"model.device: {device!r} is not a device name (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UserError(f"model.device: {device!r}, but this machine has no CUDA device (torch "
                            f"{torch.__version__}); use device: cpu")
        if dev.index is not None and dev.index >= n:
            raise UserError(f"model.device: {device!r}, but this machine has {n} CUDA device(s) (0..{n - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"model.device: {device!r}, but MPS is not available here; use device: cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"model.device: {device!r}: anchorlab runs on cpu, cuda, mps (or auto)")
    return device


def check_output(out: Path) -> None:
    """The run folder can be created and written (checked before any compute)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".anchorlab-write-check-"):
            pass
    except OSError as exc:
        raise UserError(f"output: cannot write to {out} ({exc.strerror or exc})") from None


def check_analyses(recipe: Recipe, facts: ModelFacts) -> None:
    """Every analysis (every swept combination) against the model's layers and heads, all problems at once."""
    names = result_names([a.model_dump(mode="json") for a in recipe.analyses])
    problems = []
    for i, (spec, name) in enumerate(zip(recipe.analyses, names)):
        for _, sub in expand(spec, f"analyses.{i}"):
            problems += [
                p for p in sub.check_model(facts.n_layers, facts.n_heads, f"analyses[{name}]") if p not in problems
            ]
    for i, (spec, name) in enumerate(zip(recipe.analyses, names)):  # what each reads from earlier results
        problems += spec.check_recipe(recipe.analyses[:i], f"analyses[{name}]")
    if problems:
        raise UserError("; ".join(problems))


def open_backend(recipe: Recipe, device: str, simulate_remote: bool):
    """(bundle, backend). Under NDIF the bundle is weightless (meta device: config, tokenizer, processor);
    a simulated server loads the weights here to execute the requests, which are built without them."""
    m = recipe.model
    if recipe.backend == "local":
        bundle = load_model(m.id, m.dtype, "cpu" if device == "auto" else device, m.attn_implementation, m.revision)
        return bundle, make_backend("local", bundle)
    bundle = load_model(m.id, m.dtype, "cpu", m.attn_implementation, m.revision, weights=False)
    server = load_model(m.id, m.dtype, "cpu", m.attn_implementation, m.revision) if simulate_remote else None
    return bundle, make_backend("ndif", bundle, simulate=simulate_remote, check=False, server=server)  # checked above


def preflight(recipe: Recipe, out: Path, simulate_remote: bool, group: Group):
    """Everything checked before the run folder says "running": the device, the data, the analyses against
    the model's config and against the encoded prompts' token roles (before any weights are loaded), NDIF
    serving the model, the output folder. Returns (device, samples, rows, data attrs, input hashes)."""
    m = recipe.model
    device = group.device(check_device(m.device)) if recipe.backend == "local" else m.device
    samples, data_attrs = load_dataset(recipe.data, recipe.seed)
    facts = inspect_model(m.id, m.revision)
    check_analyses(recipe, facts)
    rows = prompt_rows(recipe, samples)
    if recipe.backend == "ndif" and not simulate_remote:
        from ..backends.ndif import preflight as ndif_preflight

        ndif_preflight(m.id, m.revision)  # fail before loading anything when NDIF does not serve the model
    check_output(out)
    return device, samples, rows, data_attrs, input_hashes(recipe, samples, data_attrs, facts)


def run_step(run: Run, step: Step, rows, labels, data_attrs: dict, results: dict, figures: bool) -> xr.Dataset:
    """One analysis (every sweep combination): its batches, its reduction on rank 0, the result written."""
    store, backend, group, out, model_id = run.store, run.backend, run.group, run.out, run.recipe.model.id
    name = step.name
    started, clock, traces = now(), time.perf_counter(), getattr(backend, "traces", 0)
    log.info("analysis %s on %s -> %s", name, model_id, out / f"{name}.nc")
    mark = len(backend.requests)
    rule = run.recipe.data.filter if step.rule == "data" else step.rule
    selected = select_rows(rule, labels, len(rows))
    if not selected.any():
        reason = (
            f"no prompt is selected (rows: {rule}; labels per task: {data_attrs.get('data_filter_counts', 'none')})"
        )
        log.warning("analysis %s not run: %s", name, reason)
        ds = run.stamp(xr.Dataset(attrs={"analysis": step.spec.kind, "status": "not run", "not_run_reason": reason}),
                       started)
        ds.attrs.update(data_attrs)
        if group.primary:
            run.write(ds, f"{name}.nc")
            store.mark_finished(name)
        return ds
    parts, reducing = [], 0.0
    for part in step.parts:
        desc = f"{name} {part.combo} [{model_id}]" if part.combo else f"{name} [{model_id}]"
        per_row = run_batches(part.analysis.run_batch, run.bundle, rows, part.batch_size, desc, store, part.tag, group,
                              gather=group.primary)
        if group.primary:
            reduce_clock = time.perf_counter()
            parts.append((part.combo, part.analysis.reduce(rows, per_row, selected)))
            reducing += time.perf_counter() - reduce_clock
    work = work_attrs(backend, traces, clock, group)
    traffic = summed(group.gathered(backend.summary(mark)))  # NDIF requests of every rank
    if group.primary:
        ds = run.stamp(stack(parts), started)
        ds.attrs["rows"] = rule
        if run.plan.budget is not None:
            ds.attrs["batch_size_used"] = step.parts[-1].batch_size
        ds.attrs.update(traffic)
        ds.attrs.update(work, reduce_seconds=reducing)
        ds.attrs.update(data_attrs)
        run.write(ds, f"{name}.nc")
        store.mark_finished(name)  # the data is safe: a figure that fails below cannot undo that
    group.barrier()  # the result is on disk: the other ranks read it (a later analysis may use it)
    ds = ds if group.primary else xr.load_dataset(out / f"{name}.nc")
    if group.primary and figures:
        run.draw(ds, name)
    return ds


def run_recipe(
    recipe: Recipe, recipe_text: str, out_dir: str | Path | None = None, overrides=(), resume: bool = False,
    force: bool = False, simulate_remote: bool = False, figures: bool = True,
) -> dict[str, xr.Dataset]:
    """`simulate_remote`: a `backend: ndif` recipe runs through nnsight's remote="local" (no server);
    `figures=False` draws none (`anchorlab estimate --probe`'s pilot run). Under torchrun every process
    calls this: the batches are split over them (see run_batches), and rank 0 reduces and writes the
    results, figures and summary; every rank returns the results."""
    group = from_env()
    out = Path(out_dir) if out_dir else recipe.output_dir
    m = recipe.model
    device, samples, rows, data_attrs, inputs = preflight(recipe, out, simulate_remote, group)
    # Rank 0 alone creates (or resumes, or refuses) the run folder; the others then attach to it.
    store = group.first(lambda: RunStore(out, recipe.model_dump(mode="json"), inputs, resume=resume, force=force,
                                         world_size=group.world),
                        then=lambda: RunStore.attach(out))
    try:
        bundle, backend = open_backend(recipe, device, simulate_remote)
        log.info("model %s (%s family, %d layers × %d heads) on %s, backend %s; results -> %s",
                 m.id, bundle.adapter.family, bundle.n_layers, bundle.n_heads, bundle.device, backend.name, out)
        if group.world > 1:
            log.info("data-parallel over %d processes: batches split over the ranks, rank 0 writes the results",
                     group.world)
        style = prompt_style(recipe.data.prompt)
        data_attrs["data_samples_unusable"] = len(samples) - len({r.sample.id for r in rows})
        data_attrs["world_size"] = group.world
        log.info("data: %d samples from %s × tasks %s = %d prompts", len(samples), recipe.data.source,
                 ",".join(recipe.data.tasks), len(rows))
        results: dict[str, xr.Dataset] = {}
        ctx = Context(bundle=bundle, backend=backend, seed=recipe.seed, style=style, results=results)
        # every rank's batches must fit its device; processes on one CPU share its memory
        budget = resolve_budget(recipe, bundle, group.local_world if bundle.device.type == "cpu" else 1)
        plan = make_plan(recipe, bundle, rows, ctx, None if budget is None else group.least(budget))
        data_attrs.update(plan.attrs())
        run = Run(recipe, recipe_text, tuple(overrides), bundle, backend, store, out, inputs, plan, group)
        labels, filter_attrs = follow_labels(run, rows, plan.label_batch_size, needed=plan.labels)
        data_attrs.update(filter_attrs)
        for step in plan.steps:
            if store.is_finished(step.name):
                log.info("analysis %s already finished in %s (resumed)", step.name, out)
                results[step.name] = xr.load_dataset(out / f"{step.name}.nc")
                continue
            results[step.name] = run_step(run, step, rows, labels, data_attrs, results, figures)
        if len(results) > 1 and group.primary:
            summary = write_summary(results, out, m.id)
            store.record(summary)
            log.info("wrote %s", summary)
        group.barrier()  # nobody reads a chunk any more: rank 0 may remove them
    except KeyboardInterrupt:
        store.stop("interrupted")
        raise
    except BaseException:
        store.stop("failed")
        raise
    store.complete()
    return results
