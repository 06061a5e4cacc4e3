"""Signal metrics over Φ arrays (docs/method.md §3.2): LDAR and decision synchrony.
"""
from __future__ import annotations

import numpy as np


def ldar(phi_f: np.ndarray, phi_c: np.ndarray, axis: int = -1) -> np.ndarray:
    """Share of samples whose followed-modality signal beats the competitor's (docs/method.md §3.2)."""
    return (np.asarray(phi_f) > np.asarray(phi_c)).mean(axis=axis)


def synchrony(phi_v_a, phi_t_a, phi_v_b, phi_t_b) -> np.ndarray:
    """Whether two sites reach the same modality decision: sign(Φ_v - Φ_t) equal at both."""
    return np.sign(np.asarray(phi_v_a) - np.asarray(phi_t_a)) == np.sign(np.asarray(phi_v_b) - np.asarray(phi_t_b))
