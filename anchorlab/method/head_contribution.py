"""A head's contribution and sublayer attribution (docs/method.md §3.4, §3.5) as pure tensor functions.

Φ is evaluated on many residual states at once: every state is a [P, d] block of hidden vectors at
the positions P, and the top-K positions are chosen afresh for each state Φ is evaluated on (so
M(H^{l-1} + A^l) may read other positions than M(H^{l-1}); this is what the formulas say, since Φ
is a function of the whole state). Only dictionary rows of the unembedding are ever multiplied.
"""
from __future__ import annotations

import torch


def head_contributions(z: torch.Tensor, w_o: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Each head's term of o_proj: z [..., L, P, H*hd] (o_proj's input), w_o [L, d, H*hd] -> [..., L, H, P, d].

    Head h writes z_h W_O[:, h*hd:(h+1)*hd]^T; the terms of all heads (+ o_proj's bias, which belongs
    to no head) sum to o_proj's output. Slicing o_proj's *output* instead would be wrong: heads are
    already mixed there. In fp32 even inside an autocast region (as restricted_logits).
    """
    zh = z.float().unflatten(-1, (n_heads, -1))  # [..., L, P, H, hd]
    w = w_o.float().unflatten(-1, (n_heads, -1))  # [L, d, H, hd]
    with torch.autocast(z.device.type, enabled=False):
        return torch.einsum("...lphk,ldhk->...lhpd", zh, w)


def side_order(phi: torch.Tensor, followed: torch.Tensor) -> torch.Tensor:
    """Reorder the modality axis (last) from (vision, text) to (followed, competitor); followed [B] is
    0 for vision, 1 for text."""
    idx = torch.stack([followed, 1 - followed], -1).to(phi.device)  # [B, 2]
    idx = idx.view(idx.shape[0], *([1] * (phi.dim() - 2)), 2).expand_as(phi)
    return phi.gather(-1, idx)


def margin(phi_fc: torch.Tensor) -> torch.Tensor:
    """ΔS = Φ_f - Φ_c from [..., 2] = (followed, competitor)."""
    return phi_fc[..., 0] - phi_fc[..., 1]


def sublayer_deltas(phi_state: torch.Tensor, phi_attn: torch.Tensor) -> torch.Tensor:
    """δ per (metric, sublayer, layer): phi_state [..., L+1, 2] = Φ(H^{-1..L-1}) as (f, c),
    phi_attn [..., L, 2] = Φ(H^{l-1} + A^l) -> [..., 2 (S_f, ΔS), 2 (attn, mlp), L].

    δ_A^l(M) = M(H^{l-1} + A^l) - M(H^{l-1});  δ_F^l(M) = M(H^l) - M(H^{l-1} + A^l).
    """
    metrics = []
    for metric in (lambda p: p[..., 0], margin):  # S_f, ΔS
        before, mid, after = metric(phi_state[..., :-1, :]), metric(phi_attn), metric(phi_state[..., 1:, :])
        metrics.append(torch.stack([mid - before, after - mid], -2))
    return torch.stack(metrics, -3)




def attribution_patching(z_twin: torch.Tensor, z_clean: torch.Tensor, grad: torch.Tensor, valid: torch.Tensor,
                         n_heads: int) -> torch.Tensor:
    """First-order estimate of the margin change when each head's o_proj input at the patched positions
    takes its twin value: Σ_p (z_twin - z_clean)_h · ∂margin/∂z_h. All [L, B, P, H*hd], valid [B, P]
    -> [B, L, H], in fp32."""
    with torch.autocast(z_clean.device.type, enabled=False):
        terms = ((z_twin.float() - z_clean.float()) * grad.float()).unflatten(-1, (n_heads, -1)).sum(-1)  # [L, B, P, H]
        return (terms * valid[None, :, :, None].to(terms.dtype)).sum(2).transpose(0, 1)
