"""Head patching sweep (kind: head_patching), fast path vs naive (one full forward per head), in one run.

Every (layer, head) patched at the instruction positions from the instruction-swapped twin, exact
engines only (attribution patching costs both the same: one forward and one backward), on the shipped
toy and on a Qwen2.5-VL-shaped model (12 layers × 16 heads, 256 image tokens, an MC²-length context,
instruction after the context). Prints a table and, last, `ratio <fast/naive>` (time) for the
Qwen2.5-VL-shaped model (target ≤ 0.15). Decoder cells (layer × position × row, padding included)
are the measure of work that timing noise cannot move; `max_abs_diff` is fast vs naive.

Cells per prompt of S positions, L layers, H heads, patched positions from p0 on (both engines also
run the twin's and the clean pass, 2·L·S):

    naive  L·H · L·S
    fast   H · (S - p0) · Σ_l (L - l) = H · (S - p0) · L(L+1)/2
    ratio  ≈ (L+1)/(2L) · (S - p0)/S + 2/(L·H)

At the paper's shape (Qwen2.5-VL-7B: L = 28, H = 28, ~1,200 tokens per prompt), with MC²'s layout
(instruction after the image and the context, so S - p0 ≈ 40 tokens of instruction, question and
template tail): naive 784 · 28 · 1,200 = 26.3 M cells per prompt, fast 28 · 40 · 406 + 2 · 28 · 1,200 =
0.52 M, a cells ratio of 0.020. The suffix share dominates: with the instruction first
(`instruction_position: before_context`, S - p0 ≈ 940 after 256 image tokens) the ratio is
0.52 · 0.78 + 0.003 ≈ 0.41, the layer skipping's half alone.

    python benchmarks/patching.py [--samples N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fast_vs_naive, setup, table, timed, worker_main  # noqa: E402

from anchorlab.analyses.head_patching import patch_pairs, twin_batch  # noqa: E402
from anchorlab.engines.head_patch import HeadPatchEngine  # noqa: E402
from anchorlab.rows.prompts import PromptStyle  # noqa: E402

TARGET = 0.15


def measure(mode: str, model: str, n_samples: int) -> dict:
    bundle, backend, rows, batch = setup(model, n_samples)
    twins = twin_batch(bundle, rows, PromptStyle())
    dst, src, valid = patch_pairs(batch, twins, rows, "instruction", "right")
    engine = HeadPatchEngine(bundle, backend, mode, bundle.n_heads)
    seconds, run_ = timed(lambda: engine.run(batch, twins, rows, dst, src, valid))
    s = batch.inputs["input_ids"].shape[1]
    return {"seconds": seconds, "cells": run_.cells, "logits": run_.logits.tolist(), "prompts": len(rows), "seq": s,
            "suffix": s - int(dst[valid].min()), "heads": bundle.n_layers * bundle.n_heads}


def bench(model: str, n_samples: int) -> dict:
    return fast_vs_naive(__file__, "head patching", model, n_samples, TARGET, ("prompts", "seq", "suffix", "heads"))


def run(samples: int = 2) -> list[dict]:
    return [bench("toy", samples), bench("qwen_shaped", samples)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2, help="samples per model (each gives a vf and a tf prompt)")
    results = run(parser.parse_args().samples)
    print(table(results, ["model", "prompts", "seq", "suffix", "heads", "baseline_s", "fast_s", "ratio",
                          "cells_baseline", "cells_fast", "cells_ratio", "peak_baseline_mib", "peak_fast_mib",
                          "max_abs_diff"]))
    print(f"ratio {results[-1]['ratio']:.3f}")


if __name__ == "__main__" and not worker_main(measure):
    main()
