"""`anchorlab estimate --probe` against the run it prices (issue 13: time within ±25% on CPU).

For each recipe: the estimate with its probe, then the run itself (`anchorlab.run`, in a temporary
folder) in a fresh process, as a user runs it (in the estimate's process it would find every first
call already paid). Compared per step (labels and every analysis: the result's `compute_seconds`
and `passes` attrs) and in total (the run's wall time less the figures, which the estimate does not
price). Prints a table and, last, `ratio X`: estimated ÷ measured total of the recipe farthest from 1.

    python benchmarks/estimate_accuracy.py [RECIPE ...] [--set KEY=VALUE ...] [--repeat N]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["recipes/knockout.yaml", "recipes/attribution.yaml", "recipes/heads_block.yaml", "recipes/heads_amplify.yaml"]


def run_once(recipe: str, overrides: list[str]) -> dict:
    """The run as a user's fresh process makes it (first calls and caches paid here, not by the
    estimate before it): wall time of `anchorlab.run`, its figures' share, every step's attrs."""
    from anchorlab.run import executor
    from anchorlab.api import run

    figures = []
    draw = executor.Run.draw

    def timed_draw(self, ds, name):
        start = time.perf_counter()
        try:
            return draw(self, ds, name)
        finally:
            figures.append(time.perf_counter() - start)

    executor.Run.draw = timed_draw
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        results = run(ROOT / recipe, out=out, overrides=overrides, force=True)
        wall = time.perf_counter() - start
        labels = Path(out) / "labels.nc"
        steps = {"labels": xr.load_dataset(labels).attrs if labels.exists() else None}
    steps.update({name: ds.attrs for name, ds in results.items()})
    keep = ("compute_seconds", "passes", "decoder_cells")
    steps = {k: {a: _plain(v[a]) for a in keep if a in v} if v else None for k, v in steps.items()}
    return {"wall_s": wall, "figures_s": sum(figures), "steps": steps}


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def measure(recipe: str, overrides: list[str]) -> dict:
    from anchorlab.estimate import estimate_recipe

    est = estimate_recipe(ROOT / recipe, overrides, probe=True)
    cmd = [sys.executable, __file__, "--run-only", recipe] + [a for o in overrides for a in ("--set", o)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    steps, wall, figures = measured["steps"], measured["wall_s"], measured["figures_s"]
    lines = []
    for a in est["analyses"][:-1]:
        key = "labels" if a["analysis"].startswith("labels") else a["analysis"]
        attrs = steps.get(key) or {}
        lines.append({"step": a["analysis"], "estimated_s": a["seconds_run"],
                      "measured_s": attrs.get("compute_seconds", float("nan")),
                      "passes_est": a[f"timed_passes_{a['engine']}"], "passes_run": attrs.get("passes", "-"),
                      "cells_est": a[f"timed_cells_{a['engine']}"], "cells_run": attrs.get("decoder_cells", "-"),
                      "per_pass": a.get("seconds_per_pass", 0.0), "steps": a.get("generation_steps", 1)})
    total = est["analyses"][-1]["seconds_run"]
    return {"recipe": recipe, "estimated_s": total, "measured_s": wall - figures, "wall_s": wall,
            "figures_s": figures, "probe": est["probe"], "steps": lines}


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(prog="python benchmarks/estimate_accuracy.py")
    parser.add_argument("recipes", nargs="*", default=RECIPES)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--repeat", type=int, default=1, help="measure each recipe N times, report the median ratio")
    parser.add_argument("--run-only", action="store_true", help=argparse.SUPPRESS)  # the measured run's own process
    args = parser.parse_args(argv)
    # one thread by default: on a shared 2-core machine more threads make timings erratic
    torch.set_num_threads(int(os.environ.get("ANCHORLAB_BENCH_THREADS", "1")))
    if args.run_only:
        print(json.dumps(run_once(args.recipes[0], args.overrides)))
        return 1.0
    worst = 1.0
    for recipe in args.recipes:
        ratios = []
        for _ in range(args.repeat):
            m = measure(recipe, args.overrides)
            p = m["probe"]
            print(f"{recipe}: probe {p['seconds_per_pass'] * 1e3:.1f} ms/pass + {p['seconds_per_cell'] * 1e9:.0f} "
                  f"ns/cell, generation {p['generation_steps']} steps")
            for s in m["steps"]:
                ratio = s["estimated_s"] / s["measured_s"]
                print(f"  {s['step']:24s} estimated {s['estimated_s']:7.2f} s  measured {s['measured_s']:7.2f} s  "
                      f"ratio {ratio:.2f}  passes {s['passes_est']} / run {s['passes_run']}  "
                      f"cells {s['cells_est']} / run {s['cells_run']}  ({s['per_pass'] * 1e3:.1f} ms/pass, "
                      f"{s['steps']:.2f} generation steps)")
            ratio = m["estimated_s"] / m["measured_s"]
            ratios.append(ratio)
            print(f"  total: estimated {m['estimated_s']:.2f} s, measured {m['measured_s']:.2f} s (wall {m['wall_s']:.2f} s "
                  f"less figures {m['figures_s']:.2f} s): ratio {ratio:.3f}", flush=True)
        ratio = statistics.median(ratios)
        print(f"{recipe}: ratio {ratio:.3f}" + (f" (median of {len(ratios)})" if len(ratios) > 1 else ""))
        if abs(math.log(ratio)) > abs(math.log(worst)):
            worst = ratio
    print(f"ratio {worst:.3f}")
    return worst


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
