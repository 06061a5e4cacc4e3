"""The run folder under misuse: one writer at a time (a second process is refused with the holder's pid
and host; a dead holder's lock is taken over), --force with --resume refused, a full disk at any write
is one named line with no temporary file left and the run resumes, and `anchorlab provenance`."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
from click.testing import CliRunner

import anchorlab
from anchorlab.cli import main
from anchorlab.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
DISK_FULL = "no space left on device; what is stored stays: free space, then rerun with --resume"


def small(model) -> list[str]:
    return [f"model.id={model}", "data.n_samples=4", "batch_size=2", "data.filter=all"]


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "anchorlab", *map(str, args)]


# a real run that holds the folder: its signal analysis stops in its first batch until killed
HOLDER = """
import sys, time
import anchorlab
from anchorlab.analyses.signal import SignalAnalysis

def stuck(self, batch, rows):
    print("computing", flush=True)
    time.sleep(600)

SignalAnalysis.run_batch = stuck
anchorlab.run(sys.argv[1], out=sys.argv[2], overrides=sys.argv[3:])
"""


@pytest.mark.slow  # two processes start (torch imported in each): about 40 s on a busy machine
def test_a_second_process_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path, random_toy_path, caplog):
    out = tmp_path / "run"
    sets = small(random_toy_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(QUICKSTART), str(out), *sets], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout.readline().strip() == "computing"
        started = json.loads((out / "run.lock").read_text())["started"]
        message = (f"{out} is being written by another anchorlab run (pid {holder.pid} on {socket.gethostname()}, "
                   f"started {started}); wait for it to end or pass --out elsewhere")
        for mode in ({}, {"force": True}):  # this process is a second writer too
            with pytest.raises(UserError) as err:
                anchorlab.run(QUICKSTART, out=out, overrides=sets, **mode)
            assert str(err.value) == message
        second = subprocess.run(cli("run", QUICKSTART, "--out", out, *[a for s in sets for a in ("--set", s)],
                                    "--resume"), env=ENV, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and second.stderr.strip().splitlines()[-1] == f"error: {message}", \
            second.stderr[-2000:]
        assert json.loads((out / "run.json").read_text())["status"] == "running"  # the holder's state, untouched
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    resumed = anchorlab.run(QUICKSTART, out=out, overrides=sets, resume=True)
    assert "signal" in resumed and (out / "run.lock").read_text() == ""  # released cleanly
    assert (f"took over the lock of {out}: its holder (pid {holder.pid} on {socket.gethostname()}, started "
            f"{started}) is no longer running") in caplog.messages


def test_force_with_resume_is_refused(tmp_path):
    message = ("--force and --resume: choose one (--resume continues the run in the output folder, --force deletes "
               "what it wrote and starts over)")
    with pytest.raises(UserError) as err:
        anchorlab.run(QUICKSTART, out=tmp_path / "o", resume=True, force=True)
    assert str(err.value) == message
    result = CliRunner().invoke(main, ["run", str(QUICKSTART), "--out", str(tmp_path / "o"), "--force", "--resume"])
    assert result.exit_code == 2 and result.output == f"error: {message}\n"
    assert not (tmp_path / "o").exists()  # refused before anything


def _disk_full_at(monkeypatch, name: str, nth: int = 1):
    """os.fsync fails with ENOSPC on the `nth` write of a file called `name` (via its temporary file),
    as a full disk does when the data reaches it."""
    real, seen = os.fsync, {"n": 0}

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if re.fullmatch(rf".*/\.{re.escape(name)}\.\d+\.tmp", target):
            seen["n"] += 1
            if seen["n"] == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("name, nth, where", [
    ("000001-b2.npz", 1, ".chunks/signal/000001-b2.npz"),  # the second batch's chunk
    ("run.json", 1, "run.json"),  # opening the run
    ("run.json", 3, "run.json"),  # after the first results, marking it finished
    ("signal.nc", 1, "signal.nc"),  # the result
    ("labels.nc", 1, "labels.nc"),  # the labels data.filter needs (toy:anchored follows its prompts)
])
def test_a_full_disk_is_one_named_line_and_the_run_resumes(tmp_path, random_toy_path, monkeypatch, name, nth, where):
    out = tmp_path / "run"
    sets = ["data.n_samples=4", "batch_size=2"] if name == "labels.nc" else small(random_toy_path)
    _disk_full_at(monkeypatch, name, nth)
    with pytest.raises(UserError) as err:
        anchorlab.run(QUICKSTART, out=out, overrides=sets)
    assert str(err.value) == f"cannot write {out / where}: {DISK_FULL}"
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert (out / "run.lock").read_text() == ""  # the lock is released
    monkeypatch.undo()
    resumed = anchorlab.run(QUICKSTART, out=out, overrides=sets, resume=True)["signal"]
    clean = anchorlab.run(QUICKSTART, out=tmp_path / "clean", overrides=sets)["signal"]
    xr.testing.assert_identical(resumed.drop_attrs(), clean.drop_attrs())
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_a_full_disk_outside_the_writers_is_one_line(tmp_path, monkeypatch):
    import anchorlab.api

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "o" / "summary.md"))

    monkeypatch.setattr(anchorlab.api, "run", full)
    result = CliRunner().invoke(main, ["run", str(QUICKSTART), "--out", str(tmp_path / "o")])
    assert (
        result.exit_code == 2 and result.output == f"error: cannot write {tmp_path / 'o' / 'summary.md'}: {DISK_FULL}\n"
    )


def _tmpfs_works() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=60k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow  # two runs of the quickstart in subprocesses: about 40 s
@pytest.mark.skipif(not _tmpfs_works(), reason="needs root and a private mount namespace (unshare -m)")
def test_a_real_full_disk_tmpfs_then_resume(tmp_path):
    mnt, log = tmp_path / "disk", tmp_path / "log"
    mnt.mkdir()
    run = f"{sys.executable} -m anchorlab run {QUICKSTART} --set data.n_samples=8 --out {mnt}/q"
    script = f"""
mount -t tmpfs -o size=60k tmpfs {mnt}
{run} 2> {log}/err1; echo $? > {log}/rc1
find {mnt} -name '*.tmp' > {log}/tmp
mount -o remount,size=50m {mnt}
{run} --resume 2> {log}/err2; echo $? > {log}/rc2
ls {mnt}/q > {log}/files
"""
    log.mkdir()
    subprocess.run(["unshare", "-m", "sh", "-c", script], env=ENV, capture_output=True, timeout=600)
    err1 = (log / "err1").read_text()
    assert (log / "rc1").read_text().strip() == "2", err1[-3000:]
    assert "Traceback" not in err1
    assert re.fullmatch(rf"error: cannot write {re.escape(str(mnt))}/q/\S+: {re.escape(DISK_FULL)}",
                        err1.strip().splitlines()[-1]), err1[-2000:]
    assert (log / "tmp").read_text() == ""
    assert (log / "rc2").read_text().strip() == "0", (log / "err2").read_text()[-3000:]
    assert {"signal.nc", "labels.nc", "run.json"} <= set((log / "files").read_text().split())


def test_provenance_names_the_model_files_data_and_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the recipe's data path is relative to the working directory
    recipe = ROOT / "recipes" / "jsonl_signal.yaml"
    anchorlab.run(recipe, out=tmp_path / "run", overrides=["batch_size=4"])
    result = CliRunner().invoke(main, ["provenance", str(tmp_path / "run" / "signal.nc")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    model = ROOT / "anchorlab" / "toy" / "weights" / "arbiter"
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
              "processor_config.json", "model.safetensors"):
        assert any(re.fullmatch(rf"  {re.escape(f)} +sha256 {sha(model / f)}", line) for line in lines), f
    data = ROOT / "examples" / "conflicts" / "samples.jsonl"
    assert (f"data: jsonl source, path examples/conflicts/samples.jsonl (absolute {data}), dictionary "
            "examples/conflicts/samples.dictionary.json") in lines
    assert any(re.fullmatch(rf"  data file +sha256 {sha(data)}", line) for line in lines)
    assert any(re.fullmatch(rf"  dictionary +sha256 {sha(data.with_name('samples.dictionary.json'))}", line)
               for line in lines)
    assert f"recipe: jsonl_signal, sha256 {hashlib.sha256(recipe.read_bytes()).hexdigest()}; overrides: batch_size=4" \
        in lines
    assert lines[2] == "model: toy:arbiter (llava family, revision local, float32, attention sdpa)"
    assert re.fullmatch(r"times: started \S+, finished \S+", lines[-2])
    assert "versions: anchorlab 0.1.0" in lines[-1] and "torch " in lines[-1]
    not_result = tmp_path / "plain.nc"
    xr.Dataset({"x": ("a", [1.0])}).to_netcdf(not_result, engine="h5netcdf")
    refused = CliRunner().invoke(main, ["provenance", str(not_result)])
    assert refused.exit_code == 2 and refused.output == (
        f"error: {not_result}: no provenance attrs (model_id, recipe_sha256): not a result anchorlab wrote\n")
