"""Attention knockout (docs/method.md §3.1): which edges a pathway removes, over which layers, and the masks
that remove them. Pure tensor functions; `apply_knockout` is the only part that runs in a trace."""
from __future__ import annotations

import torch

from ..errors import UserError


def parse_pathway(pathway: str) -> tuple[str, str]:
    src, sep, dst = pathway.partition("->")
    if not sep or not src.strip() or not dst.strip():
        raise UserError(f"pathway {pathway!r}: write it as 'src->dst' with role names, e.g. 'vision->last'")
    return src.strip(), dst.strip()


def window_layers(center: int, width: int, n_layers: int) -> list[int]:
    """`width` consecutive layers centred at `center` (an even width leans towards later layers:
    width 4 at l covers l-1..l+2), clipped at the model's ends."""
    start = center - (width - 1) // 2
    return [layer for layer in range(start, start + width) if 0 <= layer < n_layers]


def knocked_edges(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """[B, S, S] bool: query i ∈ dst may no longer read key j ∈ src (j ≤ i)."""
    s = src.shape[-1]
    causal = torch.ones(s, s, dtype=torch.bool, device=src.device).tril()
    return dst[:, :, None] & src[:, None, :] & causal


def first_affected(knocked: torch.Tensor) -> torch.Tensor:
    """[B] first query position with a removed edge (S where none): nothing before it can change."""
    s = knocked.shape[-1]
    rows = knocked.any(-1)
    idx = torch.arange(s, device=knocked.device).expand_as(rows)
    return torch.where(rows, idx, torch.full_like(idx, s)).min(-1).values


def base_allowed(key_mask: torch.Tensor, start: int) -> torch.Tensor:
    """[B, S - start, S] bool: causal attention for queries start.. over keys that are not padding.
    Padding queries see themselves only, so no row is empty (an empty row gives NaN under sdpa)."""
    b, s = key_mask.shape
    q = torch.arange(start, s, device=key_mask.device)[:, None]
    k = torch.arange(s, device=key_mask.device)[None, :]
    allowed = (k <= q)[None] & key_mask.bool()[:, None, :]
    pad_query = ~key_mask.bool()[:, start:]
    return allowed | (pad_query[:, :, None] & (k == q)[None])


def check_no_empty_rows(allowed: torch.Tensor, knocked: torch.Tensor, labels: list[str]) -> None:
    """A destination left with no visible key is an error naming the pathway and sample."""
    empty = ~(allowed & ~knocked).any(-1)  # [R, q]
    bad = empty.any(-1)
    if bad.any():
        raise UserError(f"knockout {labels[int(bad.nonzero()[0])]}: a destination position would see no key at all")


def as_mask_like(received, allowed: torch.Tensor):
    """Our [R, q, S] bool as the mask type this attention implementation received:
    bool [R,1,q,S] for sdpa (None or bool received), additive float for eager."""
    if received is None or received.dtype == torch.bool:
        return allowed[:, None]
    zero = torch.zeros((), dtype=received.dtype, device=allowed.device)
    return torch.where(allowed[:, None], zero, torch.finfo(received.dtype).min)


def apply_knockout(attn_envoy, allowed, knocked, active):
    """In a trace: replace this layer's attention mask (a new tensor; HF shares one mask object
    across layers, so it is never edited in place). `active` [R] marks rows knocked in this layer."""
    impl = getattr(getattr(attn_envoy._module, "config", None), "_attn_implementation", None)
    if impl not in (None, "sdpa", "eager"):  # flash kernels take no dense mask: it would be silently ignored
        raise UserError(f"attention knockout needs a dense attention mask, which {impl} ignores: load the model "
                        "with model.attn_implementation: sdpa (or eager); the engines switch it (engines/attention.py)")
    args, kwargs = attn_envoy.inputs
    mask = allowed & ~(knocked & active[:, None, None])
    kwargs = dict(kwargs)
    kwargs["attention_mask"] = as_mask_like(kwargs.get("attention_mask"), mask)
    attn_envoy.inputs = (args, kwargs)


def generation_blocker(
    layers_path: str, attention: str, layers: list[int], src: torch.Tensor, prompt_mask: torch.Tensor
):
    """An intervention for `engines.generation.greedy_generate`: at every step, the position being
    generated from (the prompt's last position, then each new token) cannot read `src` keys in
    `layers`. src / prompt_mask: [B, S] over the prompt."""
    from ..adapters.paths import envoy_at

    def intervene(envoy, step, n_keys):
        b, s = prompt_mask.shape
        extra = n_keys - s
        dev = next(envoy._module.parameters()).device  # the model's (an NDIF server's GPU), not the client's
        src_keys = torch.cat([src.to(dev), torch.zeros((b, extra), dtype=torch.bool, device=dev)], 1)
        key_mask = torch.cat([prompt_mask.to(dev).bool(), torch.ones((b, extra), dtype=torch.bool, device=dev)], 1)
        if step == 0:
            allowed = base_allowed(prompt_mask.to(dev), 0)
            knocked = torch.zeros_like(allowed)
            knocked[:, -1] = src_keys
        else:
            allowed = key_mask[:, None, :]
            knocked = src_keys[:, None, :]
        active = torch.ones(b, dtype=torch.bool, device=dev)
        blocks = envoy_at(envoy, layers_path)
        for layer in layers:
            apply_knockout(envoy_at(blocks[layer], attention), allowed, knocked, active)

    return intervene
