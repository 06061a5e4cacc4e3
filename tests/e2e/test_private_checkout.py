"""The install tests pass wherever the checkout lives: a clone in a mode-700 folder (as /root/anchorlab or
a `mktemp -d` folder are), where `nobody`, whom test_setup_script.py runs debian.sh as, cannot read it."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a clone and a second pytest (torch imported again): 20-30 s
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser") or not shutil.which("git")
                    or not (ROOT / ".git").exists(), reason="needs root, runuser, git and a git checkout")
def test_install_tests_pass_in_a_clone_in_a_private_folder(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    clone = private / "anchorlab"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, capture_output=True)
    assert subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", str(clone / "scripts" / "debian.sh")]
                          ).returncode != 0, "the clone must be out of nobody's reach for this test to mean anything"
    env = {**os.environ, "PYTHONPATH": str(clone), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs",
                           "tests/unit/test_setup_script.py"], cwd=clone, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout and "skipped" not in proc.stdout  # the user branch ran, as nobody
