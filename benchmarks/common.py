"""Shared benchmark set-up: the toy model and a Qwen2.5-VL-shaped model with real proportions."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anchorlab.backends import LocalBackend
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import compile_rows
from anchorlab.data.sample import ConflictSample
from anchorlab.models.loading import load_model
from anchorlab.models.tiny import tiny_model_path
from anchorlab.rows.prompts import PromptStyle

MC2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "mc2" / "evaluate_final.json"
# ≥ 12 LM layers × 16 heads, vocabulary ≥ 32k, a 448×448 image = 256 image tokens
QWEN_SHAPE = dict(num_layers=12, num_heads=16, hidden_size=256, vocab_size=32768, image_size=448, patch_size=14)


def mc2_samples(n: int, side: int = 448) -> list[ConflictSample]:
    """MC²-length text (context, question, answers) around a side×side stand-in image."""
    records = json.loads(MC2.read_text()) if MC2.exists() else []
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        r = records[i * 250 % len(records)] if records else {
            "question": "What are the sheep doing?", "answer_vision": "eating", "answer_text": "playing",
            "context": "Several sheep are playfully bounding around in a field beside a road. " * 4}
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        out.append(ConflictSample(id=f"mc2-{i}", question=r["question"], context=r["context"],
                                  answer_vision=r["answer_vision"], answer_text=r["answer_text"],
                                  image=Image.fromarray(pixels)))
    return out


def setup(model: str, n_samples: int, attn: str = "sdpa"):
    """(bundle, backend, rows, batch) for `toy` or `qwen_shaped`."""
    if model == "toy":
        from anchorlab.data.toy import generate_samples

        bundle = load_model("toy:arbiter", attn_implementation=attn)
        samples = generate_samples(n_samples, seed=123)
    else:
        bundle = load_model(str(tiny_model_path("qwen2_5_vl", **QWEN_SHAPE)), attn_implementation=attn)
        samples = mc2_samples(n_samples)
    rows = compile_rows(bundle, samples, ["vf", "tf"], PromptStyle())
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    return bundle, LocalBackend(bundle), rows, batch


def isolated(script: str, mode: str, model: str, samples: int) -> dict:
    """Run one measurement in a fresh process (`script --worker MODE MODEL SAMPLES` prints JSON), so
    its peak memory is its own: peak RSS of the whole process, model weights included."""
    import subprocess

    out = subprocess.run([sys.executable, script, "--worker", mode, model, str(samples)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker_main(work) -> bool:
    """In a benchmark script: if called as a worker, run `work(mode, model, samples)` -> dict, add
    the process's peak RSS (MiB) and print it as JSON. Returns whether it did."""
    if len(sys.argv) < 2 or sys.argv[1] != "--worker":
        return False
    import os

    # one thread by default: on a shared 2-core machine more threads make timings erratic (set
    # ANCHORLAB_BENCH_THREADS to use more on a machine of your own)
    torch.set_num_threads(int(os.environ.get("ANCHORLAB_BENCH_THREADS", "1")))
    result = work(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent that spawned this worker
    with open("/proc/self/status") as fh:
        result["peak_rss_mib"] = round(next(int(x.split()[1]) for x in fh if x.startswith("VmHWM:")) / 1024)
    print(json.dumps(result, default=str))
    return True


def timed(fn, repeat: int = 1):
    """(median seconds, last result)."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        with torch.inference_mode():
            result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


# the columns of the one benchmark table (`python -m benchmarks`, `anchorlab bench`)
COLUMNS = ["analysis", "model", "fast_s", "baseline", "baseline_s", "ratio", "target", "cells_fast",
           "cells_baseline", "peak_fast_mib", "peak_baseline_mib"]  # peak: the measuring process's peak RSS


def table(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, "-"))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "-")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def fast_vs_naive(script: str, analysis: str, model: str, n_samples: int, target: float, keys: tuple) -> dict:
    """One table row: the script's fast and naive engines, each in a fresh process, on the same prompts;
    `keys` are worker facts copied from the fast run (seq, variants, ...)."""
    import numpy as np

    fast, naive = (isolated(script, mode, model, n_samples) for mode in ("fast", "naive"))
    err = float(np.abs(np.array(fast["logits"]) - np.array(naive["logits"])).max())
    return {"analysis": analysis, "model": model, **{k: fast[k] for k in keys},
            "fast_s": f"{fast['seconds']:.2f}", "baseline": "naive", "baseline_s": f"{naive['seconds']:.2f}",
            "ratio": round(fast["seconds"] / naive["seconds"], 3), "target": f"<= {target}",
            "cells_fast": fast["cells"], "cells_baseline": naive["cells"],
            "cells_ratio": f"{fast['cells'] / naive['cells']:.3f}", "peak_fast_mib": fast["peak_rss_mib"],
            "peak_baseline_mib": naive["peak_rss_mib"], "max_abs_diff": f"{err:.1e}"}
