"""Where head sets come from: an attribution result (this run's or a file), and no-conflict twins."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import xarray as xr

from ..errors import UserError


class HeadSource:
    """Targeted (top-G per task) and shared heads from an attribution result's rankings."""

    def __init__(self, path: str | None, results: dict, n_layers: int, n_heads: int):
        if path:
            if not Path(path).exists():
                raise UserError(f"heads_from: {path} does not exist (an attribution result, e.g. DIR/attribution.nc)")
            self.ds = xr.load_dataset(path)
        else:
            found = [ds for ds in results.values() if ds.attrs.get("analysis") == "attribution"]
            if not found:
                raise UserError("heads_from is not set and this recipe runs no attribution analysis before the "
                                "head interventions: add `- kind: attribution` earlier or set heads_from: PATH")
            self.ds = found[-1]
        if "ablation" in self.ds.attrs:
            raise UserError(f"heads_from: the attribution result {path or 'of this recipe'} is a sweep (ablation "
                            f"of {self.ds.attrs['ablation']}); head sets come from a single attribution: run one "
                            "without sweep:")
        if "head_rank" not in self.ds:
            raise UserError("heads_from: the attribution result has no head rankings (run it with heads: true)")
        if (self.ds.sizes["layer"], self.ds.sizes["head"]) != (n_layers, n_heads):
            raise UserError(f"heads_from: rankings are for {self.ds.sizes['layer']} × {self.ds.sizes['head']} heads, "
                            f"this model has {n_layers} × {n_heads}")

    def targeted(self, task: str, g: int) -> list[tuple[int, int]]:
        if task not in self.ds["task"].values:
            raise UserError(f"heads_from: the attribution result has no task {task!r}")
        rank = self.ds["head_rank"].sel(task=task).values
        if g > rank.size:
            raise UserError(f"n_heads {g} exceeds the model's {rank.size} heads")
        order = sorted(((int(rank[l, h]), l, h) for l in range(rank.shape[0]) for h in range(rank.shape[1])))
        return sorted((l, h) for _, l, h in order[:g])

    def shared(self, g: int) -> list[tuple[int, int]]:
        """The first min(G, n_shared) shared heads, best first."""
        pairs = list(zip(self.ds["shared_layer"].values.tolist(), self.ds["shared_head"].values.tolist()))
        return sorted(pairs[:g])


def neutral_sample(sample):
    """The sample with the text context agreeing with the image: every mention of the text answer
    (or one of its forms) replaced by the vision answer; None when the context never names it.
    The answers are kept, so the old text answer remains the wrong one to give."""
    context = sample.context
    for form in sorted(sample.forms("text"), key=len, reverse=True):
        context = re.sub(rf"(?<!\w){re.escape(form)}(?!\w)", sample.answer_vision, context, flags=re.IGNORECASE)
    if context == sample.context:
        return None
    return replace(sample, id=f"{sample.id}~neutral", context=context)
