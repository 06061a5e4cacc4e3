"""Peak memory of the fast knockout sweep vs one plain forward of the same batch, on the real
Qwen2.5-VL-7B shape (full width 3584, 28 heads / 4 KV heads, vocabulary 152,064) with 2 decoder
layers and 1 vision layer, in bf16 with sdpa, on prompts of >= 1,000 tokens (an 896×896 image is
1,024 vision tokens under Qwen2.5-VL's dynamic resolution, plus an MC² context).

Each mode runs in its own process. `peak` is the process's peak RSS (weights included, as a GPU's
peak allocated memory would be); `base` is its RSS after the model is loaded, every weight paged in
(checkpoints are memory-mapped: a weight never read, such as the lm_head the fast sweep skips, would
otherwise never count) and the batch encoded, so `peak - base` is what the work itself added. Modes: `forward` = `model(**batch)` (what a user
calls: logits at every position), `forward_last` = the same with `logits_to_keep=1`, `fast` = the
fast knockout sweep (the 8 default pathways × every centre layer, window 3, 16 variants per pass),
`predicted` = the memory model (anchorlab/engines/memory.py) for the same sweep. Prints a table,
then last `ratio X` = peak(fast) / peak(forward) (target <= 1.5).

    python benchmarks/memory.py [--samples N] [--image PX] [--layers L]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import isolated, mc2_samples, table, timed, worker_main  # noqa: E402

TARGET = 1.5
SHAPE = "qwen2.5-vl-7b"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def setup(n_samples: int, side: int, layers: int):
    from anchorlab.backends import LocalBackend
    from anchorlab.rows.batching import collate
    from anchorlab.rows.compiler import compile_rows
    from anchorlab.models.loading import load_model
    from anchorlab.models.shapes import shape_path
    from anchorlab.rows.prompts import PromptStyle

    bundle = load_model(str(shape_path(SHAPE, layers=layers, vision_layers=1)), dtype="bfloat16")
    rows = compile_rows(bundle, mc2_samples(n_samples, side), ["vf", "tf"], PromptStyle())
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    return bundle, LocalBackend(bundle), rows, batch


def sweep_args(bundle):
    from anchorlab.analyses.knockout import DEFAULT_PATHWAYS
    from anchorlab.interventions.knockout import parse_pathway

    return [(p, *parse_pathway(p)) for p in DEFAULT_PATHWAYS], list(range(bundle.n_layers)), 3


def measure(mode: str, model: str, n_samples: int) -> dict:
    side, layers = (int(x) for x in model.split("x"))
    bundle, backend, rows, batch = setup(n_samples, side, layers)
    with torch.inference_mode():  # page every weight in (safetensors are memory-mapped): all modes start from
        for p in bundle.model.parameters():  # the same resident weights, as on a GPU
            p.sum()
    base = rss_mib()
    pathways, centres, width = sweep_args(bundle)
    if mode == "fast":
        from anchorlab.engines.knockout import KnockoutEngine

        engine = KnockoutEngine(bundle, backend, "fast")
        seconds, sweep = timed(lambda: engine.sweep(batch, rows, pathways, centres, width))
        extra = {"cells": sweep.cells}
    elif mode == "predicted":
        from anchorlab.engines.knockout import KnockoutPlan
        from anchorlab.engines.memory import knockout_fast_peak, plain_forward_bytes

        seconds = 0.0
        plan = KnockoutPlan.of(pathways, centres, width, bundle.n_layers)
        extra = {"predicted_fast_mib": knockout_fast_peak(bundle, batch, rows, plan, 16) / 2**20,
                 "predicted_forward_mib": plain_forward_bytes(bundle, batch, batch.inputs['input_ids'].shape[1]) / 2**20,
                 "weights_mib": sum(p.numel() * p.element_size() for p in bundle.model.parameters()) / 2**20}
    else:
        keep = {"logits_to_keep": 1} if mode == "forward_last" else {}
        seconds, _ = timed(lambda: bundle.model(**batch.inputs, **keep).logits.shape)
        extra = {}
    return {"seconds": seconds, "base_rss_mib": round(base), "prompts": len(rows),
            "seq": batch.inputs["input_ids"].shape[1], **extra}


def run(samples_: int = 1, side: int = 896, layers: int = 2) -> list[dict]:
    model = f"{side}x{layers}"
    res = {mode: isolated(__file__, mode, model, samples_) for mode in ("forward", "forward_last", "fast", "predicted")}
    fwd, last, fast, pred = res["forward"], res["forward_last"], res["fast"], res["predicted"]
    act = lambda r: r["peak_rss_mib"] - r["base_rss_mib"]  # noqa: E731
    return [{
        "analysis": "memory: knockout sweep", "model": f"{SHAPE} {layers}L bf16", "prompts": fast["prompts"],
        "seq": fast["seq"], "fast_s": f"{fast['seconds']:.1f}", "baseline": "plain forward",
        "baseline_s": f"{fwd['seconds']:.1f}", "peak_fast_mib": fast["peak_rss_mib"],
        "peak_baseline_mib": fwd["peak_rss_mib"], "peak_forward_last_mib": last["peak_rss_mib"],
        "added_fast_mib": act(fast), "added_baseline_mib": act(fwd), "added_forward_last_mib": act(last),
        "ratio": round(fast["peak_rss_mib"] / fwd["peak_rss_mib"], 3),
        "ratio_vs_forward_last": round(fast["peak_rss_mib"] / last["peak_rss_mib"], 3),
        "added_ratio": round(act(fast) / max(act(fwd), 1), 3),
        "added_ratio_vs_forward_last": round(act(fast) / max(act(last), 1), 3),
        "predicted_added_fast_mib": round(pred["predicted_fast_mib"]),
        "predicted_added_baseline_mib": round(pred["predicted_forward_mib"]),
        "target": f"<= {TARGET}", "cells_fast": fast["cells"],
    }]


COLUMNS = ["model", "prompts", "seq", "peak_baseline_mib", "peak_forward_last_mib", "peak_fast_mib",
           "added_baseline_mib", "added_forward_last_mib", "added_fast_mib", "predicted_added_baseline_mib",
           "predicted_added_fast_mib", "ratio", "ratio_vs_forward_last", "added_ratio", "added_ratio_vs_forward_last"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1, help="samples (each gives a vf and a tf prompt)")
    parser.add_argument("--image", type=int, default=896, help="image side in pixels (896: 1,024 vision tokens)")
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    results = run(args.samples, args.image, args.layers)
    print(table(results, COLUMNS))
    print("peak = process peak RSS (MiB, weights included); added = peak - RSS after loading and encoding; "
          "predicted = the memory model's added bytes")
    print(f"ratio {results[-1]['ratio']:.3f}")


if __name__ == "__main__" and not worker_main(measure):
    main()
