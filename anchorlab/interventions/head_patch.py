"""Head interchange (`kind: head_patching`): a head's slice of o_proj's input at chosen positions replaced
by its value at the aligned positions of another prompt (the instruction-swapped twin).

The twin's role may tokenise to another length than the row's. `align_positions` pairs them:
`right` pairs the last n = min(n_row, n_twin) positions of each (the row's first n_row - n positions
stay clean; the twin's first n_twin - n are not read); `equal` refuses a pair of different lengths,
naming the sample.
"""
from __future__ import annotations

import torch

from ..errors import UserError

ALIGNMENTS = {
    "right": "right-aligned: the last min(n_row, n_twin) positions of the role in the row and in its twin are "
             "paired; the row's earlier positions of the role stay clean",
    "equal": "position by position; a row whose role has another length in its twin is refused",
}


def align_positions(row_pos: list[torch.Tensor], twin_pos: list[torch.Tensor], how: str, labels: list[str],
                    role: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row, the row positions patched (dst), the twin positions read (src), both [B, P], and
    validity [B, P] (rows with fewer pairs are padded by repeating their first pair)."""
    pairs = []
    for r, t, label in zip(row_pos, twin_pos, labels):
        if len(r) == 0 or len(t) == 0:
            raise UserError(f"{label}: role {role!r} has no tokens in the prompt or its instruction-swapped twin; "
                            "nothing to patch")
        if how == "equal" and len(r) != len(t):
            raise UserError(f"{label}: role {role!r} has {len(r)} tokens here but {len(t)} in its instruction-swapped "
                            "twin; alignment: equal refuses such pairs (alignment: right pairs the last positions)")
        n = min(len(r), len(t))
        pairs.append((r[len(r) - n :], t[len(t) - n :]))
    width = max(len(d) for d, _ in pairs)
    dst = torch.zeros((len(pairs), width), dtype=torch.long)
    src = torch.zeros_like(dst)
    valid = torch.zeros((len(pairs), width), dtype=torch.bool)
    for i, (d, s) in enumerate(pairs):
        dst[i], src[i] = d[0], s[0]
        dst[i, : len(d)], src[i, : len(s)] = d, s
        valid[i, : len(d)] = True
    return dst, src, valid


def patch_entries(z_twin: torch.Tensor, dst: torch.Tensor, valid: torch.Tensor, heads: torch.Tensor,
                  offset: int, n_heads: int) -> tuple[torch.Tensor, ...]:
    """What `patch_heads` writes for g = len(heads) stacked copies of a batch, copy k patching head
    heads[k]: (rows, positions, heads, values). z_twin [B, P, H*hd] is one layer's twin values at the
    pairs; positions are dst - offset (the first position a suffix pass computes)."""
    b, p = valid.shape
    bi, pi = valid.nonzero(as_tuple=True)
    g, n = len(heads), len(bi)
    copy = torch.arange(g, device=heads.device).repeat_interleave(n)
    bi, pi = bi.repeat(g), pi.repeat(g)
    head = heads[copy]
    values = z_twin.view(b, p, n_heads, -1)[bi, pi, head]
    return copy * b + bi, dst[bi, pi] - offset, head, values


def patch_heads(o_proj_envoy, rows: torch.Tensor, positions: torch.Tensor, heads: torch.Tensor,
                values: torch.Tensor, head_dim: int) -> None:
    """In a trace: o_proj's input [R, q, H*hd] gets head heads[n] at (rows[n], positions[n]) replaced
    by values[n] [hd] (a new tensor; o_proj then mixes the heads as usual)."""
    x = o_proj_envoy.input
    r, q, width = x.shape
    new = x.reshape(r, q, width // head_dim, head_dim).clone()
    new[rows, positions, heads] = values.to(new.dtype)
    o_proj_envoy.input = new.view(r, q, width)
