"""The restricted logit lens and the signal operator Φ (docs/method.md §2, §3.2), as pure tensor functions.

Only the unembedding rows of dictionary tokens are ever multiplied: never full-vocabulary logits.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def rms_norm(h: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm as Llama/Qwen2 compute it (in fp32, cast back), so lens values match the model."""
    dtype = h.dtype
    x = h.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def restricted_logits(h: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Logits of selected tokens: h [..., P, d] (already normed), rows [..., M, d] -> [..., P, M], in fp32
    even inside an autocast region (NDIF runs half-precision models' requests under one)."""
    with torch.autocast(h.device.type, enabled=False):
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


@dataclass(frozen=True)
class FinalNorm:
    """The model's final norm as the lens applies it; which kind a family uses is an adapter fact."""

    weight: torch.Tensor
    eps: float
    kind: str = "rms"

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        if self.kind == "rms":
            return rms_norm(h, self.weight, self.eps)
        raise ValueError(f"final norm kind {self.kind!r} is not supported by the lens (rms)")


@dataclass(frozen=True)
class LensWeights:
    """What the logit lens reads from a model: the unembedding matrix and the final norm
    (`adapters.paths.lens_weights` finds them; `rows(ids)` picks the dictionary rows)."""

    unembed: torch.Tensor  # [V, d]; a named reference on a weightless NDIF client, read on the server
    norm: FinalNorm

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        return self.unembed[ids.to(self.unembed.device)]


@dataclass(frozen=True)
class PhiInputs:
    """What Φ needs besides the states, as one small frozen argument that travels into a trace (and to
    NDIF): the dictionary rows of the unembedding [B, M, d], each row's modality [B, 2, M] (vision,
    text), the positions that count [B, P], K, the pooling, and the final norm (None: the raw lens)."""

    rows: torch.Tensor
    member: torch.Tensor
    valid: torch.Tensor
    k: int = 1
    pool: str = "max"
    norm: FinalNorm | None = None


def pooled_logits(h: torch.Tensor, rows: torch.Tensor, member: torch.Tensor, pool: str,
                  norm: FinalNorm | None) -> torch.Tensor:
    """Per modality, the dictionary logits of each position pooled over forms: h [B, ..., P, d]
    (states), rows [B, M, d] (dictionary rows of the unembedding), member [B, 2, M] (vision, text)
    -> [B, ..., 2, P]. norm None: the raw lens (no final norm)."""
    x = norm(h) if norm is not None else h
    extra = h.dim() - 3  # state axes between the batch and the positions
    rows = rows.reshape(rows.shape[0], *([1] * extra), *rows.shape[1:])
    logits = restricted_logits(x, rows)  # [B, ..., P, M]
    shape = (member.shape[0], *([1] * extra), member.shape[-1])
    return torch.stack([pool_forms(logits, member[:, m].reshape(shape), pool) for m in range(2)], -2)


def phi_states(h: torch.Tensor, phi: PhiInputs) -> torch.Tensor:
    """Φ of both modalities for many states: h [B, X, P, d] -> [B, X, 2]. Top-K positions are chosen per
    state and modality."""
    pooled = pooled_logits(h.float(), phi.rows, phi.member, phi.pool, phi.norm)
    return top_k_mean(pooled, phi.valid[:, None, None, :], phi.k)
