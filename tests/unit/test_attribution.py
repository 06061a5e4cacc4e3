"""docs/method.md §3.4–3.5 through nnsight vs an independent plain-torch computation (forward hooks, the
model's own norm module, per-head slices of W_O taken by hand)."""
import numpy as np
import pytest
import torch
from torch import nn

from anchorlab.analyses import Context
from anchorlab.analyses.attribution import AttributionAnalysis, AttributionSpec
from anchorlab.backends import LocalBackend
from anchorlab.data.toy import generate_samples
from anchorlab.method.head_contribution import head_contributions
from anchorlab.models.loading import load_model
from anchorlab.rows.batching import collate, layer_chunks
from anchorlab.rows.compiler import compile_rows
from anchorlab.rows.prompts import PromptStyle


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _setup(path, n=3, bias=False):
    bundle = load_model(str(path), attn_implementation="eager")
    if bias:  # an o_proj bias the heads must not claim
        gen = torch.Generator().manual_seed(1)
        for layer in bundle.layers:
            o = layer.self_attn.o_proj
            o.bias = nn.Parameter(0.5 * torch.randn(o.out_features, generator=gen))
    rows = compile_rows(bundle, generate_samples(n, seed=5), ["vf", "tf"], PromptStyle())
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    return bundle, LocalBackend(bundle), rows, batch


@pytest.fixture(scope="module")
def toy(random_toy_path):
    return _setup(random_toy_path)


@pytest.fixture(scope="module")
def toy_bias(random_toy_path):
    return _setup(random_toy_path, bias=True)


def reference(bundle, batch):
    """Per layer: input H^{l-1}, o_proj input / output, MLP output, layer output; by torch hooks."""
    cap = {k: [] for k in ("h_in", "z", "attn", "mlp", "h_out")}
    hooks = []
    for layer in bundle.layers:
        hooks += [
            layer.register_forward_pre_hook(lambda m, a: cap["h_in"].append(a[0])),
            layer.self_attn.o_proj.register_forward_pre_hook(lambda m, a: cap["z"].append(a[0])),
            layer.self_attn.o_proj.register_forward_hook(lambda m, a, o: cap["attn"].append(o)),
            layer.mlp.register_forward_hook(lambda m, a, o: cap["mlp"].append(o)),
            layer.register_forward_hook(lambda m, a, o: cap["h_out"].append(o[0] if isinstance(o, tuple) else o)),
        ]
    try:
        with torch.no_grad():
            bundle.model(**batch.inputs)
    finally:
        for h in hooks:
            h.remove()
    return cap


def hand_phi(bundle, row, h, k=1):
    """Φ (vision, text) of one state h [P, d] by hand: model's final norm, full unembedding rows."""
    norm, unembed = bundle.module(bundle.adapter.final_norm), bundle.module(bundle.adapter.unembed).weight
    with torch.no_grad():
        x = norm(h)
        out = []
        for modality in ("vision", "text"):
            pooled = (x @ unembed[list(row.entities.of(modality))].T).max(-1).values
            out.append(pooled.topk(min(k, len(pooled))).values.mean().item())
    return out


def hand_margin(bundle, row, h, k=1):
    v, t = hand_phi(bundle, row, h, k)
    return v - t if row.followed == "vision" else t - v


def run(bundle, backend, rows, batch, **kw):
    spec = AttributionSpec(kind="attribution", n_bootstrap=50, **kw)
    analysis = AttributionAnalysis(spec, Context(bundle, backend, seed=0))
    return analysis, analysis.run_batch(batch, rows)


def test_head_contributions_plus_bias_sum_to_o_proj_output(toy_bias):
    bundle, _, _, batch = toy_bias
    cap = reference(bundle, batch)
    hd, n_heads = bundle.head_dim, bundle.n_heads
    for layer, z, attn in zip(bundle.layers, cap["z"], cap["attn"]):
        o = layer.self_attn.o_proj
        with torch.no_grad():
            heads = head_contributions(z[:, None], o.weight[None], n_heads)[:, 0]  # [B, H, S, d]
            torch.testing.assert_close(heads.sum(1) + o.bias, attn, atol=1e-4, rtol=1e-4)
            h = 3  # one head by hand: o_proj with every other head's slice of its input zeroed, minus the bias
            only = torch.zeros_like(z)
            only[..., h * hd:(h + 1) * hd] = z[..., h * hd:(h + 1) * hd]
            torch.testing.assert_close(heads[:, h], o(only) - o.bias, atol=1e-5, rtol=1e-4)
            assert not torch.allclose(heads.sum(1), attn, atol=1e-3)  # the bias is in A^l, in no head


def test_pre_norm_residual_structure(toy):
    """H^l = H^{l-1} + A^l + F^l: what makes δ_A + δ_F telescope."""
    bundle, _, _, batch = toy
    cap = reference(bundle, batch)
    for h_in, attn, mlp, h_out in zip(cap["h_in"], cap["attn"], cap["mlp"], cap["h_out"]):
        torch.testing.assert_close(h_in + attn + mlp, h_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 2])
def test_sublayer_deltas_match_hand_lens_and_telescope(toy_bias, k):
    bundle, backend, rows, batch = toy_bias
    analysis, got = run(bundle, backend, rows, batch, k=k)
    cap = reference(bundle, batch)
    for i, row in enumerate(rows):
        pos = batch.roles[i]["instruction"]
        for layer in range(bundle.n_layers):
            before = cap["h_in"][layer][i, pos]
            mid = before + cap["attn"][layer][i, pos]
            after = cap["h_out"][layer][i, pos]
            m_before, m_mid, m_after = (hand_margin(bundle, row, h, k) for h in (before, mid, after))
            f = 0 if row.followed == "vision" else 1
            assert got["phi_attn"][i, layer, 0] == pytest.approx(hand_phi(bundle, row, mid, k)[f], abs=1e-4)
            assert got["phi"][i, layer + 1, 1] == pytest.approx(hand_phi(bundle, row, after, k)[1 - f], abs=1e-4)
            dS_before = got["phi"][i, layer, 0] - got["phi"][i, layer, 1]
            assert dS_before == pytest.approx(m_before, abs=1e-4)
            assert got["phi_attn"][i, layer, 0] - got["phi_attn"][i, layer, 1] == pytest.approx(m_mid, abs=1e-4)
            assert got["phi"][i, layer + 1, 0] - got["phi"][i, layer + 1, 1] == pytest.approx(m_after, abs=1e-4)
    ds = analysis.reduce(rows, got, np.ones(len(rows), bool))
    d = ds["delta"]
    for metric, fn in (("dS", lambda p: p.sel(side="followed") - p.sel(side="competitor")),
                       ("S_f", lambda p: p.sel(side="followed"))):
        total = d.sel(metric=metric).sum("sublayer")  # δ_A^l + δ_F^l
        m = fn(ds["phi"])
        previous = xr_concat_prev(fn(ds["phi_embed"]), m)
        np.testing.assert_allclose(total.transpose("task", "layer", "sample").values,
                                   (m - previous).transpose("task", "layer", "sample").values, atol=1e-5)
    assert np.abs(d.values).max() > 1e-3  # not trivially zero


def xr_concat_prev(embed, per_layer):
    """M(H^{l-1}) for every layer: the embedding value, then the previous layer's."""
    import xarray as xr

    prev = per_layer.shift(layer=1)
    return xr.where(per_layer["layer"] == 0, embed, prev)


@pytest.mark.parametrize("fixture,k", [("toy_bias", 1), ("toy", 2)])
def test_head_score_equals_brute_force(request, fixture, k):
    bundle, backend, rows, batch = request.getfixturevalue(fixture)
    _, got = run(bundle, backend, rows, batch, k=k, sublayers=False)
    cap = reference(bundle, batch)
    hd = bundle.head_dim
    for layer, head in ((0, 0), (1, 5), (2, 3), (3, 7)):
        w = bundle.layers[layer].self_attn.o_proj.weight[:, head * hd:(head + 1) * hd]
        for i, row in enumerate(rows):
            pos = batch.roles[i]["instruction"]
            base = cap["h_in"][layer][i, pos]
            with torch.no_grad():
                contrib = cap["z"][layer][i, pos][:, head * hd:(head + 1) * hd] @ w.T  # no bias
            expected = hand_margin(bundle, row, base + contrib, k) - hand_margin(bundle, row, base, k)
            assert got["head_score"][i, layer, head] == pytest.approx(expected, abs=1e-4)
    assert np.abs(got["head_score"]).max() > 1e-3


def test_chunked_lens_equals_one_block_and_chunks(toy):
    bundle, backend, rows, batch = toy
    analysis, whole = run(bundle, backend, rows, batch)
    analysis.spec.lens_memory_mb = 0  # budget 0 -> one layer per chunk
    chunked = analysis.run_batch(batch, rows)
    np.testing.assert_allclose(chunked["head_score"], whole["head_score"], atol=1e-6)
    assert [list(c) for c in layer_chunks(5, 10, 25)] == [[0, 1], [2, 3], [4]]
    assert [list(c) for c in layer_chunks(3, 10, 0)] == [[0], [1], [2]]


def test_rankings_stable_under_sample_order(toy):
    bundle, backend, rows, batch = toy
    analysis, got = run(bundle, backend, rows, batch, top_g=12, shared_top_n=10)
    ds = analysis.reduce(rows, got, np.ones(len(rows), bool))
    perm = [4, 1, 5, 0, 3, 2]
    ds2 = analysis.reduce([rows[p] for p in perm], {k: v[perm] for k, v in got.items()}, np.ones(len(rows), bool))
    assert list(ds2["sample"].values) != list(ds["sample"].values) or list(ds2["task"].values) != list(
        ds["task"].values
    )
    for var in ("head_rank", "top_heads_layer", "top_heads_head", "top_heads_score", "top_heads_score_ci",
                "shared_heads", "shared_layer", "shared_head", "delta_mean_ci", "head_score_ci"):
        a, b = ds[var], ds2[var]
        b = b.sel(task=ds["task"].values) if "task" in b.dims else b
        np.testing.assert_array_equal(a.values, b.transpose(*a.dims).values, err_msg=var)
    # the ranking is the order of mean scores, and shared = in both top-N
    mean = ds["head_score_mean"].sel(task="vf").values
    top = ds["top_heads_score"].sel(task="vf").values
    assert ds.sizes["rank"] == 12 and np.all(np.diff(top) <= 0)
    assert top[0] == pytest.approx(mean.max())
    rank = ds["head_rank"]
    shared = (rank.sel(task="vf") <= 10) & (rank.sel(task="tf") <= 10)
    np.testing.assert_array_equal(shared.values, ds["shared_heads"].values)
    assert ds.attrs["n_shared"] == int(shared.sum()) == ds.sizes["shared"]


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl", "internvl", "qwen2", "llama"])
def test_every_family_head_score_brute_force(family):
    """Each family's module paths, grouped-query attention, Qwen2.5-VL's 3-D rope, text-only LMs."""
    from anchorlab.models.tiny import tiny_model_path

    bundle, backend, rows, batch = _setup(tiny_model_path(family), n=1)
    _, got = run(bundle, backend, rows, batch)
    cap = reference(bundle, batch)
    hd = bundle.head_dim
    for layer, head in ((1, 2), (3, 0)):
        w = bundle.layers[layer].self_attn.o_proj.weight[:, head * hd:(head + 1) * hd]
        for i, row in enumerate(rows):
            pos = batch.roles[i]["instruction"]
            base = cap["h_in"][layer][i, pos]
            with torch.no_grad():
                contrib = cap["z"][layer][i, pos][:, head * hd:(head + 1) * hd] @ w.T
            expected = hand_margin(bundle, row, base + contrib) - hand_margin(bundle, row, base)
            assert got["head_score"][i, layer, head] == pytest.approx(expected, abs=1e-4)
        mid = (
            cap["h_in"][layer][0, batch.roles[0]["instruction"]] + cap["attn"][layer][0, batch.roles[0]["instruction"]]
        )
        f = 0 if rows[0].followed == "vision" else 1
        assert got["phi_attn"][0, layer, 0] == pytest.approx(hand_phi(bundle, rows[0], mid)[f], abs=1e-4)


def test_spec_needs_something_to_do():
    with pytest.raises(ValueError, match="nothing to attribute"):
        AttributionSpec(kind="attribution", sublayers=False, heads=False)


@pytest.mark.slow
def test_recipe_end_to_end(tmp_path):
    """`anchorlab run recipes/attribution.yaml` on the shipped toy: variables, dims, attrs, figures."""
    import subprocess
    import sys
    from pathlib import Path

    import xarray as xr

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "attribution.yaml"
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "anchorlab", "run", str(recipe), "--out", str(out),
                    "--set", "data.n_samples=4", "--set", "data.filter=all", "--set", "analyses.0.n_bootstrap=50"],
                   check=True, capture_output=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    ds = xr.open_dataset(out / "attribution.nc")
    assert ds["delta"].dims == ("task", "metric", "sublayer", "layer", "sample")
    assert ds["delta"].shape == (2, 2, 2, 4, 4)
    assert list(ds["metric"].values) == ["S_f", "dS"] and list(ds["sublayer"].values) == ["attn", "mlp"]
    assert ds["head_score"].dims == ("task", "layer", "head", "sample") and ds["head_score"].shape == (2, 4, 8, 4)
    assert ds["delta_mean_ci"].dims[-1] == "bound" and ds["head_score_ci"].shape == (2, 4, 8, 2)
    assert ds.sizes["rank"] == 32  # top_g 40 capped at 4 × 8 heads
    ranks = ds["head_rank"].values.reshape(2, -1)
    assert all(sorted(r) == list(range(1, 33)) for r in ranks)
    assert ds["shared_heads"].dims == ("layer", "head") and ds.attrs["shared_top_n"] == 10
    assert ds.attrs["analysis"] == "attribution" and ds.attrs["model_id"] == "toy:arbiter"
    assert ds.attrs["param_positions"] == "instruction" and "recipe_sha256" in ds.attrs
    lo, hi = ds["delta_mean_ci"].sel(bound="lo"), ds["delta_mean_ci"].sel(bound="hi")
    assert bool((lo <= ds["delta_mean"] + 1e-9).all() and (ds["delta_mean"] <= hi + 1e-9).all())
    for name in ("attribution_signal.png", "attribution_margin.png", "attribution_heads.png"):
        assert (out / "figures" / name).stat().st_size > 10_000


def _largest_allocation(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(e.cpu_memory_usage for e in prof.events())


def test_memory_does_not_grow_with_vocabulary():
    """The restricted lens never builds vocabulary-sized tensors and the trace keeps none of the
    model's own logits (a plain forward allocates positions × vocabulary)."""
    from anchorlab.models.tiny import tiny_model_path

    largest = {}
    for vocab in (4096, 65536):
        bundle, backend, rows, batch = _setup(tiny_model_path("llava", vocab_size=vocab), n=1)
        analysis = AttributionAnalysis(AttributionSpec(kind="attribution"), Context(bundle, backend, seed=0))
        analysis.run_batch(batch, rows)  # warm-up
        largest[vocab] = (_largest_allocation(lambda: analysis.run_batch(batch, rows)),
                          _largest_allocation(lambda: bundle.model(**batch.inputs)))
    (attr_small, _), (attr_big, fwd_big) = largest[4096], largest[65536]
    seq = batch.inputs["input_ids"].shape[1]
    assert fwd_big >= seq * 65536 * 4  # the plain forward's full logits
    assert attr_big <= 1.2 * attr_small < 65536 * 4  # not even one row of logits
    assert attr_big < fwd_big / 8
