"""Print anchorlab's import graph (every import, inside functions too; TYPE_CHECKING blocks excluded)
and check the layering of docs/architecture.md's Layout: no cycle, no arrow to a later stage, <= 12 top-level modules.

Usage: python scripts/import_graph.py [--edges]   (exit 1 on a violation)
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "anchorlab"


# The pipeline's stages in import order: a module may import its own stage and earlier ones only.
# (module prefix, stage, what lives there); the longest matching prefix wins. This table is the one
# source of docs/architecture.md's layout table (`--table` prints it; a test compares the two).
# The recipe schema sits after the analyses because it composes their spec classes; a user writes it
# first, but it imports them. Plots read saved datasets only, so the analyses can name their figures.
LAYOUT = [
    ("anchorlab.errors", 0, "UserError: one clear line for bad input"),
    ("anchorlab.method", 1, "SPEC's math as pure functions (lens, NSSD, signal, stats)"),
    ("anchorlab.adapters", 2, "per-family architecture facts: module paths, norms, image tokens, chat templates"),
    ("anchorlab.data", 3, "conflict samples: MC², JSONL, the toys' and organisms' generators"),
    ("anchorlab.models", 4, "loading (hub id, local folder, toy), tiny and paper-shaped random models, toy builders"),
    ("anchorlab.toy", 4, "the shipped toy weights and circuits (`shipped_path`)"),
    ("anchorlab.dictionary", 5, "answer entity dictionaries (WordNet, manual entries)"),
    ("anchorlab.rows", 6, "prompts, token roles, decision ids, batches"),
    ("anchorlab.interventions", 7, "pure tensor functions: masks, head tables"),
    ("anchorlab.engines", 8, "naive reference and fast paths, the memory model, autobatch"),
    ("anchorlab.backends", 9, "local, NDIF, data-parallel"),
    ("anchorlab.labels", 10, "follow / fail labels"),
    ("anchorlab.plots", 11, "figures drawn from saved results only"),
    ("anchorlab.analyses", 12, "one module per paper section, each declaring its whole protocol"),
    ("anchorlab.run.sweeps", 13, "ablation sweeps: a spec expanded per combination, results stacked"),
    ("anchorlab.recipe", 13, "the YAML recipe schema"),
    ("anchorlab.report", 14, "summary.md claims and verify's recovery targets, from the analyses' hooks"),
    ("anchorlab.run", 15, "the run plan, executor, chunk store and result writer"),
    ("anchorlab.estimate", 16, "the run plan priced without weights"),
    ("anchorlab.api", 16, "`anchorlab.run(...)`"),
    ("anchorlab.cli", 17, "the `anchorlab` command"),
    ("anchorlab.__main__", 18, "`python -m anchorlab`"),
    ("anchorlab", 18, "the package"),
]
STAGES = [(prefix, n) for prefix, n, _ in LAYOUT]
# Never imported by the library: the trainers of the shipped toys and organisms (top-level folder).
OUTSIDE = ("organisms",)


def layout_table() -> str:
    rows = ["| stage | module | what lives there |", "|---|---|---|"]
    rows += [f"| {n} | `{prefix}` | {what} |" for prefix, n, what in LAYOUT]
    return "\n".join(rows)


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
        for t in targets[:1]:
            if t.split(".")[0] in OUTSIDE:
                OUTSIDE_IMPORTS.append(f"{me}: line {node.lineno} imports {t} (outside the library)")
    return found


UNRESOLVED: list[str] = []
OUTSIDE_IMPORTS: list[str] = []


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
    if "--table" in sys.argv:
        print(layout_table())
        sys.exit(0)
    g = graph()
    if "--edges" in sys.argv:
        for m in sorted(g):
            print(m, "->", ", ".join(sorted(g[m])))
    cyc = cycles(g)
    for c in cyc:
        print("cycle:", " <-> ".join(c))
    for line in UNRESOLVED:
        print("unresolved:", line)
    for line in OUTSIDE_IMPORTS:
        print("outside:", line)
    back = backward_arrows(g)
    for m, t in back:
        print(f"later stage: {m} (stage {stage(m)}) imports {t} (stage {stage(t)})")
    top = sorted(m for m in g if m.count(".") == 1 and not (PKG / m.split(".")[1]).is_dir())
    print(f"{len(top)} top-level modules: {', '.join(top)}")
    print(f"{len(g)} modules, {sum(map(len, g.values()))} imports, {len(cyc)} cycles, {len(back)} backward arrows")
    sys.exit(1 if cyc or back or UNRESOLVED or OUTSIDE_IMPORTS or len(top) > 12 else 0)
