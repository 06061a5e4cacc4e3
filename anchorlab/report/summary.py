"""summary.md: does each of the paper's claims hold on this model? Numbers with 95% CIs, from
whatever results the run produced (claims whose analysis did not run are listed as not tested)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..method.stats import bootstrap_ci


def _ci(ds, var, **sel) -> str:
    v = float(ds[var].sel(**sel).mean())
    ci = ds[f"{var}_ci"].sel(**sel).values
    return f"{v:.3f} [{float(ci[0]):.3f}, {float(ci[1]):.3f}]"


def _verdict(ok: bool) -> str:
    return "**holds**" if ok else "**does not hold**"


def _knockout(ds) -> list[str]:
    out = []
    paths = list(ds["pathway"].values)
    # the modal cues' routes (docs/method.md §6): from vision or context into the instruction, against
    # from vision or context into the context or last; instruction->last is the anchors' own readout
    cues = [p for p in paths if p.split("->")[0] in ("vision", "context")]
    to = {dst: [p for p in cues if p.endswith(f"->{dst}")] for dst in ("instruction", "context", "last")}
    if not to["instruction"] or not (to["context"] or to["last"]):
        return ["- Instruction anchors (knockout): not tested (needs pathways from vision/context into the instruction "
                "and into context/last)."]
    for task in ds["task"].values:
        sel = ds["selected"].sel(task=task).values
        per = ds["nssd"].sel(task=task).mean("layer").values[:, sel]  # [pathway, n]
        inst = per[[paths.index(p) for p in to["instruction"]]].mean(0)
        other = per[[paths.index(p) for p in to["context"] + to["last"]]].mean(0)
        diff = inst - other
        lo, hi = bootstrap_ci(diff)
        out.append(f"- Instruction anchors ({task}): blocking the cues' paths into the instruction "
                   f"({', '.join(to['instruction'])}) moves the decision more than their paths into context/last "
                   f"({', '.join(to['context'] + to['last'])}) — mean NSSD difference {diff.mean():.4f} [{lo:.4f}, {hi:.4f}]: "
                   f"{_verdict(lo > 0)}.")
    return out


def _signal(ds) -> list[str]:
    out = []
    for task in ds["task"].values:
        ldar = ds["ldar"].sel(task=task).values
        deep = int(np.argmax(ldar))
        out.append(f"- LDAR phase transition ({task}): LDAR {_ci(ds, 'ldar', task=task, layer=ds['layer'].values[0])} at "
                   f"the first layer, {_ci(ds, 'ldar', task=task, layer=ds['layer'].values[deep])} at its peak (layer "
                   f"{int(ds['layer'].values[deep])}); paper: ~0.5 early, > 0.95 deep: {_verdict(ldar[deep] > 0.95)}.")
        sync = ds["sync_rate"].sel(task=task).values
        out.append(f"- Decision synchrony ({task}): instruction vs last agree on {sync[-1]:.3f} of prompts at the last "
                   f"layer ({_ci(ds, 'sync_rate', task=task, layer=ds['layer'].values[-1])}); paper: > 0.9: "
                   f"{_verdict(sync[-1] > 0.9)}.")
    return out


def _path_blocking(ds) -> list[str]:
    out = []
    for task in ds["task"].values:
        m = {s: _ci(ds, "mfr", task=task, setting=s) for s in ds["setting"].values}
        inst, ctx = (float(ds["mfr"].sel(task=task, setting=s)) for s in ("instruction->last", "followed_context->last"))
        out.append(f"- Path blocking ({task}): MFR original {m['original']}, instruction↛last {m['instruction->last']}, "
                   f"followed context↛last {m['followed_context->last']}; paper: the instruction path matters far more: "
                   f"{_verdict(inst < ctx)}.")
    return out


def _attribution(ds) -> list[str]:
    if "delta_mean" not in ds:
        return []
    out = []
    layers = ds["layer"].values
    deep = layers[len(layers) // 2 :]
    for task in ds["task"].values:
        a = float(ds["delta_mean"].sel(task=task, metric="dS", sublayer="attn", layer=deep).sum())
        f = float(ds["delta_mean"].sel(task=task, metric="dS", sublayer="mlp", layer=deep).sum())
        out.append(f"- Deep attention arbitrates, MLPs resist ({task}): summed over the deeper half of layers, "
                   f"δ_A(ΔS) = {a:.3f}, δ_F(ΔS) = {f:.3f}; paper: δ_A > 0 > δ_F: {_verdict(a > 0 > f)}.")
    return out


def _heads(ds, kind: str) -> list[str]:
    out = []
    dim = ds.attrs.get("sweep_dim", "n_heads")
    settings = list(ds["setting"].values)
    if "targeted" not in settings or "random" not in settings:
        return [f"- {kind}: not tested (needs targeted and random settings)."]
    for task in ds["task"].values:
        value = ds[dim].values[-1]
        t = _ci(ds, "mfr", task=task, setting="targeted", **{dim: value})
        r = _ci(ds, "mfr", task=task, setting="random", **{dim: value})
        o = float(ds["mfr"].sel(task=task, setting="original").mean())
        tv = float(ds["mfr"].sel(task=task, setting="targeted", **{dim: value}).mean())
        rv = float(ds["mfr"].sel(task=task, setting="random", **{dim: value}).mean())
        acc = (f"; no-conflict accuracy {_ci(ds, 'accuracy', task=task, setting='targeted', **{dim: value})} vs "
               f"{_ci(ds, 'accuracy', task=task, setting='original', **{dim: value})} original"
               if int(ds["n_neutral"].sel(task=task)) else "")
        if kind == "heads_block":
            out.append(f"- Blocking {value} targeted heads ({task}): MFR {t} vs {r} for random heads (original {o:.3f})"
                       f"{acc}; paper: targeted blocking lowers MFR more than random: {_verdict(tv < rv)}.")
        else:
            out.append(f"- Amplifying targeted heads ×{value} ({task}, on failures): MFR {t} vs {r} for random heads "
                       f"(original {o:.3f}); paper: amplification restores following: {_verdict(tv > max(rv, o))}.")
    return out


def write_summary(results: dict[str, xr.Dataset], out: Path, model_id: str) -> Path:
    lines = [f"# Does the paper hold on `{model_id}`?", "",
             "Each line: the claim, this run's numbers (mean [95% bootstrap CI]), and the verdict.", ""]
    by_kind = {ds.attrs.get("analysis"): ds for ds in results.values()
               if "ablation" not in ds.attrs and ds.attrs.get("status") != "not run"}
    not_run = {ds.attrs.get("analysis"): ds.attrs.get("not_run_reason", "") for ds in results.values()
               if ds.attrs.get("status") == "not run"}
    sections = [("knockout", _knockout), ("signal", _signal), ("path_blocking", _path_blocking),
                ("attribution", _attribution), ("heads_block", lambda d: _heads(d, "heads_block")),
                ("heads_amplify", lambda d: _heads(d, "heads_amplify"))]
    for kind, fn in sections:
        if kind in by_kind:
            lines += fn(by_kind[kind])
        elif kind in not_run:
            lines.append(f"- {kind}: not run — {not_run[kind]}.")
        else:
            lines.append(f"- {kind}: not run in this recipe.")
    path = Path(out) / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path
