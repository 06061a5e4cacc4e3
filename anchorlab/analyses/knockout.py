"""docs/method.md §3.1: attention knockout of role pathways, scored by NSSD (paper Fig. 3, 4, 10, 11)."""
from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import xarray as xr
from pydantic import Field, field_validator

from ..engines import memory
from ..engines.knockout import KnockoutEngine, KnockoutPlan, pass_cells, plan_passes
from ..errors import UserError
from ..interventions.knockout import parse_pathway, window_layers
from ..labels.capture import dictionary_best
from ..method.nssd import nssd
from ..method.stats import bootstrap_ci
from ..plots.knockout import plot_knockout
from ..rows.layout import by_task_sample, decision_rows, role_problems
from ..rows.roles import ROLES
from .base import (
    Analysis,
    AnalysisSpec,
    BatchCost,
    auc_target,
    cells_column,
    layers_out_of_range,
    nothing_selected,
    param_attrs,
    target,
    verdict,
)

LAYER_AUC = 0.95  # verify's layer-level bound (docs/method.md "Recovery targets")
log = logging.getLogger("anchorlab")
DEFAULT_PATHWAYS = [
    "vision->last", "text->last", "vision->text", "context->instruction",
    "vision->instruction", "context->last", "instruction->last", "vision->context",
]


class KnockoutSpec(AnalysisSpec):
    kind: Literal["knockout"] = "knockout"
    pathways: list[str] = Field(default_factory=lambda: list(DEFAULT_PATHWAYS), min_length=1)
    layers: list[int] | None = Field(None, min_length=1, description="centre layers (default: all)")
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
        pairs = [parse_pathway(p) for p in pathways]  # 'a->b' and 'a -> b' are one pathway
        repeated = [p for i, p in enumerate(pathways) if pairs[i] in pairs[:i]]
        if repeated:
            raise ValueError(f"pathway {repeated[0]!r} given twice")
        return pathways

    def check_model(self, n_layers: int, n_heads: int, where: str) -> list[str]:
        return layers_out_of_range(self.layers, n_layers, f"{where}.layers")

    def check_rows(self, rows, where):
        """Every pathway's roles have tokens, and the pathway removes some edge under the causal mask."""
        problems = []
        for p in self.pathways:
            src, dst = parse_pathway(p)
            field = f"{where}.pathways: {p!r}"
            empty = role_problems(rows, src, field) or role_problems(rows, dst, field)
            if empty:
                problems += empty
            elif not any(max(r.encoded.roles[dst]) >= min(r.encoded.roles[src]) for r in rows):
                problems.append(f"{field} removes no attention edge: under the causal mask a {dst!r} query reads "
                                f"only keys at or before it, and no {dst!r} position comes at or after a {src!r} "
                                "position in any prompt (NSSD would be 0 everywhere)")
        return problems


def window_note(width: int, n_layers: int, centres: list[int]) -> str | None:
    """What a window wider than the model means (result attr `window_note`, and the log); None otherwise."""
    if width <= n_layers:
        return None
    spans = {tuple(window_layers(c, width, n_layers)) for c in centres}
    note = f"window {width} is wider than the model's {n_layers} layers: clipped at the model's ends"
    if len(spans) == 1:
        (span,) = spans
        note += (f"; every centre knocks out the same layers {span[0]}..{span[-1]}, so NSSD does not vary "
                 "with the centre layer")
    return note


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
        extra = (
            self.ctx.bundle.n_layers * batch.inputs["input_ids"].numel() if spec.decision == "dictionary_best" else 0
        )
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
                raise nothing_selected(task)
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
        ds["nssd"].attrs["description"] = (
            "sign(P̂(y_p)-P̃̂(y_p))·KL(P̂||P̃̂) on {y_p, y_c} (docs/method.md §3.1); >0: path helped following"
        )
        ds["nssd_pathway"].attrs["description"] = (
            "per-sample NSSD averaged over centre layers, then over selected samples"
        )
        ds.attrs.update(analysis="knockout", decoder_cells=int(results["cells"].sum()),
                        **param_attrs(spec))
        note = window_note(spec.window, self.ctx.bundle.n_layers, centres)
        if note:
            ds.attrs["window_note"] = note
            log.warning("knockout: %s", note)
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
        cost.fast.add(
            1 + len(passes) + extra, plain + sum(pass_cells(p, s, b, n_layers) for p in passes) + extra * plain
        )
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
        """Layer-level: per centre layer, the mean NSSD of instruction->last against the circuit's arbitration
        layers, and of the followed cue's route into the instruction (vf: vision, tf: context) against its
        buffer layers: AUROC ≥ LAYER_AUC each."""
        centres = np.array([int(c) for c in ds["layer"].values])
        paths = [str(p) for p in ds["pathway"].values]
        out = []
        for task in ds["task"].values:
            sel = ds["selected"].sel(task=task).values
            cue = "vision->instruction" if task == "vf" else "context->instruction"
            for name, path, key in (("knockout_arbitration_auc", "instruction->last", "arbitration_layers"),
                                    ("knockout_buffer_auc", cue, "buffer_layers")):
                if path not in paths or key not in circuit:
                    why = f"no {path} pathway in this run" if path not in paths else f"the circuit declares no {key}"
                    out.append(target(name, "layers", task, None, f"AUROC ≥ {LAYER_AUC}", None, reason=why))
                    continue
                score = ds["nssd"].sel(task=task, pathway=path).values[:, sel].mean(-1)
                out.append(auc_target(name, "layers", task, score, np.isin(centres, circuit[key]), LAYER_AUC,
                                      pathway=path, peak_layer=int(centres[int(np.argmax(score))])))
        return out
