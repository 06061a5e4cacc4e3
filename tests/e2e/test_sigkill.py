"""A knockout sweep killed with SIGKILL mid-way resumes to exactly the uninterrupted result."""
import os
import signal
import subprocess
import sys
import time

import pytest
import xarray as xr
import yaml

from anchorlab.run.executor import WORK_ATTRS

pytestmark = pytest.mark.slow  # a run in a subprocess, killed and resumed
TIME_ATTRS = {"started", "finished", *WORK_ATTRS}


def test_sigkill_then_resume_is_identical(tmp_path, random_toy_path):
    recipe = tmp_path / "ko.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"id": str(random_toy_path)}, "data": {"source": "toy", "n_samples": 8, "filter": "all"},
        "analyses": [{"kind": "knockout", "pathways": ["vision->last", "context->instruction", "vision->text"],
                      "n_bootstrap": 100}],
        "batch_size": 1, "seed": 3,
    }))
    cmd = [sys.executable, "-m", "anchorlab", "run", str(recipe)]
    subprocess.run([*cmd, "--out", str(tmp_path / "full")], check=True, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = out / ".chunks" / "knockout"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(chunks.glob("*.npz"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(chunks.glob("*.npz")))
    assert 3 <= done_before < 16, "the kill should land mid-sweep (16 batches in all)"
    assert not (out / "knockout.nc").exists()

    resumed = subprocess.run([*cmd, "--out", str(out), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = xr.load_dataset(tmp_path / "full" / "knockout.nc"), xr.load_dataset(out / "knockout.nc")
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert {k: v for k, v in a.attrs.items() if k not in TIME_ATTRS} == {
        k: v for k, v in b.attrs.items() if k not in TIME_ATTRS}
