"""scripts/debian.sh's install step on both branches: as root (apt-get direct) and as a user (sudo).

apt-get and sudo are replaced by recording fakes on PATH, so the test checks the exact commands the
set-up would run without touching the machine; CI's scripts/check_install.sh runs the real install.
The user branch runs as `nobody`, who may not be able to read the checkout (a clone in /root or in a
`mktemp -d` folder is mode 700): it runs a copy of debian.sh from a folder it can read.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_APT = """#!/bin/bash
echo "apt-get $* DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-}" >> "$LOG"
[[ " $* " == *" install "* ]] && touch "$TARGET"
exit 0
"""
FAKE_SUDO = """#!/bin/bash
echo "sudo $1" >> "$LOG"
exec "$@"
"""


@pytest.fixture
def user_dir():
    """A folder another user can enter: pytest's tmp folders, and maybe the checkout, are root-only (0700).
    Under /tmp itself (world-traversable), whatever TMPDIR says."""
    path = Path(tempfile.mkdtemp(prefix="anchorlab-setup-", dir="/tmp" if Path("/tmp").is_dir() else None))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run_need_debian(tmp_path: Path, *, user: str | None, with_sudo: bool = True):
    """`tmp_path`: a folder `user` can enter; debian.sh is copied there and run from there (and there is
    the working directory, so bash never meets a folder the user cannot read)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT)
    if with_sudo:
        (bin_dir / "sudo").write_text(FAKE_SUDO)
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    for tool in ("id", "env", "touch"):  # PATH is this folder alone: no real sudo or apt-get can leak in
        (bin_dir / tool).symlink_to(shutil.which(tool))
    target, log = tmp_path / "wn" / "data.noun", tmp_path / "log"
    target.parent.mkdir()
    target.parent.chmod(0o777)
    script = tmp_path / "debian.sh"
    shutil.copy(ROOT / "scripts" / "debian.sh", script)
    script.chmod(0o644)
    env = {"PATH": str(bin_dir), "LOG": str(log), "TARGET": str(target)}
    cmd = ["/bin/bash", "-c", f'source {script}; need_debian "{target}" wordnet-base']
    if user:
        cmd = [shutil.which("runuser"), "-u", user, "--", "/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    return proc, (log.read_text().splitlines() if log.exists() else []), target


needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser")


def test_root_runs_apt_get_directly_with_noninteractive_frontend(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the root branch needs root")
    proc, log, target = _run_need_debian(tmp_path, user=None)
    assert proc.returncode == 0, proc.stderr
    assert target.exists()
    assert log == ["apt-get update -qq DEBIAN_FRONTEND=noninteractive",
                   "apt-get install -y -qq --reinstall wordnet-base DEBIAN_FRONTEND=noninteractive"]


@needs_root
def test_user_goes_through_sudo(user_dir):
    proc, log, target = _run_need_debian(user_dir, user="nobody")
    assert proc.returncode == 0, proc.stderr
    assert target.exists()
    assert log == ["sudo env", "apt-get update -qq DEBIAN_FRONTEND=noninteractive",
                   "sudo env", "apt-get install -y -qq --reinstall wordnet-base DEBIAN_FRONTEND=noninteractive"]


@needs_root
def test_user_without_sudo_gets_one_line(user_dir):
    proc, log, _ = _run_need_debian(user_dir, user="nobody", with_sudo=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "needs root or sudo" in proc.stderr
    assert log == []


def test_present_file_installs_nothing(tmp_path):
    (tmp_path / "present").touch()
    proc = subprocess.run(["/bin/bash", "-c", f'source {ROOT}/scripts/debian.sh; need_debian "{tmp_path}/present" x'],
                          env={"PATH": "/nonexistent"}, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


def test_setup_script_is_valid_bash():
    for script in ("scripts/setup.sh", "scripts/debian.sh", "scripts/check_install.sh", "scripts/ndif/install.sh"):
        subprocess.run(["bash", "-n", str(ROOT / script)], check=True)
