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
from common import PeakMemory, setup, table, timed  # noqa: E402

from anchorlab.analyses.knockout import DEFAULT_PATHWAYS  # noqa: E402
from anchorlab.engines.knockout import KnockoutEngine  # noqa: E402
from anchorlab.interventions.knockout import parse_pathway  # noqa: E402

TARGET = 0.10


def bench(model: str, n_samples: int) -> dict:
    bundle, backend, rows, batch = setup(model, n_samples)
    pathways = [(p, *parse_pathway(p)) for p in DEFAULT_PATHWAYS]
    centres = list(range(bundle.n_layers))

    def sweep(mode):
        return KnockoutEngine(bundle, backend, mode).sweep(batch, rows, pathways, centres, 3)

    with PeakMemory() as mem_fast:
        t_fast, fast = timed(lambda: sweep("fast"))
    with PeakMemory() as mem_naive:
        t_naive, naive = timed(lambda: sweep("naive"))
    err = float((fast.logits - naive.logits).abs().max())
    return {"analysis": "knockout sweep", "model": model, "prompts": len(rows), "seq": batch.inputs["input_ids"].shape[1],
            "variants": len(pathways) * len(centres), "fast_s": f"{t_fast:.2f}", "baseline": "naive",
            "baseline_s": f"{t_naive:.2f}", "ratio": round(t_fast / t_naive, 3), "target": f"<= {TARGET}",
            "cells_fast": fast.cells, "cells_baseline": naive.cells, "cells_ratio": f"{fast.cells / naive.cells:.3f}",
            "peak_fast_mib": f"{mem_fast.mib:.0f}", "peak_baseline_mib": f"{mem_naive.mib:.0f}",
            "max_abs_diff": f"{err:.1e}"}


def run(samples: int = 2) -> list[dict]:
    return [bench("toy", samples), bench("qwen_shaped", samples)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2, help="samples per model (each gives a vf and a tf prompt)")
    results = run(parser.parse_args().samples)
    print(table(results, ["model", "prompts", "seq", "variants", "baseline_s", "fast_s", "ratio", "cells_baseline",
                          "cells_fast", "cells_ratio", "peak_baseline_mib", "peak_fast_mib", "max_abs_diff"]))
    print(f"ratio {results[-1]['ratio']:.3f}")


if __name__ == "__main__":
    main()
