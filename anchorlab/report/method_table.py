"""The method table: for each model of a family, how well each localisation method recovers its known
circuit — one column per verify target (AUROC or the share of the circuit's heads chosen), "vf / tf"
per cell. It reads only the verify rows, so a new analysis's targets join the table by themselves."""
from __future__ import annotations

from pathlib import Path


def cell(rows: list[dict]) -> str:
    def one(r):
        if r["holds"] is None:
            return "n/e"
        mark = "" if r["holds"] else "✗"
        return f"{r['value']:.3f}{mark}" if isinstance(r["value"], float) else f"{r['value']}{mark}"

    return " / ".join(one(r) for r in rows) if rows else "—"


def method_table(scores: dict[str, dict]) -> str:
    """`scores`: {model id: verify() result}. Markdown: a row per model, a column per (analysis, target)."""
    columns = list(dict.fromkeys((r["analysis"], r["target"]) for s in scores.values() for r in s["results"]
                                 if r["level"] in ("heads", "layers")))
    head = "| model | " + " | ".join(f"{a}: {t}" for a, t in columns) + " |"
    lines = ["# Methods against known circuits", "",
             "Each cell: the target's value for vf / tf (AUROC against the circuit's heads or layers, or the",
             "share of its heads an intervention chose); ✗ = the target does not hold, n/e = not evaluable",
             "(e.g. a circuit without layer roles, or a model without a circuit). Rules: docs/method.md §7.", "",
             head, "|" + "---|" * (len(columns) + 1)]
    for model, s in scores.items():
        cells = [cell([r for r in s["results"] if (r["analysis"], r["target"]) == c]) for c in columns]
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_method_table(scores: dict[str, dict], out: Path) -> Path:
    path = Path(out) / "method_table.md"
    path.write_text(method_table(scores))
    return path
