"""What every analysis provides: a recipe spec, per-batch work on a backend, a reduction to xarray."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..rows.layout import role_problems, top_k_problems

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from ..rows.batching import Batch
    from ..rows.compiler import Row
    from ..models.loading import ModelBundle


Role = Literal["vision", "context", "instruction", "query", "text", "last"]  # roles.ROLES


class AnalysisSpec(BaseModel):
    """Options shared by every analysis; subclasses add their own with docs/method.md defaults."""

    model_config = ConfigDict(extra="forbid")
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
class Context:
    """What an analysis may use while it runs."""

    bundle: "ModelBundle"
    backend: Any  # anchorlab.backends.LocalBackend or compatible
    seed: int
    style: Any = None  # the recipe's PromptStyle (analyses that build extra prompts use it)
    results: dict = field(default_factory=dict)  # earlier analyses of the same run, by name


class Analysis:
    """One paper section: subclasses set `kind` and `spec_cls` and implement the three steps."""

    kind: ClassVar[str]
    spec_cls: ClassVar[type[AnalysisSpec]]

    def __init__(self, spec: AnalysisSpec, ctx: Context):
        self.spec, self.ctx = spec, ctx

    def run_batch(self, batch: "Batch", rows: list["Row"]) -> dict[str, np.ndarray]:
        """Per-row arrays (leading dim = len(rows)) for one batch of prompts."""
        raise NotImplementedError

    def reduce(self, rows: list["Row"], results: dict[str, np.ndarray]) -> "xr.Dataset":
        raise NotImplementedError
