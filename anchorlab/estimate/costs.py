"""What `anchorlab estimate` adds up per analysis: passes and decoder cells of each engine."""
from __future__ import annotations

from dataclasses import dataclass, field


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
