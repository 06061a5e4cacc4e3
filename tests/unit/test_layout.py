"""The layout the README draws is the layout the imports follow: no cycle, no import of a later stage,
no import of a module that does not exist, at most 12 modules loose at the top (scripts/import_graph.py)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_graph_follows_the_pipeline():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 cycles, 0 backward arrows" in done.stdout
