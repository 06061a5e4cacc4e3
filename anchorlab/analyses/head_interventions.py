"""docs/method.md §3.6 / §4: head blocking and amplification at instruction positions, MFR sweeps over the
number of heads G or the factor α, against random, layer-matched and shared head sets, with a
general-capability check on no-conflict prompts (paper §4.2.2, Fig. 9)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import xarray as xr
from pydantic import AfterValidator, Field

from ..engines import memory
from ..engines.knockout import role_mask
from ..interventions.head_scaling import scale_table
from ..labels.rules import answer_forms, classify_answer
from ..method.stats import bootstrap_ci
from ..plots.head_interventions import plot_heads
from ..rows.batching import collate
from ..rows.layout import by_task_sample, role_problems
from .base import (
    Analysis,
    AnalysisSpec,
    BatchCost,
    Role,
    cells_column,
    circuit_set_target,
    distinct,
    heads_at,
    param_attrs,
    target,
    verdict,
    with_ci,
)
from .head_sets import HeadSource, draw_sets, neutral_row, rankings_problems

log = logging.getLogger("anchorlab")
SETTINGS = ("original", "targeted", "random", "random_layer_matched", "shared")


class HeadsSpec(AnalysisSpec):
    kind: Literal["heads_block", "heads_amplify"]
    heads_from: str | None = Field(None, description="attribution result (.nc); default: this run's attribution")
    settings: Annotated[list[Literal["original", "targeted", "random", "random_layer_matched", "shared"]],
                        AfterValidator(distinct)] = Field(
        default_factory=lambda: list(SETTINGS), min_length=1)
    n_heads: Annotated[list[Annotated[int, Field(ge=1)]], AfterValidator(distinct)] = Field(
        default_factory=lambda: [1, 2, 4, 8],
        min_length=1,
        description="G: heads per set (block: swept; amplify: the first value)",
    )
    alphas: Annotated[list[Annotated[float, Field(gt=0, allow_inf_nan=False)]], AfterValidator(distinct)] = Field(
        default_factory=lambda: [1.0, 2.0, 5.0, 10.0],
        min_length=1,
        description="amplification factors (amplify only), > 0",
    )
    seeds: int = Field(10, ge=1, description="random head sets drawn per G")
    exclude_targeted: bool = True
    positions: Role = "instruction"
    rule: Literal["generation", "first_token"] = "generation"
    max_new_tokens: int = Field(8, ge=1)
    engine: Literal["fast", "naive"] = "fast"
    settings_per_pass: int = Field(8, ge=1)
    general_check: bool = Field(True, description="also score no-conflict prompts (accuracy)")
    rows: Literal["auto", "data", "all", "follows", "fails"] = Field(
        "auto",
        description="auto: blocking on prompts the model follows, amplifying on those it fails (docs/method.md §3.6)",
    )

    def check_model(self, n_layers: int, n_heads: int, where: str) -> list[str]:
        total = n_layers * n_heads
        big = [g for g in self.n_heads if g > total]
        problems = (
            [f"{where}.n_heads: {big} exceed the model's {total} heads ({n_layers} layers × {n_heads})"] if big else []
        )
        if self.heads_from and Path(self.heads_from).exists():  # a missing file is the executor's to name
            problems += rankings_problems(self.heads_from, n_layers, n_heads, f"{where}.heads_from")
        return problems

    def check_rows(self, rows, where):
        problems = role_problems(rows, self.positions, f"{where}.positions")
        if self.heads_from and Path(self.heads_from).is_file():
            problems += rankings_problems(self.heads_from, None, None, f"{where}.heads_from",
                                          tasks=tuple(dict.fromkeys(r.task for r in rows)))
        return problems

    def selection(self) -> str:
        if self.rows != "auto":
            return self.rows
        return "follows" if self.kind == "heads_block" else "fails"

    def sources(self) -> dict[str, str]:
        return {"heads_from": "attribution"}

    def distinct_tables(self) -> int:
        """Distinct [L, H] tables of the sweep, every random draw assumed distinct (an upper bound)."""
        block = self.kind == "heads_block"
        keys = set()
        for v, value in enumerate(self.n_heads if block else self.alphas):
            factor = 0.0 if block else float(value)
            for setting in self.settings:
                if setting == "original" or factor == 1.0:
                    keys.add("identity")
                elif setting in ("targeted", "shared"):
                    keys.add((setting, v))
                else:
                    keys.update((setting, v, seed) for seed in range(self.seeds))
        return len(keys)


class HeadsAnalysis(Analysis):
    kind = "heads_block"
    spec_cls = HeadsSpec
    pass_knob = "settings_per_pass"

    @property
    def sweep_dim(self) -> str:
        return "n_heads" if self.spec.kind == "heads_block" else "alpha"

    def sweep_values(self) -> list:
        return list(self.spec.n_heads) if self.spec.kind == "heads_block" else list(self.spec.alphas)

    def head_sets(self, task: str) -> dict[tuple[str, int, int], list]:
        """(setting, sweep index, seed) -> the heads that setting scales for this task."""
        return self._draw(task)[0]

    def _draw(self, task: str) -> tuple[dict[tuple[str, int, int], list], np.ndarray]:
        bundle = self.ctx.bundle
        source = HeadSource(self.spec.heads_from, self.ctx.results, bundle.n_layers, bundle.n_heads)
        return draw_sets(self.spec, source, task, self.sweep_values(), self.ctx.seed)

    def tables(self, task: str) -> tuple[torch.Tensor, dict]:
        """Every distinct [L, H] table of this task's sweep, and (setting, value, seed) -> index."""
        bundle = self.ctx.bundle
        unique: dict[bytes, int] = {}
        tables, index = [], {}
        for (setting, v, seed), heads in self.head_sets(task).items():
            factor = 0.0 if self.spec.kind == "heads_block" else float(self.sweep_values()[v])
            table = scale_table(heads, factor, bundle.n_layers, bundle.n_heads)
            key = table.numpy().tobytes()
            if key not in unique:
                unique[key] = len(tables)
                tables.append(table)
            index[(setting, v, seed)] = unique[key]
        return torch.stack(tables), index

    def run_batch(self, batch, rows):
        from ..engines.head_sweep import HeadEngine

        spec, bundle = self.spec, self.ctx.bundle
        engine = HeadEngine(bundle, self.ctx.backend, spec.engine, spec.settings_per_pass)
        shape = (len(rows), len(spec.settings), len(self.sweep_values()), spec.seeds)
        follows, neutral_ok = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        applicable = np.zeros(len(rows), dtype=bool)
        cells = 0
        for task in dict.fromkeys(r.task for r in rows):
            idx = [i for i, r in enumerate(rows) if r.task == task]
            tables, index = self.tables(task)
            part = [rows[i] for i in idx]
            follows[idx], n = self._score(engine, part, tables, index, [answer_forms(r) for r in part])
            cells += n
            if spec.general_check:
                twins = [(i, self._neutral_row(rows[i])) for i in idx]
                twins = [(i, r) for i, r in twins if r is not None]
                if twins:
                    # correct = the image's answer (both contexts now support it), not the old text answer
                    forms = [(r.sample.forms("vision"), r.sample.forms("text")) for _, r in twins]
                    applicable[[i for i, _ in twins]] = True
                    neutral_ok[[i for i, _ in twins]], n = self._score(
                        engine, [r for _, r in twins], tables, index, forms
                    )
                    cells += n
        return {"follows": follows, "neutral_correct": neutral_ok, "neutral_applicable": applicable,
                "cells": cells_column(len(rows), cells)}

    def _score(self, engine, rows, tables, index, forms) -> tuple[np.ndarray, int]:
        """follows [rows, settings, values, seeds] and the decoder cells of the prompt passes."""
        bundle, spec = self.ctx.bundle, self.spec
        batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
        run = engine.run(batch, rows, tables, spec.positions, spec.rule, spec.max_new_tokens)
        if spec.rule == "first_token":
            ok = (run.margins > 0).numpy()  # [B, N]
        else:
            texts = [bundle.tokenizer.batch_decode(ids, skip_special_tokens=True) for ids in run.tokens]
            ok = np.array([[classify_answer(texts[n][i], *forms[i]) == "follows" for n in range(len(tables))]
                           for i in range(len(rows))])
        out = np.zeros((len(rows), len(spec.settings), len(self.sweep_values()), spec.seeds), dtype=bool)
        for (setting, v, seed), n in index.items():
            out[:, spec.settings.index(setting), v, seed] = ok[:, n]
        return out, run.cells

    def _neutral_row(self, row):
        return neutral_row(row, self.ctx.style, self.ctx.bundle)

    def reduce(self, rows, results, selected):
        spec = self.spec
        tasks, samples, grid = by_task_sample(rows)
        follows = grid(results["follows"])  # [T, S, settings, V, seeds]
        neutral, applicable = grid(results["neutral_correct"]), grid(results["neutral_applicable"])
        sel = grid(selected)
        empty = [task for t, task in enumerate(tasks) if not sel[t].any()]
        if empty:  # the executor only runs an analysis with some selected prompt: at least one task stays
            keep = [t for t, task in enumerate(tasks) if task not in empty]
            tasks, follows, neutral, applicable, sel = ([tasks[t] for t in keep], follows[keep], neutral[keep],
                                                        applicable[keep], sel[keep])
        dims = ("task", "setting", self.sweep_dim, "seed")
        ds = xr.Dataset(coords={"task": tasks, "setting": list(spec.settings), self.sweep_dim: self.sweep_values(),
                                "seed": list(range(spec.seeds)), "sample": samples, "bound": ["lo", "hi"]})
        ds["follows"] = (dims + ("sample",), follows.transpose(0, 2, 3, 4, 1))
        ds["selected"] = (("task", "sample"), sel)
        mfr, mfr_ci, acc, acc_ci, n_neutral = [], [], [], [], []
        for t, task in enumerate(tasks):
            f = follows[t, sel[t]].astype(float)  # [n, settings, V, seeds]
            mfr.append(f.mean(0))
            mfr_ci.append(self._ci(f.mean(-1).transpose(1, 2, 0)))  # CI of the seed-averaged MFR
            chosen = sel[t] & applicable[t]
            n_neutral.append(int(chosen.sum()))
            a = neutral[t, chosen].astype(float) if chosen.any() else np.zeros((1, *f.shape[1:]))
            acc.append(a.mean(0))
            acc_ci.append(self._ci(a.mean(-1).transpose(1, 2, 0)))
        ds["mfr"] = (dims, np.array(mfr))
        ds["mfr_ci"] = (("task", "setting", self.sweep_dim, "bound"), np.array(mfr_ci))
        ds["mfr_seed_mean"] = ds["mfr"].mean("seed")
        ds["accuracy"] = (dims, np.array(acc))
        ds["accuracy_ci"] = (("task", "setting", self.sweep_dim, "bound"), np.array(acc_ci))
        ds["n_neutral"] = ("task", np.array(n_neutral))
        drawn = {task: self._draw(task) for task in tasks}  # (sets, control reuse)
        sizes = [[[len(drawn[task][0][(s, v, 0)]) for v in range(len(self.sweep_values()))] for s in spec.settings]
                 for task in tasks]
        ds["set_size"] = (("task", "setting", self.sweep_dim), np.array(sizes))
        if "targeted" in spec.settings:  # what verify compares with a circuit's heads
            ds.attrs.update(
                {
                    f"targeted_heads_{task}": json.dumps(
                        {
                            str(value): [list(h) for h in drawn[task][0][("targeted", v, 0)]]
                            for v, value in enumerate(self.sweep_values())
                        }
                    )
                    for task in tasks
                }
            )
        ds["set_size"].attrs["description"] = "heads in the set (seed 0); 0 for original, and for an empty shared set"
        if "random_layer_matched" in spec.settings:
            ds["control_reuses_targeted"] = (("task", self.sweep_dim, "seed"), np.array([drawn[t][1] for t in tasks]))
            ds["control_reuses_targeted"].attrs["description"] = (
                "targeted heads inside the random layer-matched set: 0 is a clean control; with exclude_targeted, "
                "> 0 only where a layer had too few other heads (that point is no control)")
        ds["mfr"].attrs["description"] = f"modality following ratio ({spec.rule}) over the task's selected prompts"
        ds["accuracy"].attrs["description"] = (
            "accuracy on no-conflict twins (text context made to agree with the image)"
        )
        ds.attrs.update(analysis=spec.kind, rule=spec.rule, sweep_dim=self.sweep_dim,
                        decoder_cells=int(results["cells"].sum()), **param_attrs(spec))
        # distinct [L, H] tables each task ran (equal draws share one): what `anchorlab estimate` prices
        ds.attrs.update(
            {f"head_tables_{task}": len(self.tables(task)[0]) for task in dict.fromkeys(r.task for r in rows)}
        )
        if empty:
            ds.attrs["tasks_not_run"] = f"{', '.join(empty)}: no prompt selected (rows: {self.spec.selection()})"
        return ds

    def _ci(self, values):
        return bootstrap_ci(values, self.spec.n_bootstrap, self.spec.ci_level, self.ctx.seed)



    def batch_bytes(self, batch, rows, per_pass):
        dims = memory.dims_of(self.ctx.bundle)
        b, s = batch.inputs["input_ids"].shape
        generation = memory.plain_forward_bytes(self.ctx.bundle, batch, 1, cache=True)
        if self.spec.engine == "naive":
            return generation
        return (
            memory.kv_bytes(dims, b, s, dims.n_layers) + memory.pass_bytes(dims, b, s, 0, per_pass, 0, 0) + generation
        )

    def batch_cost(self, batch, rows, tables):
        """One engine run per task and twin set (run_batch): fast = a clean pass, then the suffix from the first
        patched position for every table, settings_per_pass at a time; naive = one pass per table."""
        spec, bundle = self.spec, self.ctx.bundle
        n_layers = bundle.n_layers
        generation = spec.rule != "first_token"
        cost = BatchCost(variants=0, max_new_tokens=spec.max_new_tokens if generation else 1)
        tasks = list(dict.fromkeys(r.task for r in rows))
        parts = [(t, [r for r in rows if r.task == t]) for t in tasks]
        if spec.general_check:
            parts += [(t, [n for n in map(self._neutral_row, part) if n is not None]) for t, part in parts]
        dims = memory.dims_of(bundle)
        for task, part in (p for p in parts if p[1]):
            n_tables = int(tables.get(task, spec.distinct_tables()))
            cost.variants = max(cost.variants, n_tables)
            pb = collate([r.encoded for r in part], bundle.adapter, bundle.pad_token_id)
            bb, ss = pb.inputs["input_ids"].shape
            p0 = int(torch.where(role_mask(pb, part, spec.positions, "heads").any(0))[0].min())
            chunks = -(-n_tables // spec.settings_per_pass)
            cost.fast.add(1 + chunks, n_layers * ss * bb + n_layers * (ss - p0) * n_tables * bb,
                          chunks * generation, n_tables * bb * generation)
            cost.naive.add(n_tables, n_tables * n_layers * ss * bb, n_tables * generation, n_tables * bb * generation)
            g = min(n_tables, spec.settings_per_pass)
            cost.bytes = max(cost.bytes, memory.plain_forward_bytes(bundle, pb, 0, cache=True),
                             memory.kv_bytes(dims, bb, ss, n_layers) + memory.pass_bytes(dims, bb, ss, p0, g, 0, 0))
        return cost

    @classmethod
    def figures(cls, ds, fig_dir):
        return plot_heads(ds, fig_dir)

    @classmethod
    def claims(cls, ds):
        """At the sweep's largest value: blocking lowers MFR more than blocking random heads; amplifying raises
        MFR on failures above both random heads and the original (docs/method.md "Claims")."""
        kind, dim = ds.attrs["analysis"], ds.attrs.get("sweep_dim", "n_heads")
        settings = list(ds["setting"].values)
        if "targeted" not in settings or "random" not in settings:
            return [f"- {kind}: not tested (needs targeted and random settings)."]
        out = []
        for task in ds["task"].values:
            value = ds[dim].values[-1]
            at = {dim: value}
            t, r = (with_ci(ds, "mfr", task=task, setting=s, **at) for s in ("targeted", "random"))
            o = float(ds["mfr"].sel(task=task, setting="original").mean())
            tv, rv = (float(ds["mfr"].sel(task=task, setting=s, **at).mean()) for s in ("targeted", "random"))
            acc = (f"; no-conflict accuracy {with_ci(ds, 'accuracy', task=task, setting='targeted', **at)} vs "
                   f"{with_ci(ds, 'accuracy', task=task, setting='original', **at)} original"
                   if int(ds["n_neutral"].sel(task=task)) else "")
            if kind == "heads_block":
                out.append(f"- Blocking {value} targeted heads ({task}): MFR {t} vs {r} for random heads (original "
                           f"{o:.3f}){acc}; paper: targeted blocking lowers MFR more than random: {verdict(tv < rv)}.")
            else:
                out.append(
                    f"- Amplifying targeted heads ×{value} ({task}, on failures): MFR {t} vs {r} for random heads "
                    f"(original {o:.3f}); paper: amplification restores following: {verdict(tv > max(rv, o))}."
                )
        return out

    @classmethod
    def targets(cls, ds, circuit):
        """Head-level, at G = |circuit|: the blocked heads are the circuit's, MFR ≤ BLOCK_MFR with a drop ≥
        BLOCK_DROP and a CI below random's, and random heads' drop ≤ RANDOM_DROP (the random arm checked)."""
        role = ds.attrs.get("param_positions")
        g = len(heads_at(circuit, role))
        values = [int(v) for v in ds["n_heads"].values]
        bound = f"MFR ≤ {BLOCK_MFR}, drop ≥ {BLOCK_DROP}, CI below random's, random drop ≤ {RANDOM_DROP}"
        out = []
        for task in ds["task"].values:
            if g not in values or "random" not in ds["setting"].values or f"targeted_heads_{task}" not in ds.attrs:
                why = (f"the circuit names no heads at {role!r}" if g == 0 else
                       f"the sweep has no n_heads = |circuit| = {g}" if g not in values
                       else "needs the targeted and random settings")
                out.append(target("blocking", "heads", task, None, bound, None, reason=why))
                continue
            at = dict(task=task, n_heads=g)
            o, tv, rv = (float(ds["mfr"].sel(setting=s, **at).mean()) for s in ("original", "targeted", "random"))
            tci, rci = (ds["mfr_ci"].sel(setting=s, **at).values.tolist() for s in ("targeted", "random"))
            works = tv <= BLOCK_MFR and o - tv >= BLOCK_DROP and tci[1] < rci[0] and o - rv <= RANDOM_DROP
            chosen = json.loads(ds.attrs[f"targeted_heads_{task}"])[str(g)]
            out.append(circuit_set_target("blocking", task, chosen, circuit, works, bound, role, original=round(o, 4),
                                          targeted=round(tv, 4), random=round(rv, 4)))
        return out


# verify's bounds (docs/method.md "Recovery targets")
BLOCK_MFR, BLOCK_DROP, RANDOM_DROP, REPAIR, RANDOM_REPAIR = 0.55, 0.45, 0.05, 0.5, 0.1


class HeadsAmplifyAnalysis(HeadsAnalysis):
    kind = "heads_amplify"

    @classmethod
    def targets(cls, ds, circuit):
        """Head-level: the amplified heads are the circuit's, they repair ≥ REPAIR of the failures at the best α,
        and random heads at that α repair ≤ RANDOM_REPAIR (the random arm checked)."""
        alphas = [float(a) for a in ds["alpha"].values]
        bound = f"repair ≥ {REPAIR}, random repair ≤ {RANDOM_REPAIR}"
        out = []
        for task in ds["task"].values:
            if "random" not in ds["setting"].values or f"targeted_heads_{task}" not in ds.attrs:
                out.append(target("amplification", "heads", task, None, bound, None,
                                  reason="needs the targeted and random settings"))
                continue
            per = {a: float(ds["mfr"].sel(task=task, setting="targeted", alpha=a).mean()) for a in alphas}
            rnd = {a: float(ds["mfr"].sel(task=task, setting="random", alpha=a).mean()) for a in alphas}
            best = max(per, key=per.get)
            chosen = next(iter(json.loads(ds.attrs[f"targeted_heads_{task}"]).values()))
            out.append(circuit_set_target("amplification", task, chosen, circuit,
                                          per[best] >= REPAIR and rnd[best] <= RANDOM_REPAIR, bound,
                                          ds.attrs.get("param_positions"), best_alpha=best,
                                          repair_targeted={str(a): round(v, 4) for a, v in per.items()},
                                          repair_random={str(a): round(v, 4) for a, v in rnd.items()}))
        return out
