"""Recovery scoring: how well a finished run's analyses recover a model's known circuit (circuit.json).

`anchorlab verify RUN_DIR [--circuit PATH]` reads the run's results, asks each analysis that made one
to score it against the circuit (its `targets` hook), and writes RUN_DIR/verify.json (a flat list of
{analysis, target, level, task, value, bound, holds}) and a "Recovery of the planted circuit"
section appended to summary.md.
The circuit is found from the run's model id (`toy:NAME` -> the shipped folder, a local folder ->
that folder) unless given. Works for any model with a circuit.json ({"heads": [[layer, head], ...],
"buffer_layers": [...], "arbitration_layers": [...]}).
"""
from __future__ import annotations

import json
from pathlib import Path

import xarray as xr

from ..analyses import REGISTRY
from ..analyses.base import target, verdict
from ..errors import UserError, read_file

SECTION = "## Recovery of the planted circuit"


def model_circuit(model_id: str) -> Path:
    """Where a model's circuit.json sits: the shipped folder of toy:NAME, else beside the weights."""
    if model_id.startswith("toy:"):
        from ..toy import shipped_path

        return shipped_path(model_id[4:]) / "circuit.json"
    return Path(model_id) / "circuit.json"


def run_model(run_dir: Path) -> str:
    """The model id the run's results name."""
    for nc in sorted(run_dir.glob("*.nc")):
        with xr.open_dataset(nc) as ds:
            model_id = ds.attrs.get("model_id")
        if model_id:
            return model_id
    raise UserError(f"{run_dir}: no result names its model; pass --circuit PATH")


def scored_models(model_id: str, circuit: dict) -> set[str]:
    """Whose results a circuit scores: the model under test, and the flawed twin its circuit.json names
    (amplification needs failures; a companion run on any other model says nothing about this one)."""
    return {model_id} | ({circuit["flawed_twin"]} if circuit.get("flawed_twin") else set())


def find_circuit(run_dir: Path, circuit: str | Path | None) -> Path:
    return Path(circuit) if circuit else model_circuit(run_model(run_dir))


def _open(run_dir: Path, kind: str) -> xr.Dataset | None:
    """The run's result of `kind` (not an ablation sweep, not a step that selected no prompt), loaded."""
    for nc in sorted(run_dir.glob("*.nc")):
        with xr.open_dataset(nc) as ds:
            if ds.attrs.get("analysis") == kind and "ablation" not in ds.attrs and ds.attrs.get("status") != "not run":
                return ds.load()
    return None


def verify(run_dir: str | Path, circuit: str | Path | None = None, amplify_dir: str | Path | None = None) -> dict:
    """Every registered analysis's recovery targets (its `targets` hook) on the results found in the run folder
    (then the amplify companion's): verify.json's flat `results` list and a section of summary.md."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"{run}: not a run folder")
    cpath = find_circuit(run, circuit)
    if not cpath.exists():
        raise UserError(f"{cpath}: no circuit.json for this run's model (pass --circuit PATH)")
    circuit_data = read_file(cpath, "--circuit", "json", expect=dict, shape="a circuit.json mapping")
    folders = [run] + ([Path(amplify_dir)] if amplify_dir else [])
    models = scored_models(run_model(run), circuit_data)
    rows = []
    for kind, cls in REGISTRY.items():
        for folder in folders:
            ds = _open(folder, kind)
            if ds is None:
                continue
            if ds.attrs.get("model_id") not in models:  # e.g. a companion run on some other model
                rows.append({"analysis": kind, **target(kind, "model", "all", None, "", None, reason=(
                    f"{folder}: a result of {ds.attrs.get('model_id')}, neither the model under test nor the flawed "
                    f"twin its circuit.json names ({', '.join(sorted(models))})"))})
            else:
                rows += [{"analysis": kind, **r} for r in cls.targets(ds, circuit_data)]
            break
    scores = {"circuit": str(cpath), "run": str(run), "amplify_dir": str(amplify_dir) if amplify_dir else None,
              "results": rows}
    (run / "verify.json").write_text(json.dumps(scores, indent=1, default=float) + "\n")
    _write_section(run / "summary.md", scores)
    return scores


def _write_section(path: Path, s: dict) -> None:
    lines = [SECTION, "", f"Scored against `{s['circuit']}` (anchorlab verify).", ""]
    for r in s["results"]:
        value = "n/a" if r["value"] is None else (f"{r['value']:.4g}" if isinstance(r["value"], float) else r["value"])
        detail = "; ".join(f"{k} {v}" for k, v in r.get("detail", {}).items())
        lines.append(f"- {r['target']} ({r['task']}, {r['level']}, from {r['analysis']}): {value}; target {r['bound']}"
                     f"{f' ({detail})' if detail else ''}: {verdict(r['holds'])}.")
    text = path.read_text() if path.exists() else ""
    if SECTION in text:
        text = text[:text.index(SECTION)].rstrip() + "\n"
    path.write_text((text + "\n" if text else "") + "\n".join(lines) + "\n")
