"""Data-parallel scaling: the same recipe run by one process and by `torchrun --nproc-per-node 2`,
each process on one CPU thread (OMP_NUM_THREADS=1), in fresh run folders.

`wall` is the whole command (start-up, model load, compute, writing results and figures): what a
user waits for. `compute` is the part that is split over the processes, from the log line after the
prompts are encoded (`data: ...`) to the last result written (`wrote ...nc`). Prints a table, then
last `ratio X` = wall(2 processes) / wall(1 process) (ideal 0.5; start-up does not shrink). With
`--repeat R` the two alternate R times and each column is the median (steadier on a busy machine).

    python benchmarks/distributed.py [--recipe recipes/knockout.yaml] [--samples 192] [--processes 2] [--repeat 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table  # noqa: E402


def timed_run(recipe: Path, samples: int, processes: int) -> dict:
    """Seconds of one `anchorlab run` (wall, and its compute phase from rank 0's log lines)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m"]
              if processes > 1 else [sys.executable, "-m"])
    with tempfile.TemporaryDirectory() as out:
        cmd = [*launch, "anchorlab", "run", str(recipe), "--out", out, "--set", f"data.n_samples={samples}"]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        begin = end = None
        for line in proc.stderr:  # log lines end in a newline; progress bars (\r) only on rank 0
            if "data: " in line and begin is None:
                begin = time.perf_counter()
            elif "wrote " in line and ".nc" in line:
                end = time.perf_counter()
        if proc.wait() != 0:
            raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode})")
        wall = time.perf_counter() - start
    return {"processes": processes, "wall_s": round(wall, 2),
            "compute_s": round(end - begin, 2) if begin and end else "-"}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python benchmarks/distributed.py")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "knockout.yaml")
    parser.add_argument("--samples", type=int, default=192, help="data.n_samples (each gives a vf and a tf prompt)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="alternate the two runs this many times, take medians")
    args = parser.parse_args(argv)
    runs: dict[int, list[dict]] = {1: [], args.processes: []}
    for _ in range(args.repeat):
        for n in runs:
            runs[n].append(timed_run(args.recipe, args.samples, n))
    one, many = ({"processes": n, **{k: statistics.median(r[k] for r in rs) if all(r[k] != "-" for r in rs) else "-"
                                     for k in ("wall_s", "compute_s")}} for n, rs in runs.items())
    for r in (one, many):
        r["wall_ratio"] = round(r["wall_s"] / one["wall_s"], 3)
        if r["compute_s"] != "-" and one["compute_s"] != "-":
            r["compute_ratio"] = round(r["compute_s"] / one["compute_s"], 3)
    print(f"{args.recipe.name}, data.n_samples={args.samples}, one thread per process, median of {args.repeat}")
    print(table([one, many], ["processes", "wall_s", "compute_s", "wall_ratio", "compute_ratio"]))
    print(f"ratio {many['wall_s'] / one['wall_s']:.3f}")
    return [one, many]


if __name__ == "__main__":
    main()
