"""Run RECIPE to OUT in this process and print JSON: RSS once the model is loaded and warmed up
(libraries imported, one trace run, weights copied out of their memory map so the kernel cannot drop
and re-fault them), the peak RSS since then (VmHWM, reset at that point), and the batch sizes used.
Used by tests/test_autobatch.py (a fresh process, so the peak is this run's own)."""
import gc
import json
import sys

import torch


def rss_mib() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_since_reset_mib() -> float:
    """VmHWM: the peak RSS since the last clear_refs reset (ru_maxrss would include the loading)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def main(recipe: str, out: str) -> None:
    torch.set_num_threads(1)
    import matplotlib.pyplot  # noqa: F401  (figures are drawn after each analysis)
    import xarray  # noqa: F401

    from anchorlab.api import run
    from anchorlab.run import executor

    real = executor.load_model
    seen = {}

    def load(*args, **kwargs):
        bundle = real(*args, **kwargs)
        with torch.inference_mode():
            for p in bundle.model.parameters():
                # weights resident and unevictable: a copy in anonymous memory, not memory-mapped file pages
                # (under memory pressure the kernel drops mapped pages before `base` and faults them back in
                # during the run, which would count the weights against the budget)
                p.data = p.data.clone()
            bundle.model(input_ids=torch.ones((1, 8), dtype=torch.long))
        gc.collect()
        with open("/proc/self/clear_refs", "w") as fh:  # reset the kernel's peak-RSS mark (VmHWM) to now
            fh.write("5")
        seen["base"] = rss_mib()
        return bundle

    executor.load_model = load
    results = run(recipe, out=out)
    peak = peak_since_reset_mib()
    used = {k: int(ds.attrs.get("batch_size_used", -1)) for k, ds in results.items()}
    print(json.dumps({"base_mib": seen["base"], "peak_mib": peak, "batch_size_used": used}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
