"""Ablation sweeps (docs/method.md §3.7): one result per combination, stacked, equal to separate runs."""
import numpy as np
import pytest
import xarray as xr
import yaml

import anchorlab

pytestmark = pytest.mark.slow  # sweeps of full runs


def recipe(tmp_path, model, analysis, name="r.yaml"):
    path = tmp_path / name
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"id": str(model)},
                "data": {"source": "toy", "n_samples": 3, "filter": "all"},
                "analyses": [analysis],
                "batch_size": 6,
            }
        )
    )
    return path


def test_sweep_stacks_runs_equal_to_separate_runs(tmp_path, random_toy_path):
    swept = anchorlab.run(
        recipe(tmp_path, random_toy_path, {"kind": "signal", "sweep": {"k": [1, 2], "pool": ["max", "mean"]}}),
        out=tmp_path / "swept",
    )["signal"]
    assert swept["ldar"].dims == ("k", "pool", "task", "layer") and swept.attrs["ablation"] == "k, pool"
    assert swept.attrs["param_k"] == "1, 2"
    for k in (1, 2):
        for pool in ("max", "mean"):
            alone = anchorlab.run(
                recipe(tmp_path, random_toy_path, {"kind": "signal", "k": k, "pool": pool}, f"{k}{pool}.yaml"),
                out=tmp_path / f"{k}{pool}",
            )["signal"]
            # Same inputs, same batch, one forward each: equal up to float32 roundoff. MKL's sgemm may round
            # differently with where the arrays sit in memory (seen once in CI, a full suite: 8.5e-6 absolute,
            # 2.4e-5 relative, on values of 0.1-1); a wrong k or pool differs by orders of magnitude more.
            for var in ("signal", "ldar"):
                np.testing.assert_allclose(swept[var].sel(k=k, pool=pool).values, alone[var].values,
                                           rtol=1e-4, atol=1e-6, err_msg=f"{var} k={k} pool={pool}")
    # and the combinations are told apart: k=1 and k=2 pools differ by far more than the tolerance
    gap = np.abs(swept["signal"].sel(k=1, pool="mean").values - swept["signal"].sel(k=2, pool="mean").values).max()
    assert gap > 1e-2, gap
    assert (tmp_path / "swept" / "figures" / "signal_ablation.png").exists()


def test_sweep_errors_name_the_field_at_validation():
    from anchorlab.recipe import RecipeError, parse_recipe

    base = {"model": {"id": "toy:arbiter"}}
    with pytest.raises(RecipeError, match=r"analyses\.0\.sweep\.topk: not a parameter of signal"):
        parse_recipe({**base, "analyses": [{"kind": "signal", "sweep": {"topk": [1]}}]})
    with pytest.raises(RecipeError, match=r"analyses\.0\.sweep: \{'k': 0\} is not valid: k:"):
        parse_recipe({**base, "analyses": [{"kind": "signal", "sweep": {"k": [0]}}]})


def test_attribution_sweep_with_ragged_and_empty_shared_heads_is_stored(tmp_path):
    """toy:anchored-flawed: pool max finds 3 shared heads, pool mean none; both are stored, padded."""
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"id": "toy:anchored-flawed"},
        "data": {"source": "organism", "n_samples": 8, "filter": "all", "filter_rule": "first_token"},
        "analyses": [{"kind": "attribution", "n_bootstrap": 20, "shared_top_n": 3,
                      "sweep": {"k": [1, 2], "pool": ["max", "mean"]}}], "batch_size": 16}))
    anchorlab.run(path, out=tmp_path / "run")
    ds = xr.load_dataset(tmp_path / "run" / "attribution.nc")
    counts = []
    for k in (1, 2):
        for pool in ("max", "mean"):
            one = ds.sel(k=k, pool=pool)
            rank = one["head_rank"].transpose("task", "layer", "head")
            expected = set(zip(*np.nonzero(((rank.sel(task="vf") <= 3) & (rank.sel(task="tf") <= 3)).values)))
            valid = one["shared_valid"].values
            assert set(zip(one["shared_layer"].values[valid], one["shared_head"].values[valid])) == expected
            assert (one["shared_layer"].values[~valid] == -1).all() and (one["shared_head"].values[~valid] == -1).all()
            counts.append(int(valid.sum()))
    assert 0 in counts and max(counts) > 0  # ragged, with an empty combination
    assert (
        ds["shared_layer"].dtype.kind == "i" and "-1 where shared_valid is false" in ds["shared_layer"].attrs["padding"]
    )
