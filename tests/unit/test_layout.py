"""The layout docs/architecture.md draws is the layout the imports follow: no cycle, no import of a later
stage, no import of a module that does not exist, at most 12 modules loose at the top
(scripts/import_graph.py), and the page's stage table is the one that script checks."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- layout-table:start -->", "<!-- layout-table:end -->"


def test_import_graph_follows_the_pipeline():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 cycles, 0 backward arrows" in done.stdout


def test_architecture_layout_table_is_the_checked_one():
    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py"), "--table"],
                           capture_output=True, text=True, check=True).stdout.strip()
    page = (ROOT / "docs" / "architecture.md").read_text()
    assert page.count(START) == 1 and page.count(END) == 1, f"docs/architecture.md: mark the table {START} ... {END}"
    drawn = page.split(START)[1].split(END)[0].strip()
    assert table.startswith("| stage | module |") and drawn == table, (
        "docs/architecture.md's layout table differs from `python3 scripts/import_graph.py --table`: "
        "paste that output between the markers")
