"""docs/method.md §3.1: attention knockout of role pathways, scored by NSSD (paper Fig. 3, 4, 10, 11)."""
from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr
from pydantic import Field, field_validator

from ..engines import memory
from ..engines.knockout import KnockoutEngine, KnockoutPlan, pass_cells, plan_passes
from ..errors import UserError
from ..interventions.knockout import parse_pathway
from ..labels.capture import dictionary_best
from ..method.nssd import nssd
from ..method.stats import bootstrap_ci
from ..plots.knockout import plot_knockout
from ..rows.layout import by_task_sample, decision_rows
from ..rows.roles import ROLES
from .base import Analysis, AnalysisSpec, BatchCost, cells_column, layers_out_of_range, param_attrs, target, verdict

NSSD_RATIO = 10.0  # verify: instruction->last over the direct routes in the arbitration layers
EFFECT_SHARE = 0.05  # verify: an into-instruction route with an effect peaks at >= 5% of the largest one's
DEFAULT_PATHWAYS = [
    "vision->last", "text->last", "vision->text", "context->instruction",
    "vision->instruction", "context->last", "instruction->last", "vision->context",
]


class KnockoutSpec(AnalysisSpec):
    kind: Literal["knockout"] = "knockout"
    pathways: list[str] = Field(default_factory=lambda: list(DEFAULT_PATHWAYS), min_length=1)
    layers: list[int] | None = Field(None, description="centre layers (default: all)")
    window: int = Field(3, ge=1, description="total window width, centred, clipped at the model's ends")
    decision: Literal["answer", "dictionary_best"] = "answer"
    engine: Literal["fast", "naive"] = "fast"
    variants_per_pass: int = Field(16, ge=1, description="fast engine: most variants batched into one pass")

    @field_validator("pathways")
    @classmethod
    def _roles_known(cls, pathways):
        for p in pathways:
            for role in parse_pathway(p):
                if role not in ROLES:
                    raise ValueError(f"pathway {p!r}: unknown role {role!r}; roles: {', '.join(sorted(ROLES))}")
        return pathways

    def check_model(self, n_layers: int, n_heads: int, where: str) -> list[str]:
        return layers_out_of_range(self.layers, n_layers, f"{where}.layers")


def subspace_p(logits: np.ndarray) -> np.ndarray:
    """P̂(y_p) on the decision subspace from the two logits [..., 2] (the rest of the vocabulary cancels)."""
    d = logits[..., 0].astype(np.float64) - logits[..., 1].astype(np.float64)
    return 1.0 / (1.0 + np.exp(-d))


class KnockoutAnalysis(Analysis):
    kind = "knockout"
    spec_cls = KnockoutSpec
    pass_knob = "variants_per_pass"

    def __init__(self, spec, ctx):
        super().__init__(spec, ctx)
        self.plan = KnockoutPlan.of(spec.pathways, self.centres(), spec.window, ctx.bundle.n_layers)

    def centres(self) -> list[int]:
        n = self.ctx.bundle.n_layers  # a window wider than the model is clipped to it (docs/method.md §3.1)
        centres = self.spec.layers if self.spec.layers is not None else list(range(n))
        bad = [c for c in centres if not 0 <= c < n]
        if bad:
            raise UserError(f"analyses[knockout].layers: {bad} out of range for a model with {n} layers (0..{n - 1})")
        return sorted(set(centres))

    def run_batch(self, batch, rows):
        spec = self.spec
        engine = KnockoutEngine(self.ctx.bundle, self.ctx.backend, spec.engine, spec.variants_per_pass)
        decision = decision_rows(rows) if spec.decision == "answer" else dictionary_best(self.ctx, batch, rows)
        sweep = engine.run(batch, rows, self.plan, decision)
        # dictionary_best read its tokens with one plain pass of the batch
        extra = self.ctx.bundle.n_layers * batch.inputs["input_ids"].numel() if spec.decision == "dictionary_best" else 0
        return {
            "logits": sweep.logits.numpy(),
            "clean": sweep.clean.numpy(),
            "decision_ids": decision.numpy(),
            "cells": cells_column(len(rows), sweep.cells + extra),
        }

    def reduce(self, rows, results, selected):
        spec = self.spec
        tasks, samples, grid = by_task_sample(rows)
        p_clean = subspace_p(grid(results["clean"]))  # [T, S]
        p_after = subspace_p(grid(results["logits"]))  # [T, S, P, C]
        score = nssd(p_clean[..., None, None], 1 - p_clean[..., None, None], p_after, 1 - p_after)
        sel = grid(selected)
        centres = list(self.plan.centres)
        ds = xr.Dataset(coords={"task": tasks, "pathway": list(spec.pathways), "layer": centres,
                                "sample": samples, "bound": ["lo", "hi"]})
        ds["nssd"] = (("task", "pathway", "layer", "sample"), score.transpose(0, 2, 3, 1))
        ds["p_followed"] = (("task", "pathway", "layer", "sample"), p_after.transpose(0, 2, 3, 1))
        ds["p_followed_clean"] = (("task", "sample"), p_clean)
        ds["selected"] = (("task", "sample"), sel)
        ds["decision_token"] = (("task", "sample", "side"), grid(results["decision_ids"]))
        ds = ds.assign_coords(side=["followed", "competitor"])
        ds["window_start"] = ("layer", [min(w) for w in self.plan.windows])
        ds["window_end"] = ("layer", [max(w) for w in self.plan.windows])
        means, cis, bars, bar_cis = [], [], [], []
        for t, task in enumerate(tasks):
            if not sel[t].any():
                raise UserError(f"task {task}: no prompt is selected by data.filter or the analysis's rows setting; nothing to aggregate")
            x = score[t, sel[t]].transpose(1, 2, 0)  # [P, C, n]
            means.append(x.mean(-1))
            cis.append(self._ci(x))
            per_sample = x.mean(1)  # [P, n]: each sample's NSSD averaged over centre layers
            bars.append(per_sample.mean(-1))
            bar_cis.append(self._ci(per_sample))
        ds["nssd_mean"] = (("task", "pathway", "layer"), np.array(means))
        ds["nssd_mean_ci"] = (("task", "pathway", "layer", "bound"), np.array(cis))
        ds["nssd_pathway"] = (("task", "pathway"), np.array(bars))
        ds["nssd_pathway_ci"] = (("task", "pathway", "bound"), np.array(bar_cis))
        ds["nssd"].attrs["description"] = "sign(P̂(y_p)-P̃̂(y_p))·KL(P̂||P̃̂) on {y_p, y_c} (docs/method.md §3.1); >0: path helped following"
        ds["nssd_pathway"].attrs["description"] = "per-sample NSSD averaged over centre layers, then over selected samples"
        ds.attrs.update(analysis="knockout", decoder_cells=int(results["cells"].sum()),
                        **param_attrs(spec))
        return ds

    def _ci(self, values):
        return bootstrap_ci(values, self.spec.n_bootstrap, self.spec.ci_level, self.ctx.seed)

    def batch_bytes(self, batch, rows, per_pass):
        if self.spec.engine == "naive":
            return memory.plain_forward_bytes(self.ctx.bundle, batch)
        return memory.knockout_fast_peak(self.ctx.bundle, batch, rows, self.plan, per_pass)

    def batch_cost(self, batch, rows, tables):
        """A clean pass, then the planner's suffix passes (fast) or one full pass per variant (naive);
        `decision: dictionary_best` reads its tokens with one plain pass more."""
        n_layers = self.ctx.bundle.n_layers
        b, s = batch.inputs["input_ids"].shape
        plain = n_layers * s * b
        windows = [list(w) for w in self.plan.windows]
        passes, _ = plan_passes(self.plan.starts(batch, rows), windows, s, n_layers, self.spec.variants_per_pass)
        variants = len(self.plan.pathways) * len(windows)
        extra = int(self.spec.decision == "dictionary_best")
        cost = BatchCost(variants=variants, bytes=self.batch_bytes(batch, rows, self.spec.variants_per_pass))
        cost.fast.add(1 + len(passes) + extra, plain + sum(pass_cells(p, s, b, n_layers) for p in passes) + extra * plain)
        cost.naive.add(1 + variants + extra, (1 + variants) * plain + extra * plain)
        return cost

    @classmethod
    def figures(cls, ds, fig_dir):
        return plot_knockout(ds, fig_dir)

    @classmethod
    def claims(cls, ds):
        """Instruction anchors: the cues' routes into the instruction (from vision/context) move the decision
        more than their routes into context/last: the bootstrap CI of the per-sample NSSD difference lies
        above 0 (docs/method.md "Claims"). instruction->last is the anchors' readout, not a rival route."""
        paths = list(ds["pathway"].values)
        cues = [p for p in paths if p.split("->")[0] in ("vision", "context")]
        to = {dst: [p for p in cues if p.endswith(f"->{dst}")] for dst in ("instruction", "context", "last")}
        if not to["instruction"] or not (to["context"] or to["last"]):
            return ["- Instruction anchors (knockout): not tested (needs pathways from vision/context into the "
                    "instruction and into context/last)."]
        out = []
        for task in ds["task"].values:
            sel = ds["selected"].sel(task=task).values
            per = ds["nssd"].sel(task=task).mean("layer").values[:, sel]  # [pathway, n]
            inst = per[[paths.index(p) for p in to["instruction"]]].mean(0)
            other = per[[paths.index(p) for p in to["context"] + to["last"]]].mean(0)
            diff = inst - other
            lo, hi = bootstrap_ci(diff)
            out.append(f"- Instruction anchors ({task}): blocking the cues' paths into the instruction "
                       f"({', '.join(to['instruction'])}) moves the decision more than their paths into context/last "
                       f"({', '.join(to['context'] + to['last'])}) — mean NSSD difference {diff.mean():.4f} "
                       f"[{lo:.4f}, {hi:.4f}]: {verdict(lo > 0)}.")
        return out

    @classmethod
    def targets(cls, ds, circuit):
        """Layer-level: instruction->last over the circuit's arbitration layers ≥ NSSD_RATIO × the direct routes,
        and each into-instruction route with an effect peaks in the circuit's buffer layers."""
        arb, buf = set(circuit.get("arbitration_layers", [])), set(circuit.get("buffer_layers", []))
        centres = [int(c) for c in ds["layer"].values]
        paths = [str(p) for p in ds["pathway"].values]
        arb_c = [c for c in centres if c in arb]
        out = []
        for task in ds["task"].values:
            sel = ds["selected"].sel(task=task).values
            mean = {p: ds["nssd"].sel(task=task, pathway=p).values[:, sel].mean(-1) for p in paths}  # [layer]
            direct = [p for p in ("vision->last", "context->last") if p in paths]
            if "instruction->last" not in paths or not direct:
                out.append(target("knockout_localisation", "layers", task, None, f"ratio ≥ {NSSD_RATIO}", None,
                                  reason="needs instruction->last and vision->last or context->last"))
            elif not arb_c:
                out.append(target("knockout_localisation", "layers", task, None, f"ratio ≥ {NSSD_RATIO}", None,
                                  reason=f"no knockout centre in the circuit's arbitration layers {sorted(arb)}"))
            else:
                idx = [centres.index(c) for c in arb_c]
                inst = float(mean["instruction->last"][idx].mean())
                ratios = {o: (inst / abs(float(mean[o][idx].mean())) if float(mean[o][idx].mean()) else float("inf"))
                          for o in direct}
                worst = min(ratios.values())
                out.append(target("knockout_localisation", "layers", task, worst, f"ratio ≥ {NSSD_RATIO}",
                                  worst >= NSSD_RATIO, instruction_last=round(inst, 5),
                                  ratios={k: round(v, 1) if np.isfinite(v) else "inf" for k, v in ratios.items()}))
            peaks = {}
            for p in ("vision->instruction", "context->instruction"):
                if p in paths:
                    i = int(np.argmax(mean[p]))
                    peaks[p] = (centres[i], float(mean[p][i]))
            top = max((v for _, v in peaks.values()), default=0.0)
            # a route whose cut never lowers following (the competitor's cue) has no peak to place: reported, not scored
            scored = {p: layer for p, (layer, v) in peaks.items() if top > 0 and v >= EFFECT_SHARE * top}
            holds = all(layer in buf for layer in scored.values()) if scored and buf else None
            out.append(target("buffer_peak", "layers", task, len([x for x in scored.values() if x in buf]),
                              f"every route with an effect peaks in {sorted(buf)}", holds,
                              peaks={p: {"layer": layer, "nssd": round(v, 5), "scored": p in scored}
                                     for p, (layer, v) in peaks.items()}))
        return out


