"""Which (sample, task) rows an analysis aggregates over: all, the ones the model follows, or fails.

The first-token rule (P(y_f) > P(y_c) at `last`) lives here; the generation rule (the default) in
following.py; labels.py stores either and reuses stored labels.
"""
from __future__ import annotations

import numpy as np
import torch

from .analyses.layout import decision_rows
from .backends import envoy_at
from .lens import restricted_logits, rms_norm
from .engines.prefix import no_logits


def decision_capture(envoy, layers_path, final, last, dec_w, norm_w, eps):
    b = torch.arange(last.shape[0], device=last.device)
    h = envoy_at(envoy, layers_path)[final].output[b, last]
    return restricted_logits(rms_norm(h, norm_w, eps)[:, None], dec_w)[:, 0]


def first_token_margin(bundle, backend, batch, rows) -> np.ndarray:
    """Per row: logit(y_f) - logit(y_c) of the model's next token at `last`."""
    unembed = bundle.module(bundle.adapter.unembed).weight.detach()
    norm = bundle.module(bundle.adapter.final_norm)
    eps = bundle.norm_eps
    last = torch.stack([roles["last"][-1] for roles in batch.roles]).to(bundle.device)
    logits = backend.trace(no_logits(batch.inputs), decision_capture, bundle.adapter.layers,
                           bundle.n_layers - 1, last, unembed[decision_rows(rows).to(bundle.device)], norm.weight.detach(), eps)
    return (logits[:, 0] - logits[:, 1]).float().cpu().numpy()


def first_token_follows(bundle, backend, batch, rows) -> np.ndarray:
    """Per row: does the model's next-token distribution prefer the followed answer's token?"""
    return first_token_margin(bundle, backend, batch, rows) > 0


def select_rows(mode: str, labels: np.ndarray | None, n: int) -> np.ndarray:
    """Rows kept by `data.filter`; `labels` per row: follows/fails/neither (following.py), or
    booleans (True = follows) from the first-token rule."""
    if mode == "all":
        return np.ones(n, dtype=bool)
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels if mode == "follows" else ~labels
    return labels == ("follows" if mode == "follows" else "fails")
