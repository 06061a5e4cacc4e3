"""Confidence intervals (the percentile bootstrap over samples used by every aggregate) and the ranking
statistics verify scores head and layer rankings with."""
from __future__ import annotations

import itertools
import math

import numpy as np


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0, axis: int = -1
) -> np.ndarray:
    """Percentile bootstrap CI of the mean over `axis` (samples); returns [..., 2] = (lo, hi).

    Resamples the same sample indices for every other index so CIs across layers are comparable.
    """
    x = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("bootstrap over zero samples")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    means = x[..., idx].mean(-1)  # [..., n_boot]
    alpha = (1.0 - level) / 2.0
    return np.stack([np.quantile(means, alpha, axis=-1), np.quantile(means, 1.0 - alpha, axis=-1)], axis=-1)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (nan without both classes)."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def layer_matched_aucs(scores: np.ndarray, positive: np.ndarray, n_draws: int = 1000, seed: int = 0) -> np.ndarray:
    """roc_auc of every other head set with `positive`'s number of heads in each layer (scores, positive: [L, H]):
    all of them when there are at most `n_draws`, else `n_draws` uniform draws. A method that scores whole layers
    (every head of an early layer high) ranks any such set as well as the circuit; this is the null it must beat."""
    scores, positive = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    n_layers, n_heads = positive.shape
    counts = positive.sum(axis=1)
    layers = [layer for layer in range(n_layers) if counts[layer]]
    total = int(np.prod([math.comb(n_heads, int(counts[layer])) for layer in layers]))
    if total <= n_draws + 1:
        picks = itertools.product(*(itertools.combinations(range(n_heads), int(counts[layer])) for layer in layers))
    else:
        rng = np.random.default_rng(seed)
        picks = (tuple(tuple(sorted(rng.choice(n_heads, int(counts[layer]), replace=False))) for layer in layers)
                 for _ in range(n_draws * 2))
    out = []
    for pick in picks:
        mask = np.zeros_like(positive)
        for layer, heads in zip(layers, pick):
            mask[layer, list(heads)] = True
        if not (mask == positive).all():
            out.append(roc_auc(scores.ravel(), mask.ravel()))
        if len(out) == n_draws:
            break
    return np.asarray(out)


def bootstrap_aucs(per_sample: np.ndarray, positive: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """roc_auc(mean over samples, positive) for `n_boot` resamples of the samples (last axis of per_sample; nan =
    not scored): how much the ranking depends on which prompts were drawn."""
    x = np.asarray(per_sample, dtype=float).reshape(-1, np.shape(per_sample)[-1])
    positive = np.asarray(positive, dtype=bool).ravel()
    rng, n = np.random.default_rng(seed), x.shape[-1]
    return np.array([roc_auc(np.nan_to_num(np.nanmean(x[:, rng.integers(0, n, n)], axis=-1)), positive)
                     for _ in range(n_boot)])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally long score vectors (ties get their average rank;
    nan when either is constant)."""
    ra, rb = average_ranks(np.ravel(a)), average_ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties sharing the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    values, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]
