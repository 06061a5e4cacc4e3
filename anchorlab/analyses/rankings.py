"""Head rankings from per-head attribution (docs/method.md §3.5): top-G per task and modality-shared heads.

Stored in the attribution result so later recipes can read them by path (`heads_from: DIR/attribution.nc`):

- `head_rank` (task, layer, head): 1 = the head with the largest mean `head_score` over the task's
  selected samples; ties go to the lower layer, then the lower head. Any G: `head_rank <= G`.
- `top_heads_layer`, `top_heads_head`, `top_heads_score`, `top_heads_score_ci` (task, rank[, bound]):
  the top-G list in rank order (rank 1..G).
- `shared_heads` (layer, head) bool: in the top-N of both vf and tf; also listed as `shared_layer`,
  `shared_head` (dim `shared`), best first (by the worse of its two ranks, then layer, head).
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..method.stats import bootstrap_ci


def order_heads(mean: np.ndarray) -> np.ndarray:
    """Flat (layer-major) head indices from the largest mean score down; ties by index."""
    flat = np.asarray(mean, dtype=np.float64).reshape(-1)
    return np.lexsort((np.arange(flat.size), -flat))


def rank_heads(ds: xr.Dataset, top_g: int, shared_top_n: int) -> xr.Dataset:
    mean = ds["head_score_mean"].transpose("task", "layer", "head").values
    ci = ds["head_score_ci"].transpose("task", "layer", "head", "bound").values
    tasks = list(ds["task"].values)
    n_t, n_l, n_h = mean.shape
    g, n = min(top_g, n_l * n_h), min(shared_top_n, n_l * n_h)
    ranks = np.zeros((n_t, n_l * n_h), dtype=np.int64)
    tops = []
    for t in range(n_t):
        order = order_heads(mean[t])
        ranks[t, order] = np.arange(1, order.size + 1)
        tops.append(order[:g])
    tops = np.array(tops)  # [T, G] flat indices
    ds = ds.assign_coords(rank=np.arange(1, g + 1))
    ds["head_rank"] = (("task", "layer", "head"), ranks.reshape(n_t, n_l, n_h))
    ds["top_heads_layer"] = (("task", "rank"), tops // n_h)
    ds["top_heads_head"] = (("task", "rank"), tops % n_h)
    ds["top_heads_score"] = (("task", "rank"), np.take_along_axis(mean.reshape(n_t, -1), tops, 1))
    ds["top_heads_score_ci"] = (("task", "rank", "bound"),
                                np.take_along_axis(ci.reshape(n_t, -1, 2), tops[..., None], 1))
    both = "vf" in tasks and "tf" in tasks
    if both:
        in_top = ranks.reshape(n_t, n_l, n_h) <= n
        shared = in_top[tasks.index("vf")] & in_top[tasks.index("tf")]
    else:
        shared = np.zeros((n_l, n_h), dtype=bool)
    worst = ranks.reshape(n_t, n_l, n_h).max(0)
    listed = sorted(zip(*np.nonzero(shared)), key=lambda lh: (worst[lh], lh[0], lh[1]))
    ds["shared_heads"] = (("layer", "head"), shared)
    ds = ds.assign_coords(shared=np.arange(len(listed)))
    ds["shared_layer"] = (("shared",), np.array([lh[0] for lh in listed], dtype=np.int64))
    ds["shared_head"] = (("shared",), np.array([lh[1] for lh in listed], dtype=np.int64))
    ds["head_rank"].attrs["description"] = "1 = largest mean head_score over the task's selected samples"
    ds["top_heads_layer"].attrs["description"] = f"layer of the rank-r head (top {g} per task)"
    ds["shared_heads"].attrs["description"] = (
        f"modality-shared heads: in the top {n} of both vf and tf" if both
        else "undefined: needs both tasks vf and tf (all false)")
    ds.attrs.update(top_g=g, shared_top_n=n, n_shared=int(shared.sum()))
    return ds


def task_means(values: xr.DataArray, sel: np.ndarray, samples: list[str], n_bootstrap: int, ci_level: float,
               seed: int) -> tuple[xr.DataArray, xr.DataArray]:
    """Mean and bootstrap CI over each task's selected samples (sel [task, sample]), taken in sample-id
    order so both are exactly invariant to the order samples arrive in."""
    order = np.argsort(np.array(samples, dtype=object), kind="stable")
    dims = [d for d in values.dims if d not in ("task", "sample")]
    means, cis = [], []
    for t in range(values.sizes["task"]):
        chosen = [i for i in order if sel[t, i]]
        v = values.isel(task=t, sample=chosen).transpose(*dims, "sample").values.astype(np.float64)
        means.append(v.mean(-1))
        cis.append(bootstrap_ci(v, n_bootstrap, ci_level, seed))
    dims = ("task", *dims)
    return xr.DataArray(np.array(means), dims=dims), xr.DataArray(np.array(cis), dims=(*dims, "bound"))
