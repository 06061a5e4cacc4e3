"""The analysis protocol: everything the rest of anchorlab knows about an analysis, declared by it.

An analysis is one module holding a spec (recipe options) and an `Analysis` subclass. The run plan,
executor, autobatch, `anchorlab estimate`, the figures, summary.md and verify loop over the registry
and call these hooks; none of them names a kind (docs/architecture.md, "Adding an analysis")."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..engines.memory import plain_forward_bytes
from ..errors import UserError
from ..rows.layout import role_problems, top_k_problems

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from ..models.loading import ModelBundle
    from ..rows.batching import Batch
    from ..rows.compiler import Row


Role = Literal["vision", "context", "instruction", "query", "text", "last"]  # roles.ROLES


class AnalysisSpec(BaseModel):
    """Options shared by every analysis; subclasses add their own with docs/method.md defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)  # as the recipe's: no "16" taken for 16
    kind: str
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="result file name (default: kind)")
    n_bootstrap: int = Field(1000, ge=1, description="bootstrap resamples per CI")
    ci_level: float = Field(0.95, gt=0, lt=1, description="CI coverage, strictly between 0 and 1")
    rows: Literal["data", "all", "follows", "fails"] = Field(
        "data", description="prompts aggregated: the data filter's choice, or all / followed / failed ones")
    sweep: dict[str, list] | None = Field(None, description="ablation: run once per combination of these values")

    def selection(self) -> str:
        """'all' | 'follows' | 'fails' | 'data' (= whatever data.filter keeps)."""
        return self.rows

    def check_model(self, n_layers: int, n_heads: int, where: str) -> list[str]:
        """Problems of these settings on a model of this size (checked from its config, before any
        compute), each naming its field; [] when they fit."""
        return []

    def sources(self) -> dict[str, str]:
        """{spec field: kind}: results this analysis reads from a file named by the field or, when the
        field is unset, from the last earlier analysis of that kind in the same run."""
        return {}

    def depends_on(self) -> list[str]:
        """Kinds of earlier results of this run it reads (its sources left unset)."""
        return [kind for field_, kind in self.sources().items() if getattr(self, field_) is None]

    def check_recipe(self, earlier: list["AnalysisSpec"], where: str) -> list[str]:
        """Every source can be found: a named file exists, or an analysis of its kind runs earlier."""
        problems = []
        for field_, kind in self.sources().items():
            path = getattr(self, field_)
            if path and not Path(path).exists():
                problems.append(f"{where}.{field_}: {path} does not exist (a {kind} result, e.g. DIR/{kind}.nc)")
            elif not path and not any(e.kind == kind for e in earlier):
                problems.append(f"{where}.{field_} is not set and this recipe runs no {kind} analysis before it: "
                                f"add `- kind: {kind}` earlier or set {field_}: PATH")
        return problems

    def check_rows(self, rows: list["Row"], where: str) -> list[str]:
        """Problems of these settings on the encoded prompts (their token roles), found before the first
        forward pass, each naming its field; [] when they fit."""
        return []


def distinct(values: list) -> list:
    """Items that label a result's coordinate appear once (a repeat is computed twice and stored under two
    equal labels, which no selection can tell apart)."""
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise ValueError(f"{repeated[0]!r} given twice")
    return values


def nothing_selected(task) -> UserError:
    """The error of a reduction left with no prompt of a task to aggregate."""
    return UserError(f"task {task}: no prompt is selected by data.filter or the analysis's rows setting; "
                     "nothing to aggregate")


def layers_out_of_range(layers, n_layers: int, where: str) -> list[str]:
    bad = [layer for layer in (layers or []) if not 0 <= layer < n_layers]
    return [f"{where}: {bad} out of range for a model with {n_layers} layers (0..{n_layers - 1})"] if bad else []


class PhiSpec(AnalysisSpec):
    """Options of the signal operator Φ (docs/method.md §3.2), shared by every analysis that evaluates it."""

    positions: Role = "instruction"
    k: int = Field(1, ge=1, description="top-K positions averaged (docs/method.md: 1)")
    pool: Literal["max", "mean"] = "max"
    final_norm: bool = Field(True, description="apply the model's final norm before unembedding")

    def check_rows(self, rows, where):
        return role_problems(rows, self.positions, f"{where}.positions") + top_k_problems(rows, self.positions,
                                                                                             self.k, f"{where}.k")


def param_attrs(spec: AnalysisSpec) -> dict:
    """Every analysis parameter as a netCDF-safe attr `param_<name>` (None: "default")."""

    def value(v):
        if v is None:
            return "default"
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (list, tuple)):
            return ", ".join(map(str, v))
        return str(v) if isinstance(v, dict) else v

    return {f"param_{k}": value(v) for k, v in spec.model_dump().items()}


def cells_column(n_rows: int, cells: int) -> np.ndarray:
    """A batch's decoder cells as a per-row array (all on the first row, so the run's sum is exact):
    results attr `decoder_cells`, what `anchorlab estimate` predicts."""
    column = np.zeros(n_rows, dtype=np.int64)
    column[0] = cells
    return column


@dataclass
class Work:
    """Passes and decoder cells of one engine. Prompt passes are exact; each greedy generation
    (`loops`, over `rows` rows in all) adds one pass of one token per row for every step after its
    prompt pass, so the steps can be priced at max_new_tokens (an upper bound) or at a measured length."""

    passes: int = 0
    cells: int = 0
    loops: int = 0
    rows: int = 0

    def add(self, passes: int, cells: int, loops: int = 0, rows: int = 0) -> None:
        self.passes, self.cells, self.loops, self.rows = (self.passes + passes, self.cells + cells,
                                                          self.loops + loops, self.rows + rows)

    def at(self, steps: int, n_layers: int) -> tuple[int, int]:
        """(passes, cells) when every generation runs `steps` steps."""
        extra = max(steps - 1, 0)
        return self.passes + self.loops * extra, self.cells + self.rows * n_layers * extra


@dataclass
class BatchCost:
    """What one batch of one analysis costs, as its engines run it (`anchorlab estimate` adds them up;
    the run's attrs `passes` and `decoder_cells` count the same)."""

    fast: Work = field(default_factory=Work)
    naive: Work = field(default_factory=Work)
    variants: int = 1  # interventions per prompt (pathways × centres, head tables, settings, heads)
    bytes: int = 0  # the batch's peak beyond the weights
    max_new_tokens: int = 1  # generation steps per loop at most (1: none)


@dataclass
class Context:
    """What an analysis may use while it runs."""

    bundle: "ModelBundle"
    backend: Any  # anchorlab.backends.LocalBackend or compatible
    seed: int
    style: Any = None  # the recipe's PromptStyle (analyses that build extra prompts use it)
    results: dict = field(default_factory=dict)  # earlier analyses of the same run, by name


class Analysis:
    """One paper section. A subclass sets `kind`, `spec_cls` and `pass_knob` and implements every hook
    below (tests/unit/test_protocol.py checks each registered kind does)."""

    kind: ClassVar[str]
    spec_cls: ClassVar[type[AnalysisSpec]]
    # the spec field autobatch sets: variants / settings / heads batched into one pass (None: no such knob)
    pass_knob: ClassVar[str | None] = None
    HOOKS: ClassVar[tuple[str, ...]] = ("run_batch", "reduce", "batch_bytes", "batch_cost", "figures", "claims",
                                        "targets")

    def __init__(self, spec: AnalysisSpec, ctx: Context):
        self.spec, self.ctx = spec, ctx

    # -- run
    def run_batch(self, batch: "Batch", rows: list["Row"]) -> dict[str, np.ndarray]:
        """Per-row arrays (leading dim = len(rows)) for one batch of prompts."""
        raise NotImplementedError

    def reduce(self, rows: list["Row"], results: dict[str, np.ndarray], selected: np.ndarray) -> "xr.Dataset":
        """The result from every row's arrays; aggregates over the rows `selected` keeps."""
        raise NotImplementedError

    # -- price (autobatch, estimate)
    def batch_bytes(self, batch: "Batch", rows: list["Row"], per_pass: int) -> int:
        """Bytes one batch adds beyond the weights with `per_pass` variants a pass (engines/memory.py)."""
        raise NotImplementedError

    def batch_cost(self, batch: "Batch", rows: list["Row"], tables: dict) -> BatchCost:
        """Passes and cells of both engines for one batch; `tables`: what a pilot run drew, by task
        (head sweeps: distinct head tables), where known."""
        raise NotImplementedError

    def uses_passes(self) -> bool:
        """Whether `pass_knob` changes anything for this spec (the naive engines run one pass a variant)."""
        return self.pass_knob is not None and getattr(self.spec, "engine", "fast") == "fast"

    # -- report (from the saved result only)
    @classmethod
    def figures(cls, ds: "xr.Dataset", fig_dir: Path) -> list[Path]:
        """The result's figures, drawn from the dataset alone."""
        raise NotImplementedError

    @classmethod
    def claims(cls, ds: "xr.Dataset") -> list[str]:
        """summary.md lines: a paper claim, this result's numbers with CIs, the verdict by the rule in
        docs/method.md ("Claims")."""
        raise NotImplementedError

    @classmethod
    def targets(cls, ds: "xr.Dataset", circuit: dict) -> list[dict]:
        """verify rows {target, level: heads|layers|model, task, value, bound, holds} for a known circuit
        (docs/method.md "Recovery targets"); holds None when the target cannot be evaluated."""
        raise NotImplementedError


# ------------------------------------------------------------------ shared by the hooks


class OnePlainPass:
    """The price hooks of an analysis whose engine is one plain forward of every prompt (no variants, no
    logits): the same for the fast and the naive count (signal, attribution)."""

    def batch_bytes(self, batch, rows, per_pass):
        return plain_forward_bytes(self.ctx.bundle, batch)

    def batch_cost(self, batch, rows, tables):
        b, s = batch.inputs["input_ids"].shape
        cost = BatchCost(bytes=plain_forward_bytes(self.ctx.bundle, batch))
        for work in (cost.fast, cost.naive):
            work.add(1, self.ctx.bundle.n_layers * s * b)
        return cost

def with_ci(ds, var: str, **sel) -> str:
    """'mean [lo, hi]' of `var` and its `var_ci` at `sel`, for summary.md."""
    v = float(ds[var].sel(**sel).mean())
    ci = ds[f"{var}_ci"].sel(**sel).values
    return f"{v:.3f} [{float(ci[0]):.3f}, {float(ci[1]):.3f}]"


def verdict(ok) -> str:
    return "**not evaluable**" if ok is None else ("**holds**" if ok else "**does not hold**")


def target(name: str, level: str, task, value, bound: str, holds, **detail) -> dict:
    """One verify row; `holds` None = the target could not be evaluated (the reason in `detail`)."""
    value = None if value is None else (round(float(value), 5) if np.isfinite(value) else str(value))
    row = {"target": name, "level": level, "task": str(task), "value": value, "bound": bound,
           "holds": None if holds is None else bool(holds)}
    return row | ({"detail": detail} if detail else {})


def auc_target(name: str, level: str, task, score: np.ndarray, positive: np.ndarray, bound: float, **detail) -> dict:
    """A per-element score (larger = more important: heads, or layers) against the circuit's elements: AUROC
    ≥ bound. Not evaluable when the circuit names none, or all, of the scored elements."""
    from ..method.stats import roc_auc

    score, positive = np.asarray(score, dtype=float).ravel(), np.asarray(positive, dtype=bool).ravel()
    if not positive.any() or positive.all():
        return target(
            name,
            level,
            task,
            None,
            f"AUROC ≥ {bound}",
            None,
            reason=f"the circuit names {'none' if not positive.any() else 'all'} of the {level} scored",
            **detail,
        )
    auc = roc_auc(score, positive)
    return target(name, level, task, auc, f"AUROC ≥ {bound}", auc >= bound, **detail)


NULL_QUANTILE = 0.99  # a head-level AUROC must beat this quantile of the layer-matched random sets' AUROCs ...
STABLE_QUANTILE = 0.05  # ... and so must this quantile of its own AUROCs over resampled prompts


def head_auc_target(name: str, task, score: np.ndarray, positive: np.ndarray, bound: float,
                    per_sample: np.ndarray, **detail) -> dict:
    """auc_target at head level (score [L, H]; per_sample [L, H, sample], its per-prompt values) with a random
    arm: the AUROC must exceed the NULL_QUANTILE quantile of the AUROCs of the other head sets with as many heads in
    each of its layers, and still exceed it at the STABLE_QUANTILE quantile of the AUROCs over resampled prompts.
    So a score that merely favours the circuit's layers (every layer-0 head at the instruction, say), or orders
    near-equal heads by the luck of the prompts, does not hold. Not evaluable when the circuit fills its layers
    (no layer-matched set)."""
    from ..method.stats import bootstrap_aucs, layer_matched_aucs

    row = auc_target(name, "heads", task, score, positive, bound, **detail)
    if row["holds"] is None:
        return row
    null = layer_matched_aucs(np.asarray(score, dtype=float), np.asarray(positive, dtype=bool))
    bound_text = (f"AUROC ≥ {bound}, and > the {NULL_QUANTILE:.0%} quantile of layer-matched random head sets' "
                  f"in {1 - STABLE_QUANTILE:.0%} of prompt resamples")
    if not len(null):
        return target(name, "heads", task, row["value"], bound_text, None, **detail,
                      reason="the circuit fills every head of its layers: no layer-matched random set to beat")
    q = float(np.quantile(null, NULL_QUANTILE))
    low = float(np.quantile(bootstrap_aucs(per_sample, positive), STABLE_QUANTILE))
    arm = {"n_sets": len(null), "auroc_at_quantile": round(q, 5),
           "share_at_or_above": round(float((null >= row["value"]).mean()), 5), "resampled_auroc_low": round(low, 5)}
    return target(name, "heads", task, row["value"], bound_text, bool(row["holds"] and row["value"] > q and low > q),
                  **detail, layer_matched=arm)


def selected_per_sample(ds: "xr.Dataset", var: str, task) -> np.ndarray:
    """[layer, head, sample] values of `var` for the task's selected samples (those its means are taken over)."""
    values = ds[var].sel(task=task).transpose("layer", "head", "sample").values
    return values[..., ds["selected"].sel(task=task).values.astype(bool)] if "selected" in ds else values


def heads_at(circuit: dict, role: str | None = None) -> list:
    """The circuit's heads at `role` (a method reading another role is not scored against them): its
    `heads_by_role` entry when it has one (the organism family's, measured per role), else `heads` when the
    circuit acts there (`positions`, default instruction); every role's `heads` when `role` is None."""
    if role is not None and "heads_by_role" in circuit:
        return circuit["heads_by_role"].get(role, [])
    if role is not None and circuit.get("positions", "instruction") != role:
        return []
    return circuit.get("heads", [])


def circuit_heads(circuit: dict, n_layers: int, n_heads: int, role: str | None = None) -> np.ndarray:
    """[L, H] bool: the circuit's heads (at `role`: heads_at)."""
    mask = np.zeros((n_layers, n_heads), dtype=bool)
    for layer, head in heads_at(circuit, role):
        if 0 <= layer < n_layers and 0 <= head < n_heads:
            mask[layer, head] = True
    return mask


def circuit_set_target(name: str, task, chosen, circuit: dict, behaviour: bool, bound: str, role: str | None = None,
                       **detail) -> dict:
    """A head intervention's target: the heads it chose are exactly the circuit's (at the role it intervened
    at) and the behaviour bound holds. Not evaluable for a circuit without heads there."""
    heads = sorted(tuple(h) for h in heads_at(circuit, role))
    chosen = sorted(tuple(h) for h in chosen)
    if not heads:
        where = f" at {role!r}" if role else ""
        return target(name, "heads", task, None, bound, None, reason=f"the circuit names no heads{where}", **detail)
    overlap = len(set(heads) & set(chosen)) / len(heads)
    return target(name, "heads", task, overlap, f"chosen heads = the circuit's, {bound}", overlap == 1 and behaviour,
                  chosen=[list(h) for h in chosen], **detail)
