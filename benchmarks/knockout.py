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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import setup, table, timed  # noqa: E402

from anchorlab.analyses.knockout import DEFAULT_PATHWAYS  # noqa: E402
from anchorlab.engines.knockout import KnockoutEngine  # noqa: E402
from anchorlab.interventions.knockout import parse_pathway  # noqa: E402

TARGET = 0.10


def bench(model: str, n_samples: int) -> dict:
    bundle, backend, rows, batch = setup(model, n_samples)
    pathways = [(p, *parse_pathway(p)) for p in DEFAULT_PATHWAYS]
    centres = list(range(bundle.n_layers))
    sweep = lambda mode: KnockoutEngine(bundle, backend, mode).sweep(batch, rows, pathways, centres, 3)  # noqa: E731
    t_fast, fast = timed(lambda: sweep("fast"))
    t_naive, naive = timed(lambda: sweep("naive"))
    err = float((fast.logits - naive.logits).abs().max())
    return {"model": model, "layers": bundle.n_layers, "prompts": len(rows), "seq": batch.inputs["input_ids"].shape[1],
            "variants": len(pathways) * len(centres), "naive_s": f"{t_naive:.2f}", "fast_s": f"{t_fast:.2f}",
            "ratio": f"{t_fast / t_naive:.3f}", "cells_naive": naive.cells, "cells_fast": fast.cells,
            "cells_ratio": f"{fast.cells / naive.cells:.3f}", "max_abs_diff": f"{err:.1e}", "_ratio": t_fast / t_naive}


def main() -> float:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2, help="samples per model (each gives a vf and a tf prompt)")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = [bench("toy", args.samples), bench("qwen_shaped", args.samples)]
    print(table(results, ["model", "layers", "prompts", "seq", "variants", "naive_s", "fast_s", "ratio",
                          "cells_naive", "cells_fast", "cells_ratio", "max_abs_diff"]))
    ratio = results[-1]["_ratio"]
    print(f"target ≤ {TARGET} on qwen_shaped: {'met' if ratio <= TARGET else 'NOT met'}")
    print(f"ratio {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
