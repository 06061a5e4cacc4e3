"""recipes/head_patching.yaml end to end through `anchorlab run`: the result's aggregates against brute force
from its own per-sample variables, fast == naive, the simulated NDIF server == local, and two torchrun
processes == one."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import anchorlab
from anchorlab.analyses.head_patching import HeadPatchingAnalysis
from anchorlab.cli import main
from anchorlab.estimate import estimate_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "head_patching.yaml"
SMALL = ["data.n_samples=6", "batch_size=4", "analyses.0.n_bootstrap=200", "analyses.0.heads_per_pass=3"]


def cli_run(out, *sets):
    args = [a for s in (*SMALL, *sets) for a in ("--set", s)]
    done = CliRunner().invoke(main, ["run", str(RECIPE), "--out", str(out), *args])
    assert done.exit_code == 0, done.output
    return xr.load_dataset(out / "head_patching.nc")


def ranks_of(values):
    """1 = most negative; ties by flat (layer-major) index: the ranking the result documents, brute force."""
    flat = values.ravel()
    order = sorted(range(flat.size), key=lambda i: (flat[i], i))
    ranks = np.empty(flat.size, dtype=int)
    for r, i in enumerate(order):
        ranks[i] = r + 1
    return ranks.reshape(values.shape)


def test_recipe_end_to_end_on_the_organism(tmp_path):
    ds = cli_run(tmp_path / "fast")
    assert ds["margin_change"].dims == ("task", "layer", "head", "sample")
    assert ds.sizes["layer"] * ds.sizes["head"] == 64 and list(ds["task"].values) == ["vf", "tf"]
    assert ds.attrs["param_positions"] == "instruction" and ds.attrs["alignment"].startswith("right-aligned")
    sel = ds["selected"].values
    for t, task in enumerate(ds["task"].values):
        change = ds["margin_change"].values[t][..., sel[t]]
        np.testing.assert_allclose(ds["margin_change_mean"].values[t], change.mean(-1), atol=1e-6)
        np.testing.assert_allclose(ds["flip_rate"].values[t], ds["flipped"].values[t][..., sel[t]].mean(-1), atol=1e-12)
        ci = ds["margin_change_mean_ci"].values[t]
        assert (ci[..., 0] <= ci[..., 1] + 1e-12).all()
        np.testing.assert_array_equal(ds["patch_rank"].values[t], ranks_of(ds["margin_change_mean"].values[t]))
        np.testing.assert_array_equal(ds["approx_rank"].values[t], ranks_of(ds["approx_change_mean"].values[t]))
        a, b = (ds[v].values[t].ravel() for v in ("approx_change_mean", "margin_change_mean"))
        tied = [np.array([(x < v).sum() + ((x == v).sum() + 1) / 2 for v in x]) for x in (a, b)]  # average ranks
        assert ds["spearman"].values[t] == pytest.approx(np.corrcoef(*tied)[0, 1], abs=1e-9)
        assert ds["spearman"].values[t] == pytest.approx(ds.attrs[f"spearman_{task}"], abs=1e-6)
    flips = ds["flipped"].values
    clean = ds["margin_clean"].values[:, None, None, :]
    np.testing.assert_array_equal(flips, (clean + ds["margin_change"].values > 0) != (clean > 0))
    assert flips.any() and (ds["n_patched"] == ds["n_role"]).all()  # the organism's twin instructions: same length

    for fig in ("head_patching_heads.png", "head_patching_approximation.png"):
        assert (tmp_path / "fast" / "figures" / fig).stat().st_size > 10_000

    naive_sets = ["analyses.0.engine=naive", "analyses.0.approximation=false"]
    naive = cli_run(tmp_path / "naive", *naive_sets)
    np.testing.assert_allclose(naive["margin_change"].values, ds["margin_change"].values, atol=1e-5, rtol=0)
    assert "approx_change" not in naive and naive.attrs["decoder_cells"] > 3 * ds.attrs["decoder_cells"]
    # `anchorlab estimate` prices exactly what each engine ran (after the follow-label pass)
    for result, sets, engine in ((ds, [], "fast"), (naive, naive_sets, "naive")):
        line = next(a for a in estimate_recipe(RECIPE, [*SMALL, *sets])["analyses"] if a["analysis"] == "head_patching")
        assert (line[f"cells_{engine}"], line[f"passes_{engine}"]) == (
            result.attrs["decoder_cells"],
            result.attrs["passes"],
        )
    check_targets(ds)


def check_targets(ds):
    """verify's rows: the ROC AUC of the patching score against circuit heads, brute force; a decoy circuit of
    the heads patching ranks last fails; a circuit acting at another role is not evaluable."""
    rank = ds["patch_rank"].sel(task="vf").transpose("layer", "head").values
    score = -ds["margin_change_mean"].sel(task="vf").transpose("layer", "head").values.ravel()
    for heads, holds in ((np.argwhere(rank <= 2), True), (np.argwhere(rank > rank.max() - 3), False)):
        circuit = {"heads": heads.tolist(), "positions": "instruction"}
        row = next(r for r in HeadPatchingAnalysis.targets(ds, circuit)
                   if r["target"] == "patching_head_auc" and r["task"] == "vf")
        positive = np.zeros(score.size, dtype=bool)
        positive[[lh[0] * rank.shape[1] + lh[1] for lh in heads]] = True
        pairs = [(p > q) + 0.5 * (p == q) for p in score[positive] for q in score[~positive]]
        assert row["value"] == pytest.approx(np.mean(pairs), abs=1e-5) and row["holds"] is holds
    rows = HeadPatchingAnalysis.targets(ds, {"heads": [[4, 5]], "positions": "last"})
    assert len(rows) == 4 and all(r["holds"] is None and "acts at 'last'" in r["detail"]["reason"] for r in rows)
    assert len(HeadPatchingAnalysis.claims(ds)) == 2


def test_simulated_remote_equals_local(random_organism_path, tmp_path, one_thread):
    sets = [f"model.id={random_organism_path}", "data.filter=all", *SMALL]
    local = anchorlab.run(RECIPE, out=tmp_path / "local", overrides=sets)["head_patching"]
    remote = anchorlab.run(RECIPE, out=tmp_path / "remote", overrides=sets, remote="local")["head_patching"]
    for var in ("margin_change", "approx_change", "margin_clean", "patch_rank", "flipped"):
        np.testing.assert_allclose(remote[var].values, local[var].values, atol=1e-6, rtol=0, err_msg=var)
    assert remote.attrs["ndif_requests"] == 3  # 12 prompts in batches of 4: one request each
    assert remote.attrs["backend"] == "ndif" and local.attrs["backend"] == "local"


@pytest.mark.slow
def test_two_processes_equal_one(random_organism_path, tmp_path):
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    sets = [f"model.id={random_organism_path}", "data.filter=all", *SMALL]
    outs = {}
    for n in (1, 2):
        launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", "-m"]
                  if n > 1 else [sys.executable, "-m"])
        out = tmp_path / str(n)
        done = subprocess.run([*launch, "anchorlab", "run", str(RECIPE), "--out", str(out),
                               *[a for s in sets for a in ("--set", s)]], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        outs[n] = xr.load_dataset(out / "head_patching.nc")
    one, two = outs[1], outs[2]
    assert set(one.data_vars) == set(two.data_vars) and two.attrs["world_size"] == 2
    for var in one.data_vars:
        if one[var].dtype.kind == "f":
            np.testing.assert_allclose(two[var].values, one[var].values, atol=1e-5, rtol=0, err_msg=var)
        else:
            np.testing.assert_array_equal(two[var].values, one[var].values, err_msg=var)
    assert one.attrs["decoder_cells"] == two.attrs["decoder_cells"]
