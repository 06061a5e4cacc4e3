"""Run every benchmark and print one table (analysis, model, fast, baseline, ratio, target, cells,
peak memory); also written as JSON (default outputs/bench.json).

    python -m benchmarks [--samples N] [--json PATH] [--only knockout,attribution]
    python -m benchmarks --gpu [--reduced] [--shapes ...]   # benchmarks/gpu.py: full-depth real shapes in bf16
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
BENCHMARKS = ("knockout", "attribution", "heads", "patching")  # module names under benchmarks/, in this order


def main(argv=None) -> list[dict]:
    from common import table

    argv = sys.argv[1:] if argv is None else list(argv)
    if "--gpu" in argv:
        import gpu

        return gpu.main([a for a in argv if a != "--gpu"])
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--json", type=Path, default=HERE.parent / "outputs" / "bench.json")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHMARKS if not args.only or b in args.only.split(",")]
    rows = []
    for name in chosen:
        if not (HERE / f"{name}.py").exists():
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        rows.extend(importlib.import_module(name).run(args.samples))
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2, default=str))
    print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
