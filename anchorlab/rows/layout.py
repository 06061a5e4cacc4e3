"""Shared shaping between rows (one per sample × task) and tensors / labelled grids."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import UserError

MODALITIES = ("vision", "text")
SIDES = ("followed", "competitor")


def site_positions(batch, rows, role: str) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, P+1] positions: the role's positions (padded by repeating the first) then `last`;
    and [B, P] validity of the role columns."""
    per_row = [batch.roles[i][role] for i in range(len(rows))]
    for row, pos in zip(rows, per_row):
        if len(pos) == 0:
            raise UserError(f"sample {row.sample.id!r} ({row.task}): role {role!r} has no tokens in this prompt")
    width = max(len(p) for p in per_row)
    sites = torch.zeros((len(rows), width + 1), dtype=torch.long)
    valid = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, pos in enumerate(per_row):
        sites[i, : len(pos)] = pos
        sites[i, len(pos) : width] = pos[0]
        valid[i, : len(pos)] = True
        sites[i, width] = batch.roles[i]["last"][-1]
    return sites, valid


def role_problems(rows, role: str, where: str) -> list[str]:
    """A role every prompt needs has tokens in every prompt (checked before any forward pass)."""
    empty = [r for r in rows if len(r.encoded.roles.get(role, ())) == 0]
    if not empty:
        return []
    more = f" and {len(empty) - 1} more prompt(s)" if len(empty) > 1 else ""
    return [f"{where}: role {role!r} is empty in sample {empty[0].sample.id!r} ({empty[0].task}){more}"]


def top_k_problems(rows, role: str, k: int, where: str) -> list[str]:
    """Φ's K cannot exceed the role's positions in every prompt: it would average all of them everywhere
    (docs/method.md §3.2 averages fewer only where a prompt has fewer)."""
    most = max((len(r.encoded.roles.get(role, ())) for r in rows), default=0)
    if 0 < most < k:
        return [f"{where}: {k} is more than the {most} position(s) role {role!r} has in any prompt "
                f"(Φ would average all of them); set k to at most {most}"]
    return []


def entity_rows(rows) -> tuple[torch.Tensor, torch.Tensor]:
    """Dictionary ids per row, padded: ids [B, M] and membership [B, 2(vision, text), M]."""
    lists = [(r.entities.vision, r.entities.text) for r in rows]
    width = max(len(v) + len(t) for v, t in lists)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    member = torch.zeros((len(rows), 2, width), dtype=torch.bool)
    for i, (v, t) in enumerate(lists):
        ids[i, : len(v)] = torch.tensor(v)
        ids[i, len(v) : len(v) + len(t)] = torch.tensor(t)
        member[i, 0, : len(v)] = True
        member[i, 1, len(v) : len(v) + len(t)] = True
    return ids, member


def decision_rows(rows) -> torch.Tensor:
    """[B, 2] token ids (followed answer, competing answer)."""
    return torch.tensor([[r.answer_ids[r.followed], r.answer_ids[r.competitor]] for r in rows], dtype=torch.long)


def by_task_sample(rows) -> tuple[list[str], list[str], Callable[[np.ndarray], np.ndarray]]:
    """Task and sample labels in row order, and a function placing per-row arrays on a
    [task, sample, ...] grid (every (sample, task) pair is present)."""
    tasks = list(dict.fromkeys(r.task for r in rows))
    samples = list(dict.fromkeys(r.sample.id for r in rows))
    t_index = {t: i for i, t in enumerate(tasks)}
    s_index = {s: i for i, s in enumerate(samples)}
    where = [(t_index[r.task], s_index[r.sample.id]) for r in rows]

    def grid(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        out = np.zeros((len(tasks), len(samples), *values.shape[1:]), dtype=values.dtype)
        filled = np.zeros((len(tasks), len(samples)), dtype=bool)
        for (t, s), v in zip(where, values):
            out[t, s] = v
            filled[t, s] = True
        if not filled.all():
            raise ValueError("internal: some (task, sample) pairs have no row")
        return out

    return tasks, samples, grid
