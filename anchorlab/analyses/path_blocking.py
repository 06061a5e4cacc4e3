"""docs/method.md §3.3: MFR after blocking instruction->last versus followed-context->last over a layer range
(paper §3.2.3 (1), Fig. 5b), decided by greedy generation at every generated position."""
from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr
from pydantic import Field

from ..engines.generation import greedy_generate, step_cells
from ..engines.knockout import role_mask
from ..engines.memory import plain_forward_bytes
from ..errors import UserError
from ..interventions.knockout import generation_blocker
from ..method.stats import bootstrap_ci
from ..plots.knockout import plot_path_blocking
from ..rows.layout import by_task_sample
from .base import (
    Analysis,
    AnalysisSpec,
    BatchCost,
    cells_column,
    layers_out_of_range,
    nothing_selected,
    param_attrs,
    verdict,
    with_ci,
)

SETTINGS = ("original", "instruction->last", "followed_context->last")
LABELS = ("follows", "fails", "neither")
# the paper blocks layers 20-25 of Qwen2.5-VL-7B's 28; by default the same share of depth
PAPER_RANGE = (20 / 28, 25 / 28)


class PathBlockingSpec(AnalysisSpec):
    kind: Literal["path_blocking"] = "path_blocking"
    layers: list[int] | None = Field(None, min_length=1,
                                     description="layers blocked (default: the paper's 20-25 of 28, scaled)")
    max_new_tokens: int = Field(8, ge=1)

    def check_model(self, n_layers: int, n_heads: int, where: str) -> list[str]:
        return layers_out_of_range(self.layers, n_layers, f"{where}.layers")


def default_layers(n_layers: int) -> list[int]:
    lo = min(int(round(PAPER_RANGE[0] * n_layers)), n_layers - 1)
    hi = min(int(round(PAPER_RANGE[1] * n_layers)), n_layers - 1)
    return list(range(lo, hi + 1))


class PathBlockingAnalysis(Analysis):
    kind = "path_blocking"
    spec_cls = PathBlockingSpec

    def block_layers(self) -> list[int]:
        n = self.ctx.bundle.n_layers
        layers = self.spec.layers if self.spec.layers is not None else default_layers(n)
        bad = [layer for layer in layers if not 0 <= layer < n]
        if bad or not layers:
            raise UserError(f"analyses[path_blocking].layers: {bad or 'empty'} not within 0..{n - 1}")
        return sorted(set(layers))

    def run_batch(self, batch, rows):
        from ..labels.rules import answer_forms, classify_answer

        bundle, backend = self.ctx.bundle, self.ctx.backend
        from ..engines.attention import ensure_dense_mask

        ensure_dense_mask(bundle, "path blocking")
        a, dev = bundle.adapter, bundle.device
        prompt_mask = batch.inputs["attention_mask"].to(dev)
        labels = np.zeros((len(rows), len(SETTINGS)), dtype=np.int8)
        answers, (b, s) = [], batch.inputs["input_ids"].shape
        cells = len(SETTINGS) * bundle.n_layers * s * b
        for k, setting in enumerate(SETTINGS):
            intervene = None
            if setting != "original":
                src = self._source(batch, rows, setting).to(dev)
                intervene = generation_blocker(a.layers, a.attention, self.block_layers(), src, prompt_mask)
            ids = greedy_generate(bundle, backend, batch.inputs, self.spec.max_new_tokens, intervene)
            cells += step_cells(ids, bundle.n_layers)
            texts = bundle.tokenizer.batch_decode(ids, skip_special_tokens=True)
            answers.append(texts)
            for i, (row, text) in enumerate(zip(rows, texts)):
                label = classify_answer(text, *answer_forms(row))
                labels[i, k] = LABELS.index(label)
        return {
            "label": labels,
            "answer": np.array(list(zip(*answers)), dtype=str),
            "cells": cells_column(len(rows), cells),
        }

    @staticmethod
    def _source(batch, rows, setting):
        """Source role per row: the instruction, or the context the instruction says to follow."""
        if setting == "instruction->last":
            return role_mask(batch, rows, "instruction", setting)
        return role_mask(batch, rows, ["vision" if r.task == "vf" else "context" for r in rows], setting)

    def reduce(self, rows, results, selected):
        tasks, samples, grid = by_task_sample(rows)
        labels = grid(results["label"])  # [T, S, settings]
        sel = grid(selected)
        ds = xr.Dataset(coords={"task": tasks, "setting": list(SETTINGS), "sample": samples, "bound": ["lo", "hi"]})
        ds["label"] = (("task", "setting", "sample"), labels.transpose(0, 2, 1))
        ds["label"].attrs.update(description="0 follows, 1 fails, 2 neither", flag_values=[0, 1, 2],
                                 flag_meanings="follows fails neither")
        ds["answer"] = (("task", "setting", "sample"), grid(results["answer"]).transpose(0, 2, 1))
        ds["selected"] = (("task", "sample"), sel)
        mfr, ci = [], []
        for t, task in enumerate(tasks):
            if not sel[t].any():
                raise nothing_selected(task)
            follows = (labels[t, sel[t]] == 0).astype(float).T  # [settings, n]
            mfr.append(follows.mean(-1))
            ci.append(bootstrap_ci(follows, self.spec.n_bootstrap, self.spec.ci_level, self.ctx.seed))
        ds["mfr"] = (("task", "setting"), np.array(mfr))
        ds["mfr_ci"] = (("task", "setting", "bound"), np.array(ci))
        ds["mfr"].attrs["description"] = "share of selected prompts whose generated answer follows the instruction"
        ds.attrs.update(
            analysis="path_blocking",
            rule="generation",
            blocked_layers=", ".join(map(str, self.block_layers())),
            model_layers=self.ctx.bundle.n_layers,
            followed_context="vision for vf, context for tf",
            decoder_cells=int(results["cells"].sum()),
            **param_attrs(self.spec),
        )
        return ds

    def batch_bytes(self, batch, rows, per_pass):
        return plain_forward_bytes(self.ctx.bundle, batch, 1, cache=True)

    def batch_cost(self, batch, rows, tables):
        """One greedy generation per setting, the same for both engines."""
        b, s = batch.inputs["input_ids"].shape
        n = len(SETTINGS)
        cost = BatchCost(variants=n, bytes=self.batch_bytes(batch, rows, 1), max_new_tokens=self.spec.max_new_tokens)
        for work in (cost.fast, cost.naive):
            work.add(n, n * self.ctx.bundle.n_layers * s * b, n, n * b)
        return cost

    @classmethod
    def figures(cls, ds, fig_dir):
        return plot_path_blocking(ds, fig_dir)

    @classmethod
    def claims(cls, ds):
        """The instruction path matters more: MFR with instruction->last blocked is below MFR with the
        followed context->last blocked (docs/method.md "Claims")."""
        out = []
        for task in ds["task"].values:
            m = {s: with_ci(ds, "mfr", task=task, setting=s) for s in ds["setting"].values}
            inst, ctx = (float(ds["mfr"].sel(task=task, setting=s)) for s in SETTINGS[1:])
            out.append(f"- Path blocking ({task}): MFR original {m['original']}, instruction↛last {m[SETTINGS[1]]}, "
                       f"followed context↛last {m[SETTINGS[2]]}; paper: the instruction path matters far more: "
                       f"{verdict(inst < ctx)}.")
        return out

    @classmethod
    def targets(cls, ds, circuit):
        """None: path blocking cuts whole routes over a layer range; no circuit element is scored by it."""
        return []
