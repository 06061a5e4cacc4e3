"""Causal head ranking by interchange (issue 24 item 5): for every (layer, head), its output (o_proj's
input slice) at the `positions` role takes its value from the instruction-swapped twin of the prompt
(same sample, image and context, the other task's instruction: a vf row's twin is the tf prompt), and
the followed-vs-competitor margin at `last` is read again.

margin = logit(y_f) - logit(y_c) at `last` (rows/layout.decision_rows); per (task, layer, head, sample):
`margin_change` = patched - clean and `flipped` = the sign of the margin changed. Heads are ranked per
task by the mean margin change, most negative first (`patch_rank`): the heads whose instruction-specific
output the decision needs. `approximation` adds attribution patching (gradient × activation
difference, one forward and one backward per prompt) and its Spearman correlation with the exact
ranking per task. Positions are paired between row and twin as `alignment` says (interventions/head_patch.py).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr
from pydantic import Field

from ..data.sample import TASKS
from ..engines import memory
from ..engines.head_patch import HeadPatchEngine, passes_and_cells, peak_bytes
from ..errors import UserError
from ..interventions.head_patch import ALIGNMENTS, align_positions
from ..method.stats import spearman
from ..plots.head_patching import plot_head_patching
from ..rows.batching import collate
from ..rows.encoding import encode
from ..rows.layout import by_task_sample
from ..rows.prompts import build_prompt
from .attribution import HEAD_AUC
from .base import (
    Analysis,
    AnalysisSpec,
    BatchCost,
    Role,
    cells_column,
    circuit_heads,
    head_auc_target,
    param_attrs,
    selected_per_sample,
    target,
    with_ci,
)
from .rankings import order_heads, task_means

TOP = 3  # heads quoted per task in summary.md


class HeadPatchingSpec(AnalysisSpec):
    kind: Literal["head_patching"] = "head_patching"
    positions: Role = Field("instruction", description="role whose positions are patched (as in signal)")
    engine: Literal["fast", "naive"] = "fast"
    heads_per_pass: int = Field(16, ge=1, description="fast engine: heads of one layer stacked into one pass")
    approximation: bool = Field(True, description="also attribution patching (one forward + backward per prompt)")
    alignment: Literal["right", "equal"] = Field(
        "right", description="pairing of the role's positions when the twin's has another length")


def twin_batch(bundle, rows, style):
    """The instruction-swapped twin of every row (the other task's prompt of the same sample), collated."""
    twins = [encode(bundle, build_prompt(r.sample, next(t for t in TASKS if t != r.task), style)) for r in rows]
    return collate(twins, bundle.adapter, bundle.pad_token_id)


def patch_pairs(batch, twins, rows, role: str, alignment: str):
    """(dst, src, valid) [B, P]: row positions patched, twin positions read (interventions/head_patch.py)."""
    for i, row in enumerate(rows):
        if role not in batch.roles[i]:
            raise UserError(f"head_patching.positions: unknown role {role!r} (roles: {', '.join(batch.roles[i])})")
    labels = [f"sample {r.sample.id!r} ({r.task})" for r in rows]
    return align_positions([batch.roles[i][role] for i in range(len(rows))],
                           [twins.roles[i][role] for i in range(len(rows))], alignment, labels, role)


class HeadPatchingAnalysis(Analysis):
    kind = "head_patching"
    spec_cls = HeadPatchingSpec
    pass_knob = "heads_per_pass"

    def pairs(self, batch, rows):
        """(twin batch, dst, src, valid) of a batch (checked: the role exists and the alignment accepts it)."""
        twins = twin_batch(self.ctx.bundle, rows, self.ctx.style)
        return (twins, *patch_pairs(batch, twins, rows, self.spec.positions, self.spec.alignment))

    def run_batch(self, batch, rows):
        spec, bundle = self.spec, self.ctx.bundle
        twins, dst, src, valid = self.pairs(batch, rows)
        engine = HeadPatchEngine(bundle, self.ctx.backend, spec.engine, spec.heads_per_pass)
        run = engine.run(batch, twins, rows, dst, src, valid, spec.approximation)
        out = {"margin": (run.logits[..., 0] - run.logits[..., 1]).numpy(),  # [B, L, H]
               "margin_clean": (run.clean[:, 0] - run.clean[:, 1]).numpy(),
               "n_patched": valid.sum(1).numpy(),
               "n_role": np.array([len(batch.roles[i][spec.positions]) for i in range(len(rows))]),
               "cells": cells_column(len(rows), run.cells)}
        if run.approx is not None:
            out["approx_change"] = run.approx.numpy()
        return out

    def reduce(self, rows, results, selected):
        spec, bundle = self.spec, self.ctx.bundle
        tasks, samples, grid = by_task_sample(rows)
        sel = grid(selected)
        for t, task in enumerate(tasks):
            if not sel[t].any():
                raise UserError(f"task {task}: no prompt is selected by data.filter or the analysis's rows setting; "
                                "nothing to aggregate")
        dims = ("task", "layer", "head", "sample")
        ds = xr.Dataset(coords={"task": tasks, "layer": list(range(bundle.n_layers)),
                                "head": list(range(bundle.n_heads)), "sample": samples, "bound": ["lo", "hi"]})
        clean = grid(results["margin_clean"])  # [T, S]
        patched = grid(results["margin"]).transpose(0, 2, 3, 1)  # [T, L, H, S]
        ds["margin_clean"] = (("task", "sample"), clean)
        ds["margin_change"] = (dims, patched - clean[:, None, None, :])
        ds["flipped"] = (dims, (patched > 0) != (clean[:, None, None, :] > 0))
        ds["selected"] = (("task", "sample"), sel)
        ds["n_patched"] = (("task", "sample"), grid(results["n_patched"]))
        ds["n_role"] = (("task", "sample"), grid(results["n_role"]))
        boot = (spec.n_bootstrap, spec.ci_level, self.ctx.seed)
        ds["margin_change_mean"], ds["margin_change_mean_ci"] = task_means(ds["margin_change"], sel, samples, *boot)
        ds["flip_rate"], ds["flip_rate_ci"] = task_means(ds["flipped"].astype(float), sel, samples, *boot)
        ds["patch_rank"] = head_ranks(ds["margin_change_mean"])
        ds["margin_change"].attrs["description"] = (
            f"margin (logit y_f - logit y_c at last) with the head's output at {spec.positions} taken from the "
            "instruction-swapped twin, minus the clean margin")
        ds["flipped"].attrs["description"] = (
            "the patched margin's sign differs from the clean one's (the decision flips)"
        )
        ds["patch_rank"].attrs["description"] = "1 = most negative mean margin_change over the task's selected samples"
        ds["n_patched"].attrs["description"] = "positions patched (paired with the twin's) out of n_role"
        ds.attrs.update(analysis="head_patching", alignment=ALIGNMENTS[spec.alignment],
                        decoder_cells=int(results["cells"].sum()), **param_attrs(spec))
        if "approx_change" in results:
            ds["approx_change"] = (dims, grid(results["approx_change"]).transpose(0, 2, 3, 1))
            ds["approx_change_mean"], ds["approx_change_mean_ci"] = task_means(ds["approx_change"], sel, samples, *boot)
            ds["approx_rank"] = head_ranks(ds["approx_change_mean"])
            rho = [spearman(ds["approx_change_mean"].sel(task=t).values, ds["margin_change_mean"].sel(task=t).values)
                   for t in tasks]
            ds["spearman"] = ("task", np.array(rho))
            ds["approx_change"].attrs["description"] = (
                "attribution patching: Σ over patched positions of (z_twin - z_clean)·∂margin/∂z for the head's "
                "o_proj input z, a first-order estimate of margin_change")
            ds["spearman"].attrs["description"] = (
                "Spearman rank correlation of approx_change_mean with margin_change_mean over heads"
            )
            ds.attrs.update({f"spearman_{t}": round(float(r), 6) for t, r in zip(tasks, rho)})
        return ds


    def batch_bytes(self, batch, rows, per_pass):
        spec, bundle = self.spec, self.ctx.bundle
        twins, dst, _, valid = self.pairs(batch, rows)
        (b, s), s_twin = batch.inputs["input_ids"].shape, twins.inputs["input_ids"].shape[1]
        return peak_bytes(memory.dims_of(bundle), spec.engine, b, s, s_twin, int(dst[valid].min()), dst.shape[1],
                          per_pass, spec.approximation, memory.n_patches(batch))

    def batch_cost(self, batch, rows, tables):
        """Both engines: the twin's and the clean pass, then one pass per head (naive) or per `heads_per_pass`
        heads of a layer over the suffix (fast); attribution patching's forward and backward on top."""
        spec, bundle = self.spec, self.ctx.bundle
        twins, dst, _, valid = self.pairs(batch, rows)
        (b, s), s_twin = batch.inputs["input_ids"].shape, twins.inputs["input_ids"].shape[1]
        cost = BatchCost(variants=bundle.n_layers * bundle.n_heads,
                         bytes=self.batch_bytes(batch, rows, spec.heads_per_pass))
        for mode, work in (("fast", cost.fast), ("naive", cost.naive)):
            work.add(*passes_and_cells(mode, bundle.n_layers, bundle.n_heads, spec.heads_per_pass, b, s, s_twin,
                                       int(dst[valid].min()), spec.approximation))
        return cost

    @classmethod
    def figures(cls, ds, fig_dir):
        return plot_head_patching(ds, fig_dir)

    @classmethod
    def claims(cls, ds):
        """Not a paper claim: the heads whose interchange moves the decision most, and how well attribution
        patching ranks them (reported for the method table, no verdict)."""
        out = []
        for task in ds["task"].values:
            rank = ds["patch_rank"].sel(task=task)
            quoted = []
            for r in range(1, TOP + 1):
                layer, head = (int(v[0]) for v in np.nonzero((rank == r).transpose("layer", "head").values))
                at = {"task": task, "layer": layer, "head": head}
                quoted.append(f"({layer}, {head}) Δmargin {with_ci(ds, 'margin_change_mean', **at)}, flips "
                              f"{with_ci(ds, 'flip_rate', **at)}")
            rho = (f"; attribution patching's Spearman ρ with this ranking {float(ds['spearman'].sel(task=task)):.3f}"
                   if "spearman" in ds else "")
            out.append(f"- Causal head ranking ({task}; each head at {ds.attrs['param_positions']} from the "
                       f"instruction-swapped twin): {'; '.join(quoted)}{rho}. Not a paper claim: reported.")
        return out

    @classmethod
    def targets(cls, ds, circuit):
        """Head-level: the patching score (the margin's mean drop) and attribution patching's, each as a ROC
        AUC against the circuit's heads ≥ HEAD_AUC (attribution's bound), above the layer-matched random sets'
        over prompt resamples (head_auc_target); not evaluable when the circuit acts at another role than the
        one patched."""
        scores = [("patching_head_auc", "margin_change", "patch_rank")]
        if "approx_change_mean" in ds:
            scores.append(("attribution_patching_head_auc", "approx_change", "approx_rank"))
        role = ds.attrs["param_positions"]
        positive = circuit_heads(circuit, ds.sizes["layer"], ds.sizes["head"], role)
        out = []
        for task in ds["task"].values:
            for name, score, rank in scores:
                if not positive.any():
                    out.append(target(name, "heads", task, None, f"AUROC ≥ {HEAD_AUC}", None,
                                      reason=f"the circuit names no heads at {role!r} (it acts at "
                                      f"{circuit.get('positions', 'instruction')!r}), the role this run patched"))
                    continue
                ranks = ds[rank].sel(task=task).transpose("layer", "head").values
                out.append(head_auc_target(
                    name, task, -ds[f"{score}_mean"].sel(task=task).transpose("layer", "head").values, positive,
                    HEAD_AUC, -selected_per_sample(ds, score, task),
                    circuit_ranks=sorted(int(r) for r in ranks[positive])))
        return out


def head_ranks(mean: xr.DataArray) -> xr.DataArray:
    """(task, layer, head) ranks: 1 = the most negative mean (ties: lower layer, then lower head)."""
    values = mean.transpose("task", "layer", "head").values
    ranks = np.zeros(values.shape, dtype=np.int64)
    for t, grid in enumerate(values):
        order = order_heads(-grid)
        ranks[t].reshape(-1)[order] = np.arange(1, order.size + 1)
    return xr.DataArray(ranks, dims=("task", "layer", "head"))
