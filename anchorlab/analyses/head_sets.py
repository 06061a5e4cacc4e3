"""Where head sets come from: an attribution result (this run's or a file), and no-conflict twins."""
from __future__ import annotations

import functools
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import UserError, read_file
from ..interventions.head_scaling import layer_matched_heads, random_heads
from ..rows.encoding import encode
from ..rows.prompts import build_prompt


def draw_sets(spec, source: "HeadSource", task: str, values: list, seed0: int) -> tuple[dict, np.ndarray]:
    """(setting, sweep index, seed) -> the heads that setting scales for this task, and [sweep values, seeds]
    targeted heads inside the random layer-matched set: where a layer has no other heads,
    layer_matched_heads takes targeted ones (no control there)."""
    n_layers, n_heads = source.ds.sizes["layer"], source.ds.sizes["head"]
    sets, reuse = {}, np.zeros((len(values), spec.seeds), dtype=np.int64)
    for v, value in enumerate(values):
        g = value if spec.kind == "heads_block" else spec.n_heads[0]
        targeted = source.targeted(task, g)
        for setting in spec.settings:
            for seed in range(spec.seeds):
                if setting == "original":
                    heads = []
                elif setting == "targeted":
                    heads = targeted
                elif setting == "shared":
                    heads = source.shared(g)
                else:
                    draw = seed0 * 100_003 + seed * 1009 + g
                    exclude = set(targeted) if spec.exclude_targeted else set()
                    heads = (random_heads(g, n_layers, n_heads, draw, exclude) if setting == "random"
                             else layer_matched_heads(targeted, n_heads, draw, exclude))
                    if setting == "random_layer_matched":
                        reuse[v, seed] = len(set(heads) & set(targeted))
                sets[(setting, v, seed)] = heads
    return sets, reuse


class HeadSource:
    """Targeted (top-G per task) and shared heads from an attribution result's rankings."""

    def __init__(self, path: str | None, results: dict, n_layers: int, n_heads: int):
        if path:
            self.ds = read_file(path, "heads_from", "netcdf")
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


def rankings_problems(path: str, n_layers: int | None, n_heads: int | None, where: str,
                      tasks: tuple[str, ...] = ()) -> list[str]:
    """What stops an attribution result from ranking this model's heads (read before any compute):
    not readable, not an attribution result, no rankings, another model's shape, or a task missing."""
    stat = Path(path).stat()
    try:
        info = _rankings_info(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, where)
    except UserError as exc:
        return [str(exc)]
    kind, shape, found = info
    if kind != "attribution":
        return [f"{where}: {path} is not an attribution result (its analysis is {kind or 'not named'})"]
    if shape is None:
        return [f"{where}: {path} has no head rankings (an attribution run with heads: true writes them)"]
    if n_layers is not None and shape != (n_layers, n_heads):
        return [f"{where}: {path} ranks {shape[0]} layers × {shape[1]} heads, this model has {n_layers} × {n_heads}"]
    missing = [t for t in tasks if t not in found]
    if missing:
        return [f"{where}: {path} has no rankings for task(s) {', '.join(missing)} (it has {', '.join(found)})"]
    return []


@functools.lru_cache(maxsize=8)
def _rankings_info(path: str, size: int, mtime: int, where: str):
    """(analysis, (layers, heads) or None, tasks) of a result file; cached by its size and time."""
    ds = read_file(path, where, "netcdf")
    shape = (ds.sizes["layer"], ds.sizes["head"]) if "head_rank" in ds else None
    tasks = tuple(str(t) for t in ds["task"].values) if "task" in ds.coords else ()
    return ds.attrs.get("analysis"), shape, tasks


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


def neutral_row(row, style, bundle):
    """The row's prompt with the text context made to agree with the image (None if the text answer does
    not occur in the context): the followed answer is then the only answer."""
    sample = neutral_sample(row.sample)
    if sample is None:
        return None
    prompt = build_prompt(sample, row.task, style)
    v, t = row.answer_ids["vision"], row.answer_ids["text"]
    answers = {"vision": v, "text": t} if row.task == "vf" else {"text": v, "vision": t}  # y_p = the image's answer
    return replace(row, sample=sample, prompt=prompt, encoded=encode(bundle, prompt), answer_ids=answers)
