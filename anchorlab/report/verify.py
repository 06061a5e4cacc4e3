"""Recovery scoring: how well a finished run's analyses recover a model's known circuit (circuit.json).

`anchorlab verify RUN_DIR [--circuit PATH]` reads the run's results (attribution.nc, knockout.nc,
signal.nc, heads_block.nc, heads_amplify.nc; whichever exist), scores them against the circuit and
writes RUN_DIR/verify.json and a "Recovery of the planted circuit" section appended to summary.md.
The circuit is found from the run's model id (`toy:NAME` -> the shipped folder, a local folder ->
that folder) unless given. Works for any model with a circuit.json ({"heads": [[layer, head], ...],
"buffer_layers": [...], "arbitration_layers": [...]}).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import UserError, read_file

SECTION = "## Recovery of the planted circuit"
TARGETS = {"head_auc": 0.95, "top": 5, "nssd_ratio": 10.0, "ldar_first": 0.65, "ldar_last": 0.95,
           "block_mfr": 0.55, "block_drop": 0.45, "random_drop": 0.05, "repair": 0.5,
           "effect_share": 0.05}  # an into-instruction route with an effect: peak NSSD >= 5% of the largest one's


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def model_circuit(model_id: str) -> Path:
    """Where a model's circuit.json sits: the shipped folder of toy:NAME, else beside the weights."""
    if model_id.startswith("toy:"):
        from ..toy import shipped_path

        return shipped_path(model_id[4:]) / "circuit.json"
    return Path(model_id) / "circuit.json"


def find_circuit(run_dir: Path, circuit: str | Path | None) -> Path:
    if circuit:
        return Path(circuit)
    for nc in sorted(run_dir.glob("*.nc")):
        with xr.open_dataset(nc) as ds:
            model_id = ds.attrs.get("model_id")
        if model_id:
            return model_circuit(model_id)
    raise UserError(f"{run_dir}: no result names its model; pass --circuit PATH")


def _open(run_dir: Path, kind: str) -> xr.Dataset | None:
    """The run's result of `kind` (not an ablation sweep), loaded; None when it did not run."""
    for nc in sorted(run_dir.glob("*.nc")):
        with xr.open_dataset(nc) as ds:
            if ds.attrs.get("analysis") == kind and "ablation" not in ds.attrs:
                return ds.load()
    return None


def _heads(ds, circuit) -> dict:
    gstar = {tuple(h) for h in circuit["heads"]}
    layers, heads = ds["layer"].values, ds["head"].values
    positive = np.array([[(int(l), int(h)) in gstar for h in heads] for l in layers]).ravel()
    out = {}
    for task in ds["task"].values:
        score = ds["head_score_mean"].sel(task=task).values.ravel()
        rank = ds["head_rank"].sel(task=task).values.ravel()
        auc = roc_auc(score, positive)
        ranks = sorted(int(r) for r in rank[positive])
        out[str(task)] = {"auc": round(auc, 4), "gstar_ranks": ranks,
                          "holds": auc >= TARGETS["head_auc"] and max(ranks) <= TARGETS["top"]}
    return out


def _knockout(ds, circuit) -> dict:
    arb, buf = set(circuit["arbitration_layers"]), set(circuit["buffer_layers"])
    centres = [int(c) for c in ds["layer"].values]
    arb_c = [c for c in centres if c in arb]
    paths = [str(p) for p in ds["pathway"].values]
    out = {}
    for task in ds["task"].values:
        sel = ds["selected"].sel(task=task).values
        mean = {p: ds["nssd"].sel(task=task, pathway=p).values[:, sel].mean(-1) for p in paths}  # [layer]
        res: dict = {}
        if "instruction->last" in paths and arb_c:
            idx = [centres.index(c) for c in arb_c]
            inst = float(mean["instruction->last"][idx].mean())
            res["instruction_last_arbitration"] = round(inst, 5)
            ratios = {}
            for other in ("vision->last", "context->last"):
                if other in paths:
                    o = abs(float(mean[other][idx].mean()))
                    res[f"{other}_arbitration_abs"] = round(o, 5)
                    ratios[other] = round(inst / o, 1) if o > 0 else float("inf")
            res["ratio"] = ratios
            res["holds_localisation"] = bool(ratios) and all(r >= TARGETS["nssd_ratio"] for r in ratios.values())
        peaks = {}
        for p in ("vision->instruction", "context->instruction"):
            if p in paths:
                i = int(np.argmax(mean[p]))
                peaks[p] = {"peak_layer": centres[i], "peak_nssd": round(float(mean[p][i]), 5),
                            "in_buffer": centres[i] in buf}
        # a route whose cut never lowers following (the competitor's cue: cutting it leaves the answer
        # as it was) has no peak to place; it is reported, not scored
        top = max((v["peak_nssd"] for v in peaks.values()), default=0.0)
        for v in peaks.values():
            v["effect"] = top > 0 and v["peak_nssd"] >= TARGETS["effect_share"] * top
        res["into_instruction_peaks"] = peaks
        scored = [v for v in peaks.values() if v["effect"]]
        res["holds_buffer_peak"] = bool(scored) and all(v["in_buffer"] for v in scored)
        out[str(task)] = res
    return out


def _ldar(ds) -> dict:
    out = {}
    for task in ds["task"].values:
        ldar = ds["ldar"].sel(task=task).values
        first, last = float(ldar[0]), float(ldar[-1])
        out[str(task)] = {"first_layer": round(first, 4), "last_layer": round(last, 4),
                          "holds": first <= TARGETS["ldar_first"] and last >= TARGETS["ldar_last"]}
    return out


def _block(ds, circuit) -> dict:
    g = len(circuit["heads"])
    values = [int(v) for v in ds["n_heads"].values]
    value = g if g in values else values[-1]
    out = {"n_heads": value}
    for task in ds["task"].values:
        mfr = lambda s: float(ds["mfr"].sel(task=task, setting=s, n_heads=value).mean())  # noqa: E731
        ci = lambda s: [round(float(x), 4) for x in ds["mfr_ci"].sel(task=task, setting=s, n_heads=value).values]  # noqa: E731
        o, t, r = mfr("original"), mfr("targeted"), mfr("random")
        tci, rci = ci("targeted"), ci("random")
        out[str(task)] = {"original": round(o, 4), "targeted": round(t, 4), "random": round(r, 4),
                          "targeted_ci": tci, "random_ci": rci, "drop_targeted": round(o - t, 4),
                          "drop_random": round(o - r, 4), "ci_disjoint": tci[1] < rci[0],
                          "holds": t <= TARGETS["block_mfr"] and o - t >= TARGETS["block_drop"] and tci[1] < rci[0]
                          and o - r <= TARGETS["random_drop"]}
    return out


def _amplify(ds) -> dict:
    alphas = [float(a) for a in ds["alpha"].values]
    out = {}
    for task in ds["task"].values:
        per = {a: float(ds["mfr"].sel(task=task, setting="targeted", alpha=a).mean()) for a in alphas}
        rnd = {a: float(ds["mfr"].sel(task=task, setting="random", alpha=a).mean()) for a in alphas}
        best = max(per, key=per.get)
        out[str(task)] = {"repair_targeted": {str(a): round(v, 4) for a, v in per.items()},
                          "repair_random": {str(a): round(v, 4) for a, v in rnd.items()}, "best_alpha": best,
                          "holds": per[best] >= TARGETS["repair"]}
    return out


def verify(run_dir: str | Path, circuit: str | Path | None = None, amplify_dir: str | Path | None = None) -> dict:
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"{run}: not a run folder")
    cpath = find_circuit(run, circuit)
    if not cpath.exists():
        raise UserError(f"{cpath}: no circuit.json for this run's model (pass --circuit PATH)")
    circuit_data = read_file(cpath, "--circuit", "json", expect=dict, shape="a circuit.json mapping")
    scores: dict = {"circuit": str(cpath), "run": str(run), "amplify_dir": str(amplify_dir) if amplify_dir else None,
                    "targets": TARGETS}
    folders = [run] + ([Path(amplify_dir)] if amplify_dir else [])
    for kind, fn in (("attribution", lambda d: _heads(d, circuit_data)), ("knockout", lambda d: _knockout(d, circuit_data)),
                     ("signal", _ldar), ("heads_block", lambda d: _block(d, circuit_data)), ("heads_amplify", _amplify)):
        for folder in folders:
            ds = _open(folder, kind)
            if ds is not None:
                scores[kind] = fn(ds)
                break
    (run / "verify.json").write_text(json.dumps(scores, indent=1, default=float) + "\n")
    _write_section(run / "summary.md", scores)
    return scores


def _verdict(ok) -> str:
    return "**holds**" if ok else "**does not hold**"


def _write_section(path: Path, s: dict) -> None:
    lines = [SECTION, "", f"Scored against `{s['circuit']}` (anchorlab verify).", ""]
    for task, v in s.get("attribution", {}).items():
        lines.append(f"- Head ROC AUC ({task}): {v['auc']:.3f}, G* ranks {v['gstar_ranks']}; target ≥ 0.95 and all in the "
                     f"top 5: {_verdict(v['holds'])}.")
    for task, v in s.get("knockout", {}).items():
        if "ratio" in v:
            lines.append(f"- Knockout localisation ({task}): instruction->last over the arbitration centres "
                         f"{v['instruction_last_arbitration']:.4f}, ratio to |vision->last|, |context->last| {v['ratio']}; "
                         f"target ≥ 10: {_verdict(v['holds_localisation'])}.")
        peaks = ", ".join(f"{p} peaks at layer {x['peak_layer']} (NSSD {x['peak_nssd']:.4f}"
                          + ("" if x["effect"] else ": no effect, not scored") + ")"
                          for p, x in v["into_instruction_peaks"].items())
        lines.append(f"- Buffer localisation ({task}): {peaks}; target: in the buffer layers: {_verdict(v['holds_buffer_peak'])}.")
    for task, v in s.get("signal", {}).items():
        lines.append(f"- LDAR transition ({task}): {v['first_layer']:.3f} at the first layer, {v['last_layer']:.3f} at the "
                     f"last; target ≤ 0.65 and ≥ 0.95: {_verdict(v['holds'])}.")
    hb = s.get("heads_block", {})
    for task, v in hb.items():
        if task == "n_heads":
            continue
        lines.append(f"- Blocking {hb['n_heads']} targeted heads ({task}): MFR {v['original']:.3f} → {v['targeted']:.3f} "
                     f"{v['targeted_ci']} vs random {v['random']:.3f} {v['random_ci']}; target ≤ 0.55, drop ≥ 0.45, CIs "
                     f"disjoint, random drop ≤ 0.05: {_verdict(v['holds'])}.")
    for task, v in s.get("heads_amplify", {}).items():
        lines.append(f"- Amplification repair ({task}): targeted {v['repair_targeted']}, random {v['repair_random']}; "
                     f"target ≥ 0.5 of failures: {_verdict(v['holds'])}.")
    text = path.read_text() if path.exists() else ""
    if SECTION in text:
        text = text[:text.index(SECTION)].rstrip() + "\n"
    path.write_text((text + "\n" if text else "") + "\n".join(lines) + "\n")
