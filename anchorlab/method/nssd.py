"""NSSD (docs/method.md §3.1): signed KL between clean and knocked-out decisions, renormalised to {y_p, y_c}.
"""
from __future__ import annotations

import numpy as np


def subspace(p_p, p_c) -> tuple[np.ndarray, np.ndarray]:
    """Renormalise two probabilities onto the decision subspace {y_p, y_c}."""
    p_p, p_c = np.asarray(p_p, dtype=np.float64), np.asarray(p_c, dtype=np.float64)
    total = p_p + p_c
    return p_p / total, p_c / total


def nssd(p_p, p_c, q_p, q_c) -> np.ndarray:
    """sign(P̂(y_p) - Q̂(y_p)) · KL(P̂ || Q̂) over the decision subspace (docs/method.md §3.1).

    p_* are clean probabilities, q_* after the intervention; positive means the intervention
    took probability away from the instruction-compliant token.
    """
    pp, pc = subspace(p_p, p_c)
    qp, qc = subspace(q_p, q_c)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(pp > 0, pp * np.log(pp / qp), 0.0) + np.where(pc > 0, pc * np.log(pc / qc), 0.0)
    return np.sign(pp - qp) * kl
