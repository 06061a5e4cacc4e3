"""One run plan, run by the executor and priced by `anchorlab estimate`: whether follow labels are
computed, the memory budget, and per analysis (per sweep combination) the analysis object, its batch
size and per-pass setting. Batches are rows sorted by prompt length, cut every batch_size (less
padding); both consumers take them from `batch_order`, so what is priced is what runs."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..analyses import REGISTRY, Analysis, Context
from ..engines.autobatch import BATCH_SHARE, choose, default_budget, parse_bytes
from ..recipe import Recipe, result_names
from .sweeps import expand

log = logging.getLogger("anchorlab")


def batch_order(rows, batch_size: int) -> list[list[int]]:
    """Row indices of each batch, in the order the run computes them (chunks are keyed by position)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].encoded.input_ids))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@dataclass
class Part:
    """One sweep combination of an analysis (the whole analysis when nothing is swept)."""

    combo: dict
    analysis: Analysis  # its spec carries the per-pass setting autobatch chose
    batch_size: int
    tag: str  # the chunks' name in the run folder


@dataclass
class Step:
    index: int  # position in recipe.analyses
    name: str  # result name (the .nc file's stem)
    spec: object  # as the recipe wrote it
    parts: list[Part] = field(default_factory=list)

    @property
    def rule(self) -> str:
        """Rows it aggregates: follows | fails | all, or the data filter's choice ('data')."""
        return self.spec.selection()


@dataclass
class RunPlan:
    labels: bool  # follow labels are needed (data.filter, or an analysis choosing its own rows)
    label_batch_size: int
    budget: int | None  # bytes a batch may add beyond the weights (batch_size: auto), else None
    steps: list[Step]

    def attrs(self) -> dict:
        return {} if self.budget is None else {"memory_budget_bytes": self.budget,
                                               "memory_budget_batch_share": BATCH_SHARE}


def resolve_budget(recipe: Recipe, bundle, divide: int = 1) -> int | None:
    """`batch_size: auto`: memory_budget, else the device's free memory (processes sharing a CPU divide it)."""
    if recipe.batch_size != "auto":
        return None
    if recipe.memory_budget is not None:
        return parse_bytes(recipe.memory_budget)
    return default_budget(bundle) // divide


def make_plan(recipe: Recipe, bundle, rows, ctx: Context, budget: int | None) -> RunPlan:
    """The plan for these encoded rows; `budget` from resolve_budget (the same on every rank)."""
    d = recipe.data
    own = {spec.selection() for spec in recipe.analyses} - {"data", "all"}
    labels = d.filter != "all" or bool(own)
    label_batch_size = recipe.batch_size if budget is None else choose(bundle, rows, None, budget)[0]
    names = result_names(recipe.model_dump(mode="json")["analyses"])
    steps = []
    for i, (spec, name) in enumerate(zip(recipe.analyses, names)):
        step = Step(i, name, spec)
        for j, (combo, sub) in enumerate(expand(spec, f"analyses.{i}")):
            analysis = REGISTRY[sub.kind](sub, ctx)
            batch_size = recipe.batch_size
            if budget is not None:
                batch_size, per_pass = choose(bundle, rows, analysis, budget)
                if analysis.pass_knob:
                    analysis = REGISTRY[sub.kind](sub.model_copy(update={analysis.pass_knob: per_pass}), ctx)
                log.info("%s: batch_size auto -> %d prompts%s under a %.0f MiB budget", name, batch_size,
                         f", {analysis.pass_knob} {per_pass}" if analysis.pass_knob else "", budget / 2**20)
            step.parts.append(Part(combo, analysis, batch_size, f"{name}@{j}" if combo else name))
        steps.append(step)
    return RunPlan(labels, label_batch_size, budget, steps)
