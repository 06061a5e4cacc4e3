"""Print anchorlab's import graph (every import, inside functions too; TYPE_CHECKING blocks excluded)
and check the layering of the README's Layout: no cycle, no arrow to a later stage, <= 12 top-level modules.

Usage: python scripts/import_graph.py [--edges]   (exit 1 on a violation)
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "anchorlab"


# The pipeline's stages in import order: a module may import its own stage and earlier ones only.
# (Module prefix, stage); the longest matching prefix wins. The recipe schema sits after the analyses
# because it composes their spec classes; a user writes it first, but it imports them.
STAGES = [
    ("anchorlab.errors", 0), ("anchorlab.method", 1), ("anchorlab.adapters", 2),
    ("anchorlab.data", 3), ("anchorlab.toy.data", 3), ("anchorlab.toy.organism_data", 3), ("anchorlab.toy.circuit", 3),
    ("anchorlab.models", 4), ("anchorlab.toy", 4),
    ("anchorlab.dictionary", 5), ("anchorlab.rows", 6),
    ("anchorlab.interventions", 7), ("anchorlab.engines", 8), ("anchorlab.backends", 9),
    ("anchorlab.labels", 10), ("anchorlab.analyses", 11), ("anchorlab.sweeps", 12), ("anchorlab.recipe", 12),
    ("anchorlab.results", 13), ("anchorlab.summary", 13), ("anchorlab.store", 13), ("anchorlab.plots", 14),
    ("anchorlab.executor", 15), ("anchorlab.api", 16), ("anchorlab.estimate", 16), ("anchorlab.toy.train", 16),
    ("anchorlab.toy.anchored", 16), ("anchorlab.toy.organism_batches", 16), ("anchorlab.toy.organism_losses", 16), ("anchorlab.toy.ground_truth", 16), ("anchorlab.verify", 16), ("anchorlab.cli", 17),
    ("anchorlab.__main__", 18), ("anchorlab", 18),
]


def stage(module: str) -> int:
    best = max((p for p, _ in STAGES if module == p or module.startswith(p + ".")), key=len)
    return dict(STAGES)[best]


def backward_arrows(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, t) for m, targets in g.items() for t in targets if stage(t) > stage(m))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                for n in ast.walk(sub):
                    if hasattr(n, "lineno"):
                        lines.add(n.lineno)
    return lines


def imports_of(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        for t in targets[:1] if isinstance(node, ast.ImportFrom) else targets:
            if t.startswith("anchorlab") and t not in modules:
                UNRESOLVED.append(f"{me}: line {node.lineno} imports {t}, which does not exist")
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != me and t.startswith("anchorlab"):
                found.add(t)
    return found


UNRESOLVED: list[str] = []


def graph() -> dict[str, set[str]]:
    files = [p for p in PKG.rglob("*.py")]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in g:
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    g = graph()
    if "--edges" in sys.argv:
        for m in sorted(g):
            print(m, "->", ", ".join(sorted(g[m])))
    cyc = cycles(g)
    for c in cyc:
        print("cycle:", " <-> ".join(c))
    for line in UNRESOLVED:
        print("unresolved:", line)
    back = backward_arrows(g)
    for m, t in back:
        print(f"later stage: {m} (stage {stage(m)}) imports {t} (stage {stage(t)})")
    top = sorted(m for m in g if m.count(".") == 1 and not (PKG / m.split(".")[1]).is_dir())
    print(f"{len(top)} top-level modules: {', '.join(top)}")
    print(f"{len(g)} modules, {sum(map(len, g.values()))} imports, {len(cyc)} cycles, {len(back)} backward arrows")
    sys.exit(1 if cyc or back or UNRESOLVED or len(top) > 12 else 0)
