"""Data-parallel runs (torchrun, 2 CPU processes over Gloo) equal the one-process run: NSSD within 1e-5,
labels, rankings and MFR identical; a run with a rank killed mid-way finishes with --resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

pytestmark = pytest.mark.slow  # torchrun subprocesses
ROOT = Path(__file__).resolve().parents[2]
KNOCKOUT = ROOT / "recipes" / "knockout.yaml"
HEADS = ROOT / "recipes" / "heads_block.yaml"
# Attrs that say when, where and by how many processes a result was made: all else must be equal.
RUN_ATTRS = {"started", "finished", "world_size", "data_labels", "compute_seconds", "reduce_seconds"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
SMALL_KNOCKOUT = ["data.n_samples=8", "batch_size=4", "analyses.0.n_bootstrap=200",
                  "analyses.0.sweep={window: [1, 3]}"]  # a sweep: one split of the batches per combination
SLOW_KNOCKOUT = ["data.n_samples=8", "batch_size=1", "analyses.0.n_bootstrap=200"]  # 16 batches: a kill lands mid-way
SMALL_HEADS = ["data.n_samples=8", "batch_size=4", "analyses.0.n_bootstrap=200", "analyses.1.n_bootstrap=200",
               "analyses.1.n_heads=[1,2]", "analyses.1.seeds=2"]


def command(recipe, out, sets, processes: int, *extra) -> list[str]:
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m"]
              if processes > 1 else [sys.executable, "-m"])
    return [*launch, "anchorlab", "run", str(recipe), "--out", str(out),
            *[a for s in sets for a in ("--set", s)], *extra]


def run(recipe, out, sets, processes: int = 1, *extra) -> subprocess.CompletedProcess:
    done = subprocess.run(command(recipe, out, sets, processes, *extra), env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def assert_equal_results(one: Path, many: Path, name: str, resumed: bool = False) -> None:
    """Same variables, coordinates and attrs (bar RUN_ATTRS; `passes`, summed over the ranks, too unless
    `resumed`: a resumed run counts only what it computed); floats within 1e-5, everything else identical."""
    a, b = xr.load_dataset(one / name), xr.load_dataset(many / name)
    assert set(a.data_vars) == set(b.data_vars)
    xr.testing.assert_equal(a.coords.to_dataset(), b.coords.to_dataset())
    for var in a.data_vars:
        x, y = a[var].values, b[var].values
        assert a[var].dims == b[var].dims, var
        if x.dtype.kind == "f":
            np.testing.assert_allclose(y, x, rtol=0, atol=1e-5, err_msg=f"{name}:{var}")
        else:
            np.testing.assert_array_equal(y, x, err_msg=f"{name}:{var}")
    skip = RUN_ATTRS | ({"passes"} if resumed else set())
    assert {k: v for k, v in a.attrs.items() if k not in skip} == {k: v for k, v in b.attrs.items() if k not in skip}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """One-process reference runs, made once for the tests below."""
    base = tmp_path_factory.mktemp("one-process")
    run(KNOCKOUT, base / "knockout", SMALL_KNOCKOUT)
    run(KNOCKOUT, base / "knockout-b1", SLOW_KNOCKOUT)
    return base


def test_two_processes_equal_one_knockout(one_process, tmp_path):
    out = tmp_path / "two"
    run(KNOCKOUT, out, SMALL_KNOCKOUT, 2)
    for name in ("labels.nc", "knockout.nc"):
        assert_equal_results(one_process / "knockout", out, name)
    ko = xr.load_dataset(out / "knockout.nc")
    assert ko.attrs["world_size"] == 2
    assert xr.load_dataset(one_process / "knockout" / "knockout.nc").attrs["world_size"] == 1
    state = json.loads((out / "run.json").read_text())
    assert state["status"] == "complete" and state["world_size"] == 2
    assert {"labels", "knockout"} <= set(state["finished"]) and not (out / ".chunks").exists()
    assert (out / "figures").is_dir() and any((out / "figures").iterdir())

    # Rank 0's refusal (a finished run, no --force) stops both ranks and is printed once.
    again = subprocess.run(command(KNOCKOUT, out, SMALL_KNOCKOUT, 2), env=ENV, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode != 0
    assert (again.stderr + again.stdout).count("already holds a finished run") == 1


def test_two_processes_through_ndif_count_every_ranks_requests(one_process, tmp_path):
    """Each rank its own NDIF client (here the offline simulation): results equal the local run, and the
    result's request and byte counts are the sum over the ranks, equal to one process's."""
    run(KNOCKOUT, tmp_path / "one", SMALL_KNOCKOUT[:2], 1, "--simulate-remote")
    run(KNOCKOUT, tmp_path / "two", SMALL_KNOCKOUT[:2], 2, "--simulate-remote")
    one, two = (xr.load_dataset(tmp_path / d / "knockout.nc") for d in ("one", "two"))
    np.testing.assert_allclose(two["nssd"].values, one["nssd"].values, rtol=0, atol=1e-5)
    assert one.attrs["ndif_requests"] == two.attrs["ndif_requests"] == 4  # 16 prompts in batches of 4
    assert one.attrs["ndif_bytes_received"] == two.attrs["ndif_bytes_received"]


def test_two_processes_equal_one_rankings_and_mfr(tmp_path):
    """attribution (rankings) then heads_block (reads them on every rank, MFR): all identical."""
    run(HEADS, tmp_path / "one", SMALL_HEADS)
    run(HEADS, tmp_path / "two", SMALL_HEADS, 2)
    for name in ("attribution.nc", "heads_block.nc"):
        assert_equal_results(tmp_path / "one", tmp_path / "two", name)
    a, b = xr.load_dataset(tmp_path / "one" / "attribution.nc"), xr.load_dataset(tmp_path / "two" / "attribution.nc")
    for var in ("head_rank", "top_heads_layer", "top_heads_head", "shared_heads"):
        np.testing.assert_array_equal(b[var].values, a[var].values)
    a, b = xr.load_dataset(tmp_path / "one" / "heads_block.nc"), xr.load_dataset(tmp_path / "two" / "heads_block.nc")
    np.testing.assert_array_equal(b["mfr"].values, a["mfr"].values)
    assert (tmp_path / "two" / "summary.md").read_text().count("\n") > 0


def _workers(launcher: int) -> dict[int, int]:
    """rank -> pid of the worker processes torchrun (pid `launcher`) started."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != launcher:
                continue
            env = dict(v.split("=", 1) for v in (proc / "environ").read_text().split("\0") if "=" in v)
        except (OSError, ValueError, IndexError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(proc.name)
    return found


@pytest.mark.parametrize("killed, resume_processes", [(1, 2), (0, 1)])
def test_rank_killed_then_resume_equals_one_process(one_process, tmp_path, killed, resume_processes):
    """SIGKILL one rank once knockout chunks are stored: torchrun stops the other, and --resume (two
    processes, or one) finishes from the stored labels and chunks to the one-process result."""
    slow, reference = SLOW_KNOCKOUT, one_process / "knockout-b1"
    out = tmp_path / "killed"
    launcher = subprocess.Popen(command(KNOCKOUT, out, slow, 2), env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    chunks = out / ".chunks" / "knockout"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(chunks.glob("*.npz"))) < 2 and launcher.poll() is None:
        time.sleep(0.02)
    workers = _workers(launcher.pid)
    assert killed in workers, f"no rank {killed} among torchrun's workers {workers}"
    os.kill(workers[killed], signal.SIGKILL)
    assert launcher.wait(timeout=120) != 0
    stored = len(list(chunks.glob("*.npz")))
    assert 2 <= stored < 16, "the kill should land mid-way through the knockout batches"
    assert not (out / "knockout.nc").exists() and (out / "labels.nc").exists()

    run(KNOCKOUT, out, slow, resume_processes, "--resume")
    for name in ("labels.nc", "knockout.nc"):
        assert_equal_results(reference, out, name, resumed=True)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_attach_without_run_json_says_the_folder_must_be_shared(tmp_path):
    """A rank on another node that does not see rank 0's run.json (OUT not on a shared filesystem)."""
    from anchorlab.errors import UserError
    from anchorlab.run.store import RunStore

    with pytest.raises(UserError, match="filesystem that every node"):
        RunStore.attach(tmp_path)
