"""Knockout sweep, fast path vs naive (one full forward per variant), in one run.

All default pathways × every centre layer (window 3), on the shipped toy and on a Qwen2.5-VL-shaped
model (12 layers × 16 heads, 256 image tokens, an MC²-length context). Prints a table and, last,
`ratio <fast/naive>` for the Qwen2.5-VL-shaped model (target ≤ 0.10). Decoder cells (layer ×
position, padding included) are the noise-free measure of work.

    python benchmarks/knockout.py [--samples N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fast_vs_naive, setup, table, timed, worker_main  # noqa: E402

from anchorlab.analyses.knockout import DEFAULT_PATHWAYS  # noqa: E402
from anchorlab.engines.knockout import KnockoutEngine  # noqa: E402
from anchorlab.interventions.knockout import parse_pathway  # noqa: E402

TARGET = 0.10


def measure(mode: str, model: str, n_samples: int) -> dict:
    bundle, backend, rows, batch = setup(model, n_samples)
    pathways = [(p, *parse_pathway(p)) for p in DEFAULT_PATHWAYS]
    engine = KnockoutEngine(bundle, backend, mode)
    seconds, sweep = timed(lambda: engine.sweep(batch, rows, pathways, list(range(bundle.n_layers)), 3))
    return {"seconds": seconds, "cells": sweep.cells, "logits": sweep.logits.tolist(), "prompts": len(rows),
            "seq": batch.inputs["input_ids"].shape[1], "variants": len(pathways) * bundle.n_layers}


def bench(model: str, n_samples: int) -> dict:
    return fast_vs_naive(__file__, "knockout sweep", model, n_samples, TARGET, ("prompts", "seq", "variants"))


def run(samples: int = 2) -> list[dict]:
    return [bench("toy", samples), bench("qwen_shaped", samples)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2, help="samples per model (each gives a vf and a tf prompt)")
    results = run(parser.parse_args().samples)
    print(table(results, ["model", "prompts", "seq", "variants", "baseline_s", "fast_s", "ratio", "cells_baseline",
                          "cells_fast", "cells_ratio", "peak_baseline_mib", "peak_fast_mib", "max_abs_diff"]))
    print(f"ratio {results[-1]['ratio']:.3f}")


if __name__ == "__main__" and not worker_main(measure):
    main()
