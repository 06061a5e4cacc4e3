"""Head interventions (docs/method.md §3.6): scale heads' slices of o_proj's input at chosen positions
(0 blocks a head, α > 1 amplifies it), and the head sets a sweep compares."""
from __future__ import annotations

import logging

import numpy as np
import torch

from ..errors import UserError

log = logging.getLogger("anchorlab")
Head = tuple[int, int]
_WARNED: set = set()  # warn once per situation, not once per seed and batch


def scale_heads(o_proj_envoy, scale: torch.Tensor, where: torch.Tensor, head_dim: int) -> None:
    """In a trace: o_proj's input [R, q, H*hd] gets head h multiplied by scale[r, h] at the
    positions where[r, q] (a new tensor; o_proj then mixes the heads as usual)."""
    x = o_proj_envoy.input
    r, q, width = x.shape
    factor = torch.where(
        where[:, :, None], scale[:, None, :].to(x.dtype), torch.ones((), dtype=x.dtype, device=x.device)
    )
    o_proj_envoy.input = (x.view(r, q, width // head_dim, head_dim) * factor[..., None]).view(r, q, width)


def scale_table(heads: list[Head], value: float, n_layers: int, n_heads: int) -> torch.Tensor:
    """[L, H] multipliers: `value` on the given heads, 1 elsewhere."""
    table = torch.ones((n_layers, n_heads))
    for layer, head in heads:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise UserError(f"head ({layer}, {head}) out of range for a model with {n_layers} layers × {n_heads} heads")
        table[layer, head] = value
    return table


def random_heads(g: int, n_layers: int, n_heads: int, seed: int, exclude: set[Head] = frozenset()) -> list[Head]:
    """G heads uniformly at random (never one in `exclude`), reproducible from the seed."""
    pool = [(l, h) for l in range(n_layers) for h in range(n_heads) if (l, h) not in exclude]
    if g > len(pool):
        raise UserError(f"cannot draw {g} random heads: only {len(pool)} heads are left outside the excluded set")
    pick = np.random.default_rng(seed).choice(len(pool), size=g, replace=False)
    return sorted(pool[i] for i in pick)


def layer_matched_heads(targeted: list[Head], n_heads: int, seed: int, exclude: set[Head] = frozenset()) -> list[Head]:
    """Random heads with the same number per layer as `targeted`, outside `exclude` where the layer
    has enough other heads; where it has not, the shortfall is drawn from the excluded heads (logged)."""
    rng = np.random.default_rng(seed)
    out: list[Head] = []
    for layer in sorted({l for l, _ in targeted}):
        count = sum(1 for l, _ in targeted if l == layer)
        free = [h for h in range(n_heads) if (layer, h) not in exclude]
        taken = [int(h) for h in rng.choice(free, size=min(count, len(free)), replace=False)]
        if count > len(free):
            rest = [h for h in range(n_heads) if h not in taken]
            taken += [int(h) for h in rng.choice(rest, size=count - len(taken), replace=False)]
            if (layer, count, len(free)) not in _WARNED:
                _WARNED.add((layer, count, len(free)))
                log.warning("layer %d: only %d heads outside the targeted set; layer-matched sets repeat %d targeted "
                            "head(s) there", layer, len(free), count - len(free))
        out.extend((layer, h) for h in taken)
    return sorted(out)
