"""docs/method.md §3.4–3.5: sublayer and per-head attribution of the arbitration margin (paper Fig. 6, 7, 8).

One nnsight trace per batch captures, at the positions P only, each decoder layer's input H^{l-1},
o_proj's input (the heads, before W_O mixes them) and output A^l, and the last layer's output. The
restricted lens runs inside the trace, so only [B, L, H, 2]-sized tensors leave it.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import xarray as xr
from pydantic import Field, model_validator

from ..adapters.paths import envoy_at
from ..method.head_contribution import head_contributions, margin, side_order, sublayer_deltas
from ..method.lens import PhiInputs, phi_states
from ..plots.attribution import plot_attribution
from ..rows.batching import layer_chunks, no_logits
from ..rows.layout import SIDES, by_task_sample, entity_rows, site_positions
from .base import (
    Analysis,
    OnePlainPass,
    PhiSpec,
    cells_column,
    circuit_heads,
    head_auc_target,
    nothing_selected,
    param_attrs,
    selected_per_sample,
    verdict,
)
from .rankings import rank_heads, task_means

METRICS = ("S_f", "dS")
SUBLAYERS = ("attn", "mlp")


class AttributionSpec(PhiSpec):
    """Φ's top-K positions are re-chosen for every state it is evaluated on."""

    kind: Literal["attribution"] = "attribution"
    sublayers: bool = Field(True, description="δ_A / δ_F per layer (docs/method.md §3.4) -> var delta")
    heads: bool = Field(True, description="δ_A^{l,h}(ΔS) per head (docs/method.md §3.5) -> var head_score + rankings")
    top_g: int = Field(40, ge=1, description="heads listed per task in top_heads_* (capped at layers × heads)")
    shared_top_n: int = Field(10, ge=1, description="shared heads = vf top-N ∩ tf top-N (capped at layers × heads)")
    lens_memory_mb: int = Field(256, ge=1, description="bound on the batched per-head lens block (chunks layers)")

    @model_validator(mode="after")
    def _something_to_do(self):
        if not (self.sublayers or self.heads):
            raise ValueError("sublayers and heads are both false: nothing to attribute")
        return self


def attribution_capture(envoy, layers_path, o_proj_path, sites, phi: PhiInputs, w_o, n_heads, want_heads, budget):
    """Runs inside the trace: Φ (vision, text) of H^{-1..L-1}, of H^{l-1} + A^l, and of H^{l-1} + head^{l,h}."""
    layers = envoy_at(envoy, layers_path)
    n_layers = len(layers)
    b = torch.arange(sites.shape[0], device=sites.device)[:, None]
    states, attn, z = [], [], []
    for layer in range(n_layers):
        states.append(layers[layer].input[b, sites])
        o_proj = envoy_at(layers[layer], o_proj_path)
        if want_heads:
            z.append(o_proj.input[b, sites])
        attn.append(o_proj.output[b, sites])
    states.append(layers[n_layers - 1].output[b, sites])
    h = torch.stack(states, 1).float()  # [B, L+1, P, d]: H^{-1} .. H^{L-1}
    phi_state = phi_states(h, phi)  # [B, L+1, 2]
    phi_attn = phi_states(h[:, :-1] + torch.stack(attn, 1).float(), phi)  # [B, L, 2]
    if not want_heads:
        return phi_state, phi_attn, torch.empty(0)
    z = torch.stack(z, 1)  # [B, L, P, H*hd]
    n_b, _, n_p, d = h.shape
    phi_heads = []
    for chunk in layer_chunks(n_layers, n_b * n_heads * n_p * d, budget):
        c = head_contributions(z[:, chunk], torch.stack([w_o[i] for i in chunk]), n_heads)  # [B, Lc, H, P, d]
        x = h[:, chunk, None] + c
        phi_heads.append(phi_states(x.flatten(1, 2), phi).unflatten(1, (len(chunk), n_heads)))
    return phi_state, phi_attn, torch.cat(phi_heads, 1)  # [B, L, H, 2]


class AttributionAnalysis(OnePlainPass, Analysis):
    kind = "attribution"
    spec_cls = AttributionSpec

    def run_batch(self, batch, rows):
        bundle, spec = self.ctx.bundle, self.spec
        sites, valid = site_positions(batch, rows, spec.positions)
        sites = sites[:, :-1]  # attribution reads P only (site_positions appends `last`)
        ids, member = entity_rows(rows)
        dev = bundle.device
        lens = bundle.lens
        w_o = [bundle.weight(f"{bundle.adapter.layers}.{i}.{bundle.adapter.o_proj}.weight")
               for i in range(bundle.n_layers)]
        budget = spec.lens_memory_mb * 2**20 // 4
        phi = PhiInputs(lens.rows(ids), member.to(dev), valid.to(dev), spec.k, spec.pool,
                        lens.norm if spec.final_norm else None)
        phi_state, phi_attn, phi_heads = self.ctx.backend.trace(  # the lens needs no model logits at all
            no_logits(batch.inputs), attribution_capture, bundle.adapter.layers, bundle.adapter.o_proj,
            sites.to(dev), phi, w_o, bundle.n_heads, spec.heads, budget,
        )
        followed = torch.tensor([0 if r.followed == "vision" else 1 for r in rows])
        phi_state, phi_attn = side_order(phi_state.cpu(), followed), side_order(phi_attn.cpu(), followed)
        out = {"phi": phi_state.numpy(), "phi_attn": phi_attn.numpy(),  # [B, L+1, 2], [B, L, 2] as (f, c)
               "cells": cells_column(len(rows), bundle.n_layers * batch.inputs["input_ids"].numel())}
        if spec.heads:
            phi_heads = side_order(phi_heads.cpu(), followed)
            out["head_score"] = (margin(phi_heads) - margin(phi_state[:, :-1, None])).numpy()  # [B, L, H]
        return out

    def reduce(self, rows, results, selected):
        spec, bundle = self.spec, self.ctx.bundle
        tasks, samples, grid = by_task_sample(rows)
        layers = list(range(bundle.n_layers))
        sel = grid(selected)  # [T, S]
        for t, task in enumerate(tasks):
            if not sel[t].any():
                raise nothing_selected(task)
        ds = xr.Dataset(coords={"task": tasks, "side": list(SIDES), "layer": layers, "sample": samples,
                                "bound": ["lo", "hi"]})
        phi = grid(results["phi"])  # [T, S, L+1, 2]
        phi_attn = grid(results["phi_attn"])  # [T, S, L, 2]
        ds["phi"] = (("task", "side", "layer", "sample"), phi[:, :, 1:].transpose(0, 3, 2, 1))
        ds["phi_embed"] = (("task", "side", "sample"), phi[:, :, 0].transpose(0, 2, 1))
        ds["phi_attn"] = (("task", "side", "layer", "sample"), phi_attn.transpose(0, 3, 2, 1))
        ds["selected"] = (("task", "sample"), sel)
        ds["phi_mean"], ds["phi_mean_ci"] = self._aggregate(ds["phi"], sel, samples)
        ds["phi"].attrs["description"] = "Φ of the followed / competing modality at H^l (layer l's output)"
        ds["phi_embed"].attrs["description"] = "Φ at H^{-1}, the embedding output (input to layer 0)"
        ds["phi_attn"].attrs["description"] = "Φ at H^{l-1} + A^l (after attention, before the MLP)"
        if spec.sublayers:
            delta = sublayer_deltas(torch.from_numpy(phi), torch.from_numpy(phi_attn)).numpy()  # [T, S, 2, 2, L]
            ds = ds.assign_coords(metric=list(METRICS), sublayer=list(SUBLAYERS))
            ds["delta"] = (("task", "metric", "sublayer", "layer", "sample"), delta.transpose(0, 2, 3, 4, 1))
            ds["delta_mean"], ds["delta_mean_ci"] = self._aggregate(ds["delta"], sel, samples)
            ds["delta"].attrs["description"] = (
                "δ_A^l(M) = M(H^{l-1}+A^l) - M(H^{l-1}); δ_F^l(M) = M(H^l) - "
                "M(H^{l-1}+A^l); metric S_f = Φ_f, dS = Φ_f - Φ_c (docs/method.md §3.4)"
            )
        if spec.heads:
            ds = ds.assign_coords(head=list(range(bundle.n_heads)))
            ds["head_score"] = (("task", "layer", "head", "sample"), grid(results["head_score"]).transpose(0, 2, 3, 1))
            ds["head_score_mean"], ds["head_score_ci"] = self._aggregate(ds["head_score"], sel, samples)
            ds["head_score"].attrs["description"] = "δ_A^{l,h}(ΔS) = ΔS(H^{l-1} + head^{l,h} W_O^{l,h}) - ΔS(H^{l-1})"
            ds = rank_heads(ds, spec.top_g, spec.shared_top_n)
        ds.attrs.update(analysis="attribution", topk_selection="recomputed for every evaluated state",
                        decoder_cells=int(results["cells"].sum()), **param_attrs(spec))
        return ds

    def _aggregate(self, values: xr.DataArray, sel: np.ndarray, samples: list[str]):
        return task_means(values, sel, samples, self.spec.n_bootstrap, self.spec.ci_level, self.ctx.seed)

    @classmethod
    def figures(cls, ds, fig_dir):
        return plot_attribution(ds, fig_dir)

    @classmethod
    def claims(cls, ds):
        """Deep attention arbitrates, MLPs resist: summed over the deeper half of the layers, δ_A(ΔS) > 0 > δ_F(ΔS)
        (docs/method.md "Claims")."""
        if "delta_mean" not in ds:
            return []
        out = []
        layers = ds["layer"].values
        deep = layers[len(layers) // 2 :]
        for task in ds["task"].values:
            a = float(ds["delta_mean"].sel(task=task, metric="dS", sublayer="attn", layer=deep).sum())
            f = float(ds["delta_mean"].sel(task=task, metric="dS", sublayer="mlp", layer=deep).sum())
            out.append(f"- Deep attention arbitrates, MLPs resist ({task}): summed over the deeper half of layers, "
                       f"δ_A(ΔS) = {a:.3f}, δ_F(ΔS) = {f:.3f}; paper: δ_A > 0 > δ_F: {verdict(a > 0 > f)}.")
        return out

    @classmethod
    def targets(cls, ds, circuit):
        """Head-level: the mean head score's AUROC against the circuit's heads at the positions read ≥ HEAD_AUC,
        above the layer-matched random sets' over prompt resamples (head_auc_target)."""
        if "head_rank" not in ds:
            return []
        positive = circuit_heads(circuit, ds.sizes["layer"], ds.sizes["head"], ds.attrs.get("param_positions"))
        return [
            head_auc_target(
                "attribution_head_auc",
                task,
                ds["head_score_mean"].sel(task=task).values,
                positive,
                HEAD_AUC,
                selected_per_sample(ds, "head_score", task),
                circuit_ranks=sorted(int(r) for r in ds["head_rank"].sel(task=task).values[positive]),
            )
            for task in ds["task"].values
        ]


HEAD_AUC = 0.95  # verify's head-level bound (docs/method.md "Recovery targets")
