"""Shared figure conventions: headless backend, task colours, CI bands."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

TASK_LABEL = {"vf": "vision following", "tf": "text following"}
TASK_COLOR = {"vf": "#1f77b4", "tf": "#d62728"}


def band(ax, x, mean, ci, color, label, **kw):
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.plot(x, mean, color=color, label=label, marker="o", ms=3, **kw)
    ax.fill_between(x, ci[..., 0], ci[..., 1], color=color, alpha=0.2, linewidth=0)


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
