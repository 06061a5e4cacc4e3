"""The restricted logit lens and the signal operator Φ (SPEC §2, §3.2), as pure tensor functions.

Only the unembedding rows of dictionary tokens are ever multiplied: never full-vocabulary logits.
"""
from __future__ import annotations

import torch


def rms_norm(h: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm as Llama/Qwen2 compute it (in fp32, cast back), so lens values match the model."""
    dtype = h.dtype
    x = h.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def restricted_logits(h: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Logits of selected tokens: h [..., P, d] (already normed), rows [..., M, d] -> [..., P, M]."""
    return torch.einsum("...pd,...md->...pm", h.float(), rows.float())


def pool_forms(logits: torch.Tensor, member: torch.Tensor, how: str = "max") -> torch.Tensor:
    """Pool a modality's dictionary logits per position: logits [..., P, M], member [..., M] bool -> [..., P]."""
    member = member.unsqueeze(-2).expand_as(logits)
    if how == "max":
        return logits.masked_fill(~member, float("-inf")).amax(-1)
    if how == "mean":
        total = logits.masked_fill(~member, 0.0).sum(-1)
        return total / member.sum(-1).clamp(min=1)
    raise ValueError(f"pool must be 'max' or 'mean', not {how!r}")


def top_k_mean(pooled: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Φ: mean of the k largest pooled values over valid positions ([..., P] -> [...]).

    With fewer than k valid positions, the mean is over those there are.
    """
    masked = pooled.masked_fill(~valid, float("-inf"))
    k_eff = min(k, pooled.shape[-1])
    top = masked.topk(k_eff, dim=-1).values
    keep = torch.isfinite(top)
    return top.masked_fill(~keep, 0.0).sum(-1) / keep.sum(-1).clamp(min=1)
