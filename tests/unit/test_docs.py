"""The docs site builds with `mkdocs build --strict` (a broken link or anchor fails it), and the README
stays a front page: at most 250 lines, every relative link pointing at a file (and heading) that
exists, every `anchorlab ...` command it names a real command."""
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
COMMAND = re.compile(r"(?<![\w./-])(anchorlab|-m organisms) ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")


def slug(title: str) -> str:
    """A heading's anchor as mkdocs (python-markdown's toc) writes it; GitHub's agrees for these titles."""
    text = unicodedata.normalize("NFKD", title.replace("`", "")).encode("ascii", "ignore").decode()
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def headings(page: Path) -> set[str]:
    """The anchors of a page's headings (lines in fenced code blocks are not headings)."""
    lines = FENCE.sub("", page.read_text()).splitlines()
    return {slug(line.lstrip("#").strip()) for line in lines if re.match(r"#{1,6} ", line)}


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    # omitted_files: warn makes --strict fail on a page left out of the nav, so every page is built
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    assert [p for p in pages if not (site / ("" if p == "index" else p) / "index.html").is_file()] == []


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_links_point_at_files_that_exist():
    links = [t for t in LINK.findall(README.read_text()) if not re.match(r"[a-z]+:", t)]
    assert any(t.startswith("docs/") for t in links)  # the pattern finds the README's links at all
    broken = []
    for target in links:
        path, _, anchor = target.partition("#")
        file = README.parent / path if path else README
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in headings(file):
            broken.append(target)
    assert broken == []


def test_readme_commands_exist():
    from anchorlab.cli import main
    from organisms.__main__ import main as organisms_main

    named = [m for block in CODE.findall(README.read_text()) for m in COMMAND.findall(block)]
    assert {(prog, cmd) for prog, cmd, _ in named} >= {("anchorlab", "run"), ("-m organisms", "train")}
    missing = []
    for prog, cmd, sub in named:
        group = main if prog == "anchorlab" else organisms_main
        command = group.commands.get(cmd)
        if command is None:
            missing.append(f"{prog} {cmd}")
        elif isinstance(command, click.Group) and sub and sub not in command.commands:
            missing.append(f"{prog} {cmd} {sub}")
    assert missing == [], f"README names commands that `anchorlab --help` does not list: {missing}"
