"""labels.nc: the follow/fail label of every (task, sample), stored once and reused later (the executor
runs the labelling; this module shapes, checks and reads the file).

A run with `data.filter: follows|fails` writes `OUT/labels.nc` (var `label` (task, sample) in
follows/fails/neither, the generated `answer` or first-token `margin`, `counts` (task, outcome),
counts in attrs). A later recipe with `data.labels: OUT/labels.nc` (or just `OUT`) selects rows
from it without running the model for labels again; it must match the model, rule and prompt.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import UserError, read_file
from .rules import LABELS

FILE = "labels.nc"


def _prompt_key(recipe) -> str:
    return json.dumps(recipe.data.prompt.model_dump(mode="json"), sort_keys=True)


def counts(rows, labels) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row, label in zip(rows, labels):
        out.setdefault(row.task, dict.fromkeys(LABELS, 0))[str(label)] += 1
    return out


def counts_text(table: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{task}: " + ", ".join(f"{n} {k}" for k, n in c.items()) for task, c in table.items())


def labels_dataset(rows, per_row: dict, recipe) -> xr.Dataset:
    from ..rows.layout import by_task_sample

    tasks, samples, grid = by_task_sample(rows)
    ds = xr.Dataset(coords={"task": tasks, "sample": samples, "outcome": list(LABELS)})
    ds["label"] = (("task", "sample"), grid(per_row["label"]).astype(str))
    ds["label"].attrs["description"] = "follows: answered the instructed modality's answer; fails: the competitor's"
    if "answer" in per_row:
        ds["answer"] = (("task", "sample"), grid(per_row["answer"]).astype(str))
    if "margin" in per_row:
        ds["margin"] = (("task", "sample"), grid(per_row["margin"]))
    table = counts(rows, per_row["label"])
    ds["counts"] = (("task", "outcome"), np.array([[table[t][k] for k in LABELS] for t in tasks]))
    d = recipe.data
    ds.attrs.update(analysis="labels", label_rule=d.filter_rule, label_prompt=_prompt_key(recipe),
                    label_max_new_tokens=d.max_new_tokens if d.filter_rule == "generation" else "n/a",
                    label_counts=counts_text(table),
                    **{f"count_{t}_{k}": n for t, c in table.items() for k, n in c.items()})
    return ds


def resolve(path: str | Path) -> Path:
    path = Path(path)
    path = path / FILE if path.is_dir() else path
    if not path.is_file():
        raise UserError(
            f"data.labels: no labels file at {path} (a run with data.filter follows|fails writes OUT/{FILE})"
        )
    return path


def reuse(path: str | Path, recipe, rows) -> np.ndarray:
    """Per-row labels from a stored labels.nc, after checking it fits this recipe."""
    path = resolve(path)
    ds = read_file(path, "data.labels", "netcdf")
    if ds.attrs.get("analysis") != "labels" or "label" not in ds:
        raise UserError(f"data.labels: {path} is not an anchorlab labels file")
    d = recipe.data
    checks = [("model.id", ds.attrs.get("model_id"), recipe.model.id),
              ("data.filter_rule", ds.attrs.get("label_rule"), d.filter_rule),
              ("data.prompt", ds.attrs.get("label_prompt"), _prompt_key(recipe))]
    if d.filter_rule == "generation":
        checks.append(("data.max_new_tokens", ds.attrs.get("label_max_new_tokens"), d.max_new_tokens))
    for field, stored, wanted in checks:
        if stored != wanted:
            raise UserError(f"data.labels: {path} was computed with {field} = {stored}, this recipe has {wanted}")
    table = {
        (str(t), str(s)): str(v) for t in ds.task.values for s, v in zip(ds.sample.values, ds.label.sel(task=t).values)
    }
    missing = [f"{r.task} {r.sample.id}" for r in rows if (r.task, r.sample.id) not in table]
    if missing:
        raise UserError(f"data.labels: {path} has no label for {len(missing)} of {len(rows)} prompts "
                        f"(e.g. {', '.join(missing[:3])}); leave data.labels out to compute them")
    return np.array([table[(r.task, r.sample.id)] for r in rows], dtype=str)
