"""`python -m benchmarks --gpu` in its reduced CPU form (tiny model), and the GPU path's model
construction on the meta device (no GPU here)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def test_reduced_gpu_benchmark_runs_every_measurement():
    import gpu

    rows = gpu.run(reduced=True)
    whats = [r["what"] for r in rows]
    assert any(w.startswith("knockout sweep") for w in whats) and any(w.startswith("head sweep") for w in whats)
    assert any(w.startswith("attribution") for w in whats)
    knock = rows[0]
    assert float(knock["what"].rsplit(" ", 1)[-1]) < 1e-4  # fast == naive
    assert knock["cells_fast"] < 0.5 * knock["cells_baseline"]


@pytest.mark.parametrize("name", ["qwen2.5-vl-7b", "llava-1.5-7b", "internvl3-8b"])
def test_full_depth_shapes_build_on_a_device(name):
    import gpu

    bundle = gpu.random_bundle(name, "meta")
    assert bundle.n_layers == (32 if name.startswith("llava") else 28)
    assert bundle.lm_config._attn_implementation == "sdpa"
