"""scripts/debian.sh's install step on both branches: as root (apt-get direct) and as a user (sudo).

apt-get and sudo are replaced by recording fakes on PATH, so the test checks the exact commands the
set-up would run without touching the machine; CI's scripts/check_install.sh runs the real install.
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


def _run_need_debian(tmp_path: Path, *, user: str | None, with_sudo: bool = True):
    if user:  # pytest's own tmp folders are root-only (0700): the user needs one it can enter
        tmp_path = Path(tempfile.mkdtemp(prefix="anchorlab-setup-"))
        tmp_path.chmod(0o777)
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
    script = f'source {ROOT}/scripts/debian.sh; need_debian "{target}" wordnet-base'
    env = {"PATH": str(bin_dir), "LOG": str(log), "TARGET": str(target)}
    cmd = ["/bin/bash", "-c", script]
    if user:
        cmd = [shutil.which("runuser"), "-u", user, "--", "/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
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
def test_user_goes_through_sudo(tmp_path):
    proc, log, target = _run_need_debian(tmp_path, user="nobody")
    assert proc.returncode == 0, proc.stderr
    assert target.exists()
    assert log == ["sudo env", "apt-get update -qq DEBIAN_FRONTEND=noninteractive",
                   "sudo env", "apt-get install -y -qq --reinstall wordnet-base DEBIAN_FRONTEND=noninteractive"]


@needs_root
def test_user_without_sudo_gets_one_line(tmp_path):
    proc, log, _ = _run_need_debian(tmp_path, user="nobody", with_sudo=False)
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
