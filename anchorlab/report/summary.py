"""summary.md: does each of the paper's claims hold on this model? Each analysis states its own claims
(its `claims` hook: numbers with 95% CIs and a verdict by the rule in docs/method.md); analyses the
recipe did not run, or that selected no prompt, are listed as such."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from ..analyses import REGISTRY


def claim_lines(results: dict[str, xr.Dataset]) -> list[str]:
    """Every registered analysis in registry order: its claims, why it did not run, or that it was not asked for."""
    done = {ds.attrs.get("analysis"): ds for ds in results.values()
            if "ablation" not in ds.attrs and ds.attrs.get("status") != "not run"}
    not_run = {ds.attrs.get("analysis"): ds.attrs.get("not_run_reason", "") for ds in results.values()
               if ds.attrs.get("status") == "not run"}
    lines = []
    for kind, cls in REGISTRY.items():
        if kind in done:
            lines += cls.claims(done[kind])
        elif kind in not_run:
            lines.append(f"- {kind}: not run — {not_run[kind]}.")
        else:
            lines.append(f"- {kind}: not run in this recipe.")
    return lines


def write_summary(results: dict[str, xr.Dataset], out: Path, model_id: str) -> Path:
    lines = [f"# Does the paper hold on `{model_id}`?", "",
             "Each line: the claim, this run's numbers (mean [95% bootstrap CI]), and the verdict.", ""]
    path = Path(out) / "summary.md"
    path.write_text("\n".join(lines + claim_lines(results)) + "\n")
    return path
