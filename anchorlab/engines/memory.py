"""A memory model of the engines (issue 13): bytes a pass allocates beyond the weights, from the
model config and the batch's shape only (no weights needed; `anchorlab estimate` uses it on the
meta device).

Terms of one decoder pass over R rows × L query positions attending to K keys (e = dtype bytes):
  residual + one layer's temporaries  R·L·(3d + 3I)·e     (the MLP's gate, up and product dominate)
  KV cache of the recomputed layers    n·2·R·K·kv·hd·e     (use_cache: each layer keeps its K/V)
  a replaced attention mask            R·L·K·(1 + e)       (bool, and sdpa's additive copy), per window layer
  logits                               R·P·V·e             (P positions reaching the lm_head)
The vision tower of a clean pass adds its own activations (patches × (4·Dv + 3·Iv)·e, pixels in fp32).

The fast knockout sweep keeps, throughout, the clean pass's KV cache (all layers, B·S), the
embeddings and the clean outputs of the layers some pass starts above; each suffix pass adds its
terms with R = g·B rows, L = S - p0 queries and n = layers recomputed. Its peak is the stored
state plus the largest pass, or the clean pass, whichever is larger.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .knockout import plan_passes


@dataclass(frozen=True)
class Dims:
    d: int  # hidden size
    inter: int  # MLP intermediate size
    heads: int
    kv: int
    hd: int  # head dim
    vocab: int
    n_layers: int
    e: int  # bytes per activation element
    vision_d: int = 0
    vision_inter: int = 0
    vision_layers: int = 0

    @classmethod
    def of(cls, config, lm_config, dtype: torch.dtype) -> "Dims":
        vision = getattr(config, "vision_config", None)
        hd = int(getattr(lm_config, "head_dim", None) or lm_config.hidden_size // lm_config.num_attention_heads)
        return cls(
            d=int(lm_config.hidden_size), inter=int(lm_config.intermediate_size),
            heads=int(lm_config.num_attention_heads),
            kv=int(getattr(lm_config, "num_key_value_heads", None) or lm_config.num_attention_heads), hd=hd,
            vocab=int(lm_config.vocab_size), n_layers=int(lm_config.num_hidden_layers),
            e=torch.empty((), dtype=dtype).element_size(),
            vision_d=int(getattr(vision, "hidden_size", 0) or 0),
            vision_inter=int(getattr(vision, "intermediate_size", 0) or 0),
            vision_layers=int(getattr(vision, "depth", None) or getattr(vision, "num_hidden_layers", 0) or 0),
        )


def layer_temporaries(m: Dims, rows: int, queries: int) -> int:
    return rows * queries * (3 * m.d + 3 * m.inter) * m.e


def kv_bytes(m: Dims, rows: int, keys: int, layers: int) -> int:
    return layers * 2 * rows * keys * m.kv * m.hd * m.e


def mask_bytes(m: Dims, rows: int, queries: int, keys: int) -> int:
    return rows * queries * keys * (1 + m.e)


def vision_bytes(m: Dims, patches: int) -> int:
    if not m.vision_d or not patches:
        return 0
    return patches * (4 * m.vision_d + 3 * m.vision_inter) * m.e + patches * 1176 * 4


def forward_bytes(m: Dims, b: int, s: int, logit_positions: int, patches: int = 0, cache: bool = False) -> int:
    """One plain forward of B rows × S positions (`logit_positions` of them reach the lm_head)."""
    total = b * s * m.d * m.e + layer_temporaries(m, b, s) + b * logit_positions * m.vocab * m.e
    total += kv_bytes(m, b, s, m.n_layers if cache else 1)
    return total + vision_bytes(m, patches)


def pass_bytes(m: Dims, b: int, s: int, p0: int, g: int, first_layer: int, window_layers_: int) -> int:
    """One suffix pass of the fast knockout engine (g copies of B rows, positions p0.., layers from first_layer)."""
    rows, q = g * b, s - p0
    n = m.n_layers - first_layer
    total = layer_temporaries(m, rows, q) + kv_bytes(m, rows, s, n)
    if b > 1:  # the first recomputed layer's input and the prefix cache are copies, not views
        total += rows * q * m.d * m.e + kv_bytes(m, rows, p0, 1)
    total += 2 * rows * q * s  # allowed + knocked (bool)
    return total + window_layers_ * mask_bytes(m, rows, q, s)


def knockout_fast_bytes(m: Dims, b: int, s: int, starts: list[int], windows: list[list[int]], per_pass: int,
                        patches: int = 0) -> int:
    """Peak bytes of the fast knockout sweep beyond the weights."""
    passes, _ = plan_passes(starts, windows, s, m.n_layers, per_pass)
    start = min(min(starts), s - 1)
    keep = {p.first_layer - 1 for p in passes if p.first_layer > 0}
    stored = kv_bytes(m, b, s, m.n_layers) + b * s * m.d * m.e + len(keep) * b * (s - start) * m.d * m.e
    clean = forward_bytes(m, b, s, 0, patches, cache=True)
    widest = {c: len(w) for c, w in enumerate(windows)}
    biggest = max((pass_bytes(m, b, s, p.p0, len(p.variants), p.first_layer, max(widest[c] for _, c in p.variants))
                   for p in passes), default=0)
    return max(clean, stored + biggest)


# ------------------------------------------------------------------ from a loaded (or meta) model


def dims_of(bundle) -> Dims:
    return Dims.of(bundle.model.config, bundle.lm_config, next(bundle.model.parameters()).dtype)


def n_patches(batch) -> int:
    px = batch.inputs.get("pixel_values")
    return (
        int(px.shape[0])
        if px is not None and px.dim() == 2
        else (int(px.shape[0] * px.shape[-1] * px.shape[-2] / 196) if px is not None else 0)
    )


def knockout_fast_peak(bundle, batch, rows, plan, per_pass: int) -> int:
    """Peak bytes of the fast knockout sweep of `plan` (engines.knockout.KnockoutPlan) on this batch."""
    b, s = batch.inputs["input_ids"].shape
    return knockout_fast_bytes(dims_of(bundle), b, s, plan.starts(batch, rows), [list(w) for w in plan.windows],
                               per_pass, n_patches(batch))


def plain_forward_bytes(bundle, batch, logit_positions: int = 0, cache: bool = False) -> int:
    """One plain forward of the batch (`logit_positions` per row reach the lm_head)."""
    b, s = batch.inputs["input_ids"].shape
    return forward_bytes(dims_of(bundle), b, s, logit_positions, n_patches(batch), cache=cache)
