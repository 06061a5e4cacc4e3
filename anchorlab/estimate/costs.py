"""What `anchorlab estimate` adds up per analysis: passes and decoder cells of each engine, summed
over the analysis's batches from its `batch_cost` hook (analyses/base.BatchCost)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..analyses.base import BatchCost, Work


@dataclass
class Cost:
    analysis: str
    prompts: int = 0
    variants: int = 0  # interventions per prompt (pathways × centres, head tables, blocking settings)
    fast: Work = field(default_factory=Work)
    naive: Work = field(default_factory=Work)
    max_new_tokens: int = 1  # generation steps per loop at most (1: no generation)
    engine: str = "fast"  # the engine the recipe runs (knockout and head sweeps may choose naive)
    peak_bytes: int = 0  # largest batch: weights + what the engine adds
    notes: list[str] = field(default_factory=list)

    def add(self, batch: BatchCost, weights: int) -> None:
        for mine, theirs in ((self.fast, batch.fast), (self.naive, batch.naive)):
            mine.add(theirs.passes, theirs.cells, theirs.loops, theirs.rows)
        self.variants = max(self.variants, batch.variants)
        self.max_new_tokens = max(self.max_new_tokens, batch.max_new_tokens)
        self.peak_bytes = max(self.peak_bytes, weights + batch.bytes)
