"""Data sources named by `data.source` in a recipe."""
from __future__ import annotations

from ..errors import UserError
from .sample import ConflictSample


def load_samples(data_spec, seed: int) -> list[ConflictSample]:
    seed = data_spec.seed if data_spec.seed is not None else seed
    if data_spec.source == "toy":
        from ..toy.data import generate_samples

        return generate_samples(data_spec.n_samples, seed=seed)
    raise UserError(f"data.source: unknown source {data_spec.source!r}")
