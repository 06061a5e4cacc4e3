"""SPEC metrics over plain arrays: LDAR, decision synchrony, NSSD, bootstrap CIs."""
from __future__ import annotations

import numpy as np


def ldar(phi_f: np.ndarray, phi_c: np.ndarray, axis: int = -1) -> np.ndarray:
    """Share of samples whose followed-modality signal beats the competitor's (SPEC §3.2)."""
    return (np.asarray(phi_f) > np.asarray(phi_c)).mean(axis=axis)


def synchrony(phi_v_a, phi_t_a, phi_v_b, phi_t_b) -> np.ndarray:
    """Whether two sites reach the same modality decision: sign(Φ_v - Φ_t) equal at both."""
    return np.sign(np.asarray(phi_v_a) - np.asarray(phi_t_a)) == np.sign(np.asarray(phi_v_b) - np.asarray(phi_t_b))


def subspace(p_p, p_c) -> tuple[np.ndarray, np.ndarray]:
    """Renormalise two probabilities onto the decision subspace {y_p, y_c}."""
    p_p, p_c = np.asarray(p_p, dtype=np.float64), np.asarray(p_c, dtype=np.float64)
    total = p_p + p_c
    return p_p / total, p_c / total


def nssd(p_p, p_c, q_p, q_c) -> np.ndarray:
    """sign(P̂(y_p) - Q̂(y_p)) · KL(P̂ || Q̂) over the decision subspace (SPEC §3.1).

    p_* are clean probabilities, q_* after the intervention; positive means the intervention
    took probability away from the instruction-compliant token.
    """
    pp, pc = subspace(p_p, p_c)
    qp, qc = subspace(q_p, q_c)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(pp > 0, pp * np.log(pp / qp), 0.0) + np.where(pc > 0, pc * np.log(pc / qc), 0.0)
    return np.sign(pp - qp) * kl


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
