"""`batch_size: auto` with a `memory_budget` (issue 13): prompts per batch and, for knockout,
variants per pass, chosen from the memory model (engines/memory.py) so that no batch is predicted to
add more than the budget to the loaded model.

The budget is what the work may add beyond the weights: `memory_budget` ("512MiB", "2GiB", "1.5GB"
or bytes), default 90% of the device's free memory after loading (CUDA: torch.cuda.mem_get_info;
CPU: half of MemAvailable). Batches are sized on the longest prompts (rows are batched by length,
so every other batch is shorter), trying 64, 32, ..., 1 prompts and, for knockout, 16, 8, ..., 1
variants per pass; if even one prompt with one variant does not fit, the run stops with the
predicted need.

A batch may use BATCH_SHARE of the budget: the rest is for what the memory model leaves out and a
run holds throughout (the interpreter's objects, the results gathered so far, heap slack; measured
on CPU: 17-37 MiB above the loaded model between batches, 10-20% of a 320 MiB budget).
"""
from __future__ import annotations

import re

import torch

from ..errors import UserError
from ..rows.batching import collate
from . import memory

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
BATCHES = (64, 32, 16, 8, 4, 2, 1)
PER_PASS = (16, 8, 4, 2, 1)
BATCH_SHARE = 0.8


def parse_bytes(value) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in UNITS:
        raise UserError(f"memory_budget {value!r}: write bytes or a size such as 512MiB, 2GiB, 1.5GB")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def default_budget(bundle) -> int:
    dev = bundle.device
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(0.9 * free)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024 // 2
    except (OSError, KeyError, ValueError):
        return 4 * 2**30


def predicted_bytes(bundle, analysis, batch, rows, per_pass: int = 1) -> int:
    """Bytes one batch adds beyond the weights: the analysis's own `batch_bytes`, or (None) the
    follow-label pass, one greedy generation."""
    if analysis is None:
        return memory.plain_forward_bytes(bundle, batch, 1, cache=True)
    return analysis.batch_bytes(batch, rows, per_pass)


def choose(bundle, rows, analysis, budget: int) -> tuple[int, int]:
    """(prompts per batch, variants per pass) for `analysis` (None: the label pass) under `budget` bytes;
    the per-pass range is tried only where the analysis has a `pass_knob` that matters."""
    room = int(budget * BATCH_SHARE)
    longest = sorted(rows, key=lambda r: len(r.encoded.input_ids), reverse=True)
    passes = PER_PASS if analysis is not None and analysis.uses_passes() else (1,)
    need = None
    for n in BATCHES:
        if n > len(rows) and n != 1:
            continue
        chunk = longest[:n]
        batch = collate([r.encoded for r in chunk], bundle.adapter, bundle.pad_token_id)
        for g in passes:
            need = predicted_bytes(bundle, analysis, batch, chunk, g)
            if need <= room:
                return n, g
    what = analysis.spec.name or analysis.kind if analysis is not None else "labels"
    raise UserError(f"memory_budget: {budget / 2**20:.0f} MiB leaves {room / 2**20:.0f} MiB for a batch "
                    f"({BATCH_SHARE:.0%}), less than one prompt needs ({need / 2**20:.0f} MiB predicted for "
                    f"{what}); raise memory_budget")
