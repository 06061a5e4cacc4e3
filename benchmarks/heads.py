"""Head-intervention sweep cost, fast path (prefix KV cache reused across settings, settings
batched) vs naive (every setting re-runs the prompt and its generation), in one run.

A blocking sweep like the paper's: G ∈ {1, 4, 8, 16} × (targeted, 3 random seeds, 3 layer-matched
seeds, shared) + original, at instruction positions, decided by greedy generation (4 new tokens).
Prints a table and, last, `ratio <fast/naive>` for the Qwen2.5-VL-shaped model (target ≤ 0.5).

    python benchmarks/heads.py [--samples N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import isolated, setup, table, timed, worker_main  # noqa: E402

from anchorlab.engines.head_sweep import HeadEngine  # noqa: E402
from anchorlab.interventions.head_scaling import layer_matched_heads, random_heads, scale_table  # noqa: E402

TARGET = 0.5
MAX_NEW_TOKENS = 4


def sweep_tables(n_layers: int, n_heads: int) -> torch.Tensor:
    tables = [torch.ones(n_layers, n_heads)]
    # a stand-in ranking spread over the four deepest layers, as attribution rankings tend to be
    ranked = [(n_layers - 1 - i % 4, i // 4) for i in range(4 * n_heads)]
    for g in (1, 4, 8, 16):
        targeted = ranked[:g]
        sets = [targeted, ranked[g : 2 * g]]
        sets += [random_heads(g, n_layers, n_heads, s, set(targeted)) for s in range(3)]
        sets += [layer_matched_heads(targeted, n_heads, s, set(targeted)) for s in range(3)]
        tables += [scale_table(h, 0.0, n_layers, n_heads) for h in sets]
    return torch.stack(tables)


def measure(mode: str, model: str, n_samples: int) -> dict:
    bundle, backend, rows, batch = setup(model, n_samples)
    tables = sweep_tables(bundle.n_layers, bundle.n_heads)
    engine = HeadEngine(bundle, backend, mode)
    seconds, run_ = timed(lambda: engine.run(batch, rows, tables, "instruction", "generation", MAX_NEW_TOKENS))
    return {"seconds": seconds, "cells": run_.cells, "tokens": run_.tokens, "prompts": len(rows),
            "seq": batch.inputs["input_ids"].shape[1], "settings": len(tables)}


def bench(model: str, n_samples: int) -> dict:
    fast, naive = (isolated(__file__, mode, model, n_samples) for mode in ("fast", "naive"))
    return {"analysis": "head sweep", "model": model, "prompts": fast["prompts"], "seq": fast["seq"],
            "settings": fast["settings"], "fast_s": f"{fast['seconds']:.2f}", "baseline": "naive",
            "baseline_s": f"{naive['seconds']:.2f}", "ratio": round(fast["seconds"] / naive["seconds"], 3),
            "target": f"<= {TARGET}", "cells_fast": fast["cells"], "cells_baseline": naive["cells"],
            "cells_ratio": f"{fast['cells'] / naive['cells']:.3f}", "peak_fast_mib": fast["peak_rss_mib"],
            "peak_baseline_mib": naive["peak_rss_mib"], "same_answers": fast["tokens"] == naive["tokens"]}


def run(samples: int = 2) -> list[dict]:
    return [bench("toy", samples), bench("qwen_shaped", samples)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2)
    results = run(parser.parse_args().samples)
    print(table(results, ["model", "prompts", "seq", "settings", "baseline_s", "fast_s", "ratio", "cells_baseline",
                          "cells_fast", "cells_ratio", "peak_baseline_mib", "peak_fast_mib", "same_answers"]))
    print(f"ratio {results[-1]['ratio']:.3f}")


if __name__ == "__main__" and not worker_main(measure):
    main()
