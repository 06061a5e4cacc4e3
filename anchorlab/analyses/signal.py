"""docs/method.md §3.2: signal Φ by the restricted logit lens, LDAR and decision synchrony (paper Fig. 5a, 6a)."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import xarray as xr
from pydantic import Field

from ..adapters.paths import envoy_at
from ..errors import UserError
from ..method.lens import PhiInputs, pooled_logits, restricted_logits, top_k_mean
from ..method.signal import ldar, synchrony
from ..method.stats import bootstrap_ci
from ..plots.signal import plot_signal
from ..rows.batching import no_logits
from ..rows.layout import MODALITIES, SIDES, by_task_sample, decision_rows, entity_rows, site_positions
from .base import (
    Analysis,
    OnePlainPass,
    PhiSpec,
    auc_target,
    cells_column,
    layers_out_of_range,
    nothing_selected,
    param_attrs,
    target,
    verdict,
    with_ci,
)

LDAR_EARLY, LDAR_DEEP, SYNC = 0.65, 0.95, 0.9  # summary.md's rules (docs/method.md "Claims")
LAYER_AUC = 0.95  # verify's layer-level bound (docs/method.md "Recovery targets")


class SignalSpec(PhiSpec):
    kind: Literal["signal"] = "signal"
    layers: list[int] | None = Field(None, min_length=1, description="layers to read (default: all)")

    def check_model(self, n_layers: int, n_heads: int, where: str) -> list[str]:
        return layers_out_of_range(self.layers, n_layers, f"{where}.layers")


def lens_capture(envoy, layers_path, read_layers, sites, phi: PhiInputs, dec_w, norm):
    """Runs inside the trace: pooled dictionary logits per (layer, modality, site), and the final
    layer's logits of the two decision tokens at `last` (the model's own prediction, through `norm`
    whether or not the lens uses it). Φ's top-K step (method.lens.top_k_mean) follows outside the
    trace, as in `phi_states`."""
    layers = envoy_at(envoy, layers_path)
    b = torch.arange(sites.shape[0], device=sites.device)[:, None]
    pooled, decision = [], None
    final = len(layers) - 1
    for layer in read_layers:
        h = layers[layer].output[b, sites]
        pooled.append(pooled_logits(h, phi.rows, phi.member, phi.pool, phi.norm))
        if layer == final:
            decision = restricted_logits(norm(h[:, -1:]), dec_w)[:, 0]
    return torch.stack(pooled, 1), decision


class SignalAnalysis(OnePlainPass, Analysis):
    kind = "signal"
    spec_cls = SignalSpec

    def layer_ids(self) -> list[int]:
        n = self.ctx.bundle.n_layers
        layers = self.spec.layers if self.spec.layers is not None else list(range(n))
        bad = [layer for layer in layers if not 0 <= layer < n]
        if bad:
            raise UserError(f"analyses[signal].layers: {bad} out of range for a model with {n} layers (0..{n - 1})")
        return sorted(set(layers))

    def run_batch(self, batch, rows):
        bundle, spec = self.ctx.bundle, self.spec
        layers = self.layer_ids()
        read = sorted(set(layers) | {bundle.n_layers - 1})
        sites, valid = site_positions(batch, rows, spec.positions)
        ids, member = entity_rows(rows)
        lens = bundle.lens
        dec = decision_rows(rows)  # [B, 2] = (followed, competitor) answer tokens
        dev = bundle.device
        pooled, decision = self.ctx.backend.trace(
            no_logits(batch.inputs), lens_capture, bundle.adapter.layers, read, sites.to(dev),
            PhiInputs(lens.rows(ids), member.to(dev), valid.to(dev), spec.k, spec.pool,
                      lens.norm if spec.final_norm else None),
            lens.rows(dec), lens.norm,
        )
        keep = [read.index(layer) for layer in layers]
        pooled = pooled[:, keep].float().cpu()  # [B, L, 2, P+1]
        n_pos = valid.shape[1]
        phi = top_k_mean(pooled[..., :n_pos], valid[:, None, None, :], spec.k)  # [B, L, 2]
        return {
            "signal": phi.transpose(1, 2).numpy(),  # [B, 2, L]
            "signal_last": pooled[..., n_pos].transpose(1, 2).numpy(),
            "decision_margin": (decision[:, 0] - decision[:, 1]).float().cpu().numpy(),
            "cells": cells_column(len(rows), bundle.n_layers * batch.inputs["input_ids"].numel()),
        }

    def reduce(self, rows, results, selected):
        spec = self.spec
        layers = self.layer_ids()
        tasks, samples, grid = by_task_sample(rows)
        coords = {"task": tasks, "modality": list(MODALITIES), "layer": layers, "sample": samples}
        signal = grid(results["signal"])  # [T, S, 2, L]
        signal_last = grid(results["signal_last"])
        sel = grid(selected)  # [T, S]
        ds = xr.Dataset(coords=coords)
        ds["signal"] = (("task", "modality", "layer", "sample"), signal.transpose(0, 2, 3, 1))
        ds["signal_last"] = (("task", "modality", "layer", "sample"), signal_last.transpose(0, 2, 3, 1))
        ds["selected"] = (("task", "sample"), sel)
        ds["followed_first_token"] = (("task", "sample"), grid(results["decision_margin"]) > 0)
        ds["sync"] = (
            ("task", "layer", "sample"),
            synchrony(signal[:, :, 0], signal[:, :, 1], signal_last[:, :, 0], signal_last[:, :, 1]).transpose(0, 2, 1),
        )
        ds = ds.assign_coords(side=list(SIDES), bound=["lo", "hi"])
        ldar_v, ldar_ci, sync_v, sync_ci, mean_v, mean_ci = [], [], [], [], [], []
        for t, task in enumerate(tasks):
            chosen = sel[t]
            if not chosen.any():
                raise nothing_selected(task)
            f, c = (0, 1) if task == "vf" else (1, 0)
            phi_f, phi_c = signal[t, chosen, f].T, signal[t, chosen, c].T  # [L, n]
            wins = (phi_f > phi_c).astype(float)
            ldar_v.append(ldar(phi_f, phi_c))
            ldar_ci.append(self._ci(wins))
            in_sync = ds["sync"].values[t][:, chosen].astype(float)
            sync_v.append(in_sync.mean(-1))
            sync_ci.append(self._ci(in_sync))
            sides = np.stack([phi_f, phi_c])  # [2, L, n]
            mean_v.append(sides.mean(-1))
            mean_ci.append(self._ci(sides))
        ds["ldar"] = (("task", "layer"), np.array(ldar_v))
        ds["ldar_ci"] = (("task", "layer", "bound"), np.array(ldar_ci))
        ds["sync_rate"] = (("task", "layer"), np.array(sync_v))
        ds["sync_rate_ci"] = (("task", "layer", "bound"), np.array(sync_ci))
        ds["signal_mean"] = (("task", "side", "layer"), np.array(mean_v))
        ds["signal_mean_ci"] = (("task", "side", "layer", "bound"), np.array(mean_ci))
        ds["signal"].attrs.update(
            description="Φ_m at the chosen positions (docs/method.md §3.2)", positions=spec.positions
        )
        ds["ldar"].attrs["description"] = "share of selected samples with Φ_f > Φ_c"
        ds["sync"].attrs["description"] = "sign(Φ_v-Φ_t) at positions equals the sign at last"
        ds["signal_mean"].attrs["description"] = "mean Φ of the followed (f) and competing (c) modality"
        ds.attrs.update(analysis="signal", decoder_cells=int(results["cells"].sum()), **param_attrs(spec))
        return ds

    def _ci(self, values: np.ndarray) -> np.ndarray:
        return bootstrap_ci(values, self.spec.n_bootstrap, self.spec.ci_level, self.ctx.seed)

    @classmethod
    def figures(cls, ds, fig_dir):
        return plot_signal(ds, fig_dir)

    @classmethod
    def claims(cls, ds):
        """LDAR phase transition: near chance at the first layer read (≤ LDAR_EARLY), above LDAR_DEEP at the
        last; decision synchrony above SYNC at the last layer (docs/method.md "Claims")."""
        out, layers = [], ds["layer"].values
        for task in ds["task"].values:
            ldar_ = ds["ldar"].sel(task=task).values
            early, deep = float(ldar_[0]), float(ldar_[-1])
            out.append(
                f"- LDAR phase transition ({task}): LDAR {with_ci(ds, 'ldar', task=task, layer=layers[0])} at the "
                f"first layer read ({int(layers[0])}), {with_ci(ds, 'ldar', task=task, layer=layers[-1])} at the last "
                f"({int(layers[-1])}); paper: ~0.5 early (≤ {LDAR_EARLY}), > {LDAR_DEEP} deep: "
                f"{verdict(early <= LDAR_EARLY and deep > LDAR_DEEP)}."
            )
            sync = ds["sync_rate"].sel(task=task).values
            out.append(
                f"- Decision synchrony ({task}): {ds.attrs.get('param_positions', 'the positions')} vs last agree "
                f"on {sync[-1]:.3f} of prompts at the last layer "
                f"({with_ci(ds, 'sync_rate', task=task, layer=layers[-1])}); paper: > {SYNC}: "
                f"{verdict(sync[-1] > SYNC)}."
            )
        return out

    @classmethod
    def targets(cls, ds, circuit):
        """Layer-level: where LDAR rises (per layer read, LDAR minus the layer before's; 0.5 before the first)
        against the circuit's arbitration layers, AUROC ≥ LAYER_AUC."""
        layers = np.array([int(x) for x in ds["layer"].values])
        out = []
        for task in ds["task"].values:
            ldar_ = ds["ldar"].sel(task=task).values
            rise = np.diff(np.concatenate([[0.5], ldar_]))
            if "arbitration_layers" not in circuit:
                out.append(target("ldar_rise_auc", "layers", task, None, f"AUROC ≥ {LAYER_AUC}", None,
                                  reason="the circuit declares no arbitration_layers"))
                continue
            out.append(auc_target("ldar_rise_auc", "layers", task, rise, np.isin(layers, circuit["arbitration_layers"]),
                                  LAYER_AUC, first=round(float(ldar_[0]), 4), last=round(float(ldar_[-1]), 4)))
        return out



