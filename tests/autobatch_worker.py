"""Run RECIPE to OUT in this process and print JSON: RSS once the model is loaded and warmed up
(libraries imported, one trace run), the process's peak RSS after the run, and the batch sizes used.
Used by tests/test_autobatch.py (a fresh process, so the peak is this run's own)."""
import json
import resource
import sys

import torch


def rss_mib() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(recipe: str, out: str) -> None:
    torch.set_num_threads(1)
    import matplotlib.pyplot  # noqa: F401  (figures are drawn after each analysis)
    import xarray  # noqa: F401

    from anchorlab import executor
    from anchorlab.api import run

    real = executor.load_model
    seen = {}

    def load(*args, **kwargs):
        bundle = real(*args, **kwargs)
        with torch.inference_mode():
            for p in bundle.model.parameters():
                p.sum()  # weights resident (memory-mapped checkpoints)
            bundle.model(input_ids=torch.ones((1, 8), dtype=torch.long))
        seen["base"] = rss_mib()
        return bundle

    executor.load_model = load
    results = run(recipe, out=out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    used = {k: int(ds.attrs.get("batch_size_used", -1)) for k, ds in results.items()}
    print(json.dumps({"base_mib": seen["base"], "peak_mib": peak, "batch_size_used": used}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
