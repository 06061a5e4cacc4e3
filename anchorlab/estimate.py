"""`anchorlab estimate RECIPE`: what a run will cost, from the recipe, the data and the model config
only (the model is built on the meta device: no weights are read or allocated).

Per analysis and in total: prompts, variants, decoder cells (layer × position, padding included)
of the fast and the naive engine, forward-equivalents (cells ÷ the cells of one plain forward of
every prompt), the predicted peak memory of one batch (weights + engines/memory.py) and time
(cells ÷ (tokens/s × layers), tokens/s from `--tokens-per-s` or a measured probe). Prompts are
encoded and batched exactly as a run does (same order, batch size and padding), and the knockout
counts come from the engine's own planner (`plan_passes`), so they equal the run's
`decoder_cells`. Generation steps are counted at `max_new_tokens` (an upper bound: a row may stop at
EOS); head sweeps count distinct tables as if every random draw differs (an upper bound).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import torch
from PIL import Image

from .sweeps import expand
from .analyses import REGISTRY, Context
from .rows.batching import collate
from .rows.compiler import compile_rows, prompt_style
from .rows.encoding import encode
from .data.sources import load_dataset
from .engines import memory
from .engines.knockout import first_affected, knocked_edges, pass_cells, plan_passes, role_mask, window_layers
from .interventions.knockout import parse_pathway
from .recipe import load_recipe

log = logging.getLogger("anchorlab")


@dataclass
class Cost:
    analysis: str
    prompts: int = 0
    variants: int = 0  # interventions per prompt (pathways × centres, head tables, blocking settings)
    cells_fast: int = 0
    cells_naive: int = 0
    peak_bytes: int = 0  # largest batch: weights + what the engine adds
    passes: int = 0  # traces of the fast engine
    notes: list[str] = field(default_factory=list)

    def add(self, other: "Cost") -> None:
        self.prompts = max(self.prompts, other.prompts)
        self.cells_fast += other.cells_fast
        self.cells_naive += other.cells_naive
        self.peak_bytes = max(self.peak_bytes, other.peak_bytes)
        self.passes += other.passes


def meta_bundle(model_spec):
    """A ModelBundle whose model lives on the meta device (config, tokenizer and processors real)."""
    from .models.loading import load_model

    m = model_spec
    return load_model(m.id, m.dtype, "cpu", m.attn_implementation, m.revision, weights=False)


def batches_like_a_run(bundle, rows, batch_size):
    """(batch, rows) in executor.run_batches' order: by prompt length, chunks of batch_size."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].encoded.input_ids))
    for start in range(0, len(order), batch_size):
        chunk = [rows[i] for i in order[start : start + batch_size]]
        yield collate([r.encoded for r in chunk], bundle.adapter, bundle.pad_token_id), chunk


def knockout_cells(spec, analysis, batch, rows, n_layers: int) -> tuple[int, int, int, list]:
    """(fast cells, naive cells, fast passes, plan) of one batch, as KnockoutEngine.sweep counts them."""
    b, s = batch.inputs["input_ids"].shape
    pathways = [(p, *parse_pathway(p)) for p in spec.pathways]
    windows = [window_layers(c, spec.window, n_layers) for c in analysis.centres()]
    starts = [int(first_affected(knocked_edges(role_mask(batch, rows, src, n), role_mask(batch, rows, dst, n))).min())
              for n, src, dst in pathways]
    passes, _ = plan_passes(starts, windows, s, n_layers, spec.variants_per_pass)
    fast = n_layers * s * b + sum(pass_cells(p, s, b, n_layers) for p in passes)
    naive = (1 + len(pathways) * len(windows)) * n_layers * s * b
    return fast, naive, 1 + len(passes), (starts, windows)


def head_tables(spec) -> int:
    """Distinct [L, H] tables of a head sweep (every random draw assumed distinct)."""
    values = list(spec.n_heads) if spec.kind == "heads_block" else list(spec.alphas)
    keys = set()
    for v, value in enumerate(values):
        factor = 0.0 if spec.kind == "heads_block" else float(value)
        for setting in spec.settings:
            if setting == "original" or factor == 1.0:
                keys.add("identity")
            elif setting in ("targeted", "shared"):
                keys.add((setting, v))
            else:
                keys.update((setting, v, seed) for seed in range(spec.seeds))
    return len(keys)


def estimate_recipe(recipe_path, overrides=(), tokens_per_s: float | None = None, probe: bool = False,
                    image_size: tuple[int, int] | None = None) -> dict:
    recipe, _ = load_recipe(recipe_path, list(overrides))
    samples, _ = load_dataset(recipe.data, recipe.seed)
    if image_size is not None:  # only the size of an image matters for its token count
        for s in samples:
            if s.image is not None:
                object.__setattr__(s, "image", Image.new("RGB", image_size))
    bundle = meta_bundle(recipe.model)
    rows = []
    for start in range(0, len(samples), 64):  # pixels are dropped as we go: only their shape is priced
        part = compile_rows(bundle, samples[start : start + 64], recipe.data.tasks, prompt_style(recipe.data.prompt),
                            on_unusable="skip")
        for r in part:
            for key, value in r.encoded.extras.items():
                if key == "pixel_values":
                    r.encoded.extras[key] = torch.empty(value.shape, dtype=value.dtype, device="meta")
        rows += part
    n_layers = bundle.n_layers
    dims = memory.dims_of(bundle)
    weights = sum(p.numel() * p.element_size() for p in bundle.model.parameters())
    budget = None
    if recipe.batch_size == "auto":
        from .engines.autobatch import choose, default_budget, parse_bytes

        # the meta model has no device: without memory_budget, this machine's free memory
        budget = parse_bytes(recipe.memory_budget) if recipe.memory_budget is not None else default_budget(bundle)
    cache: dict[int, list] = {}

    def batches_for(spec) -> tuple[list, int]:
        size, per_pass = (recipe.batch_size, None) if budget is None else choose(bundle, rows, spec, budget)
        if size not in cache:
            cache[size] = list(batches_like_a_run(bundle, rows, size))
        return cache[size], per_pass

    batches, _ = batches_for(None)
    forward_cells = sum(n_layers * b.inputs["input_ids"].numel() for b, _ in batches)
    ctx = Context(bundle=bundle, backend=None, seed=recipe.seed, style=prompt_style(recipe.data.prompt), results={})
    costs: list[Cost] = []

    d = recipe.data
    if d.filter != "all" and d.labels is None:
        c = Cost(f"labels ({d.filter_rule})", prompts=len(rows), variants=1)
        for batch, chunk in batches_for(None)[0]:
            b, s = batch.inputs["input_ids"].shape
            gen = 0 if d.filter_rule == "first_token" else (d.max_new_tokens - 1) * n_layers * b
            c.cells_fast += n_layers * s * b + gen
            c.passes += 1 if d.filter_rule == "first_token" else d.max_new_tokens
            c.peak_bytes = max(c.peak_bytes, weights + memory.forward_bytes(dims, b, s, 1, memory.n_patches(batch),
                                                                          cache=d.filter_rule != "first_token"))
        c.cells_naive = c.cells_fast
        costs.append(c)

    for i, spec in enumerate(recipe.analyses):
        name = spec.name or spec.kind
        combos = expand(spec, f"analyses.{i}")
        total = Cost(name, prompts=len(rows))
        for _, sub in combos:
            sub_batches, per_pass = batches_for(sub)
            if per_pass is not None and sub.kind == "knockout":
                sub = sub.model_copy(update={"variants_per_pass": per_pass})
            elif per_pass is not None and sub.kind in ("heads_block", "heads_amplify"):
                sub = sub.model_copy(update={"settings_per_pass": per_pass})
            analysis = REGISTRY[sub.kind](sub, ctx)
            c = Cost(name)
            for batch, chunk in sub_batches:
                b, s = batch.inputs["input_ids"].shape
                patches = memory.n_patches(batch)
                plain = n_layers * s * b
                if sub.kind in ("signal", "attribution"):
                    c.cells_fast += plain
                    c.cells_naive += plain
                    c.passes += 1
                    c.variants = 1
                    c.peak_bytes = max(c.peak_bytes, weights + memory.forward_bytes(dims, b, s, 0, patches))
                elif sub.kind == "knockout":
                    fast, naive, passes, (starts, windows) = knockout_cells(sub, analysis, batch, chunk, n_layers)
                    extra = plain if sub.decision == "dictionary_best" else 0
                    c.cells_fast += fast + extra
                    c.cells_naive += naive + extra
                    c.passes += passes
                    c.variants = len(sub.pathways) * len(windows)
                    mem = memory.knockout_fast_bytes(dims, b, s, starts, windows, sub.variants_per_pass, patches)
                    if sub.engine == "naive":
                        mem = memory.forward_bytes(dims, b, s, 0, patches)
                    c.peak_bytes = max(c.peak_bytes, weights + mem)
                elif sub.kind == "path_blocking":
                    settings = 3  # original, instruction->last, followed context->last
                    cells = settings * (plain + (sub.max_new_tokens - 1) * n_layers * b)
                    c.cells_fast += cells
                    c.cells_naive += cells
                    c.passes += settings * sub.max_new_tokens
                    c.variants = settings
                    c.peak_bytes = max(c.peak_bytes, weights + memory.forward_bytes(dims, b, s, 1, patches, cache=True))
                elif sub.kind in ("heads_block", "heads_amplify"):
                    n_tables = head_tables(sub)
                    c.variants = n_tables
                    parts = [[r for r in chunk if r.task == t] for t in dict.fromkeys(r.task for r in chunk)]
                    if sub.general_check:
                        parts += [[t for t in (analysis._neutral_row(r) for r in part) if t is not None] for part in parts]
                    for part in (p for p in parts if p):
                        pb = collate([r.encoded for r in part], bundle.adapter, bundle.pad_token_id)
                        bb, ss = pb.inputs["input_ids"].shape
                        where = role_mask(pb, part, sub.positions, "heads")
                        p0 = int(torch.where(where.any(0))[0].min())
                        gen = 0 if sub.rule == "first_token" else (sub.max_new_tokens - 1) * n_layers * bb * n_tables
                        chunks = -(-n_tables // sub.settings_per_pass)
                        c.cells_fast += n_layers * ss * bb + n_layers * (ss - p0) * n_tables * bb + gen
                        c.cells_naive += n_tables * n_layers * ss * bb + gen
                        steps = 1 if sub.rule == "first_token" else sub.max_new_tokens
                        c.passes += 1 + chunks * steps
                        g = min(n_tables, sub.settings_per_pass)
                        c.peak_bytes = max(c.peak_bytes, weights + max(
                            memory.forward_bytes(dims, bb, ss, 0, memory.n_patches(pb), cache=True),
                            memory.kv_bytes(dims, bb, ss, n_layers)
                            + memory.pass_bytes(dims, bb, ss, p0, g, 0, 0)))
            total.variants = c.variants
            total.add(c)
        if len(combos) > 1:
            total.notes.append(f"{len(combos)} sweep combinations")
        costs.append(total)

    if probe:
        tokens_per_s = probe_tokens_per_s(recipe, rows)
    out = {"model": recipe.model.id, "dtype": recipe.model.dtype, "layers": n_layers, "prompts": len(rows),
           "batches": len(batches), "batch_size": recipe.batch_size, "weights_bytes": weights,
           "mean_seq": sum(len(r.encoded.input_ids) for r in rows) / max(len(rows), 1),
           "forward_cells": forward_cells, "tokens_per_s": tokens_per_s, "analyses": []}
    for c in costs + [_total(costs)]:
        line = asdict(c)
        line["forward_equivalents_fast"] = c.cells_fast / forward_cells
        line["forward_equivalents_naive"] = c.cells_naive / forward_cells
        if tokens_per_s:
            line["seconds_fast"] = c.cells_fast / (tokens_per_s * n_layers)
            line["seconds_naive"] = c.cells_naive / (tokens_per_s * n_layers)
        out["analyses"].append(line)
    return out


def _total(costs: list[Cost]) -> Cost:
    t = Cost("total")
    for c in costs:
        t.add(c)
    t.variants = sum(c.variants for c in costs)
    return t


def probe_tokens_per_s(recipe, rows, n: int = 2) -> float:
    """Load the model for real and time plain forwards of the first batch (after a warm-up)."""
    from .models.loading import load_model

    m = recipe.model
    bundle = load_model(m.id, m.dtype, m.device, m.attn_implementation, m.revision)
    size = recipe.batch_size if isinstance(recipe.batch_size, int) else 8
    # rows were encoded against the meta-device model: encode the probe batch again with the real one
    encoded = [encode(bundle, r.prompt) for r in rows[: min(len(rows), size)]]
    batch = collate(encoded, bundle.adapter, bundle.pad_token_id)
    inputs = {k: v.to(bundle.device) if isinstance(v, torch.Tensor) else v for k, v in batch.inputs.items()}
    with torch.inference_mode():
        bundle.model(**inputs, logits_to_keep=1)
        start = time.perf_counter()
        for _ in range(n):
            bundle.model(**inputs, logits_to_keep=1)
        if bundle.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / n
    return batch.inputs["input_ids"].numel() / seconds


def format_report(est: dict) -> str:
    gib = 2**30
    head = (f"{est['model']} ({est['dtype']}, {est['layers']} layers, weights {est['weights_bytes'] / gib:.1f} GiB): "
            f"{est['prompts']} prompts, mean {est['mean_seq']:.0f} tokens, {est['batches']} batches of "
            f"{est['batch_size']}; one plain forward of every prompt = {est['forward_cells']:,} decoder cells")
    cols = ["analysis", "variants", "cells fast", "cells naive", "fwd-eq fast", "fwd-eq naive", "fast/naive",
            "peak GiB/batch"]
    if est["tokens_per_s"]:
        cols += ["time fast", "time naive"]
    lines = []
    for a in est["analyses"]:
        ratio = a["cells_fast"] / a["cells_naive"] if a["cells_naive"] else 0.0
        row = [a["analysis"], str(a["variants"]), f"{a['cells_fast']:,}", f"{a['cells_naive']:,}",
               f"{a['forward_equivalents_fast']:.1f}", f"{a['forward_equivalents_naive']:.1f}", f"{ratio:.3f}",
               f"{a['peak_bytes'] / gib:.1f}"]
        if est["tokens_per_s"]:
            row += [_hours(a["seconds_fast"]), _hours(a["seconds_naive"])]
        lines.append(row)
    widths = [max(len(c), *(len(r[i]) for r in lines)) for i, c in enumerate(cols)]
    text = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    text += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in lines]
    if est["tokens_per_s"]:
        text.append(f"time at {est['tokens_per_s']:,.0f} tokens/s (decoder cells ÷ (tokens/s × layers)); "
                    "generation counted at max_new_tokens, head tables as if every random draw differs (upper bounds)")
    return "\n".join(text)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.1f} s"
