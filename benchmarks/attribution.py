"""Attribution cost (docs/method.md §3.4–3.5: sublayer deltas + every head's score, the analysis's whole
run_batch) per prompt vs one plain HF forward of the same prompt (full logits, as `model(**inputs)`);
also vs the cheapest forward (`logits_to_keep=1`, which the attribution trace itself uses).

Each prompt alone (batch of 1), median of `--repeat` passes over all prompts after one warm-up, each
mode in its own process (its own peak RSS, model weights included). Prints a table and, last,
`ratio <attribution/forward>` for the Qwen2.5-VL-shaped model (target ≤ 1.3).

    python benchmarks/attribution.py [--samples N] [--repeat R]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import isolated, setup, table, timed, worker_main  # noqa: E402

from anchorlab.analyses import Context  # noqa: E402
from anchorlab.analyses.attribution import AttributionAnalysis, AttributionSpec  # noqa: E402
from anchorlab.rows.batching import collate  # noqa: E402

TARGET = 1.3


def measure(mode: str, model: str, n_samples: int) -> dict:
    bundle, backend, rows, _ = setup(model, n_samples)
    batches = [collate([r.encoded], bundle.adapter, bundle.pad_token_id) for r in rows]
    if mode == "attribution":
        analysis = AttributionAnalysis(AttributionSpec(kind="attribution"), Context(bundle, backend, seed=0))

        def work():
            return [analysis.run_batch(b, [r]) for b, r in zip(batches, rows)]
    else:  # forward: as a user calls it (logits at every position); forward_last: logits_to_keep=1
        keep = {"logits_to_keep": 1} if mode == "forward_last" else {}

        def work():
            return [bundle.model(**b.inputs, **keep).logits.shape for b in batches]

    timed(work)  # warm-up: first-call costs (allocator, nnsight set-up) are not per-prompt costs
    seconds, _ = timed(work, int(os.environ.get("ANCHORLAB_BENCH_REPEAT", "3")))
    seqs = [b.inputs["input_ids"].shape[1] for b in batches]
    p = [len(b.roles[0]["instruction"]) for b in batches]
    return {"seconds": seconds / len(rows), "prompts": len(rows), "seq": round(sum(seqs) / len(seqs)),
            "cells": bundle.n_layers * sum(seqs) // len(rows), "positions": round(sum(p) / len(p)),
            "layers": bundle.n_layers, "heads": bundle.n_heads, "vocab": bundle.model.get_output_embeddings().weight.shape[0]}


def bench(model: str, n_samples: int) -> dict:
    attr, fwd, last = (isolated(__file__, mode, model, n_samples) for mode in ("attribution", "forward", "forward_last"))
    return {"analysis": "attribution", "model": model, "shape": f"{attr['layers']}L×{attr['heads']}H V={attr['vocab']}",
            "prompts": attr["prompts"], "seq": attr["seq"], "P": attr["positions"],
            "fast_s": f"{attr['seconds']:.3f}", "baseline": "plain forward", "baseline_s": f"{fwd['seconds']:.3f}",
            "ratio": round(attr["seconds"] / fwd["seconds"], 2), "target": f"<= {TARGET}",
            "last_only_s": f"{last['seconds']:.3f}", "ratio_last_only": round(attr["seconds"] / last["seconds"], 2),
            "peak_last_only_mib": last["peak_rss_mib"],
            "cells_fast": attr["cells"], "cells_baseline": fwd["cells"],
            "peak_fast_mib": attr["peak_rss_mib"], "peak_baseline_mib": fwd["peak_rss_mib"]}


def run(samples: int = 2) -> list[dict]:
    return [bench("toy", samples), bench("qwen_shaped", samples)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["ANCHORLAB_BENCH_REPEAT"] = str(args.repeat)  # read by the worker processes
    results = run(args.samples)
    print(table(results, ["model", "shape", "prompts", "seq", "P", "baseline_s", "last_only_s", "fast_s", "ratio",
                          "ratio_last_only", "target", "cells_baseline", "cells_fast", "peak_baseline_mib",
                          "peak_last_only_mib", "peak_fast_mib"]))
    print("fast = attribution (run_batch), baseline = plain forward (logits at every position), last_only = plain "
          "forward with logits_to_keep=1; seconds per prompt (median); peak = the measuring process's peak RSS in "
          "MiB (weights included); cells = decoder layer × position per prompt")
    print(f"ratio {results[-1]['ratio']:.2f}")


if __name__ == "__main__" and not worker_main(measure):
    main()
