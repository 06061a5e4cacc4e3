"""Attention knockout (docs/method.md §3.1): invariants, an independent hook-based reference, fast == naive."""
import pytest
import torch
from tiny_support import MULTIMODAL_PATHWAYS, TEXT_PATHWAYS, sample

from anchorlab.adapters.paths import envoy_at
from anchorlab.backends import LocalBackend
from anchorlab.engines.knockout import KnockoutEngine, role_mask
from anchorlab.errors import UserError
from anchorlab.interventions.knockout import (
    apply_knockout,
    base_allowed,
    first_affected,
    knocked_edges,
    parse_pathway,
    window_layers,
)
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import compile_rows
from anchorlab.rows.prompts import PromptStyle


def prepared(bundle):
    rows = compile_rows(bundle, [sample(True), sample(False, position="after_question")], ["vf", "tf"], PromptStyle())
    return rows, collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)


def test_window_and_edges_pure():
    assert window_layers(5, 3, 28) == [4, 5, 6]
    assert window_layers(0, 3, 28) == [0, 1] and window_layers(27, 3, 28) == [26, 27]
    assert window_layers(5, 4, 28) == [4, 5, 6, 7] and window_layers(5, 1, 28) == [5]
    src = torch.tensor([[1, 1, 0, 0, 0]], dtype=torch.bool)
    dst = torch.tensor([[0, 0, 0, 1, 1]], dtype=torch.bool)
    edges = knocked_edges(src, dst)
    assert edges.sum() == 4 and edges[0, 3, :2].all() and not edges[0, :3].any()
    assert first_affected(edges).tolist() == [3]
    # a destination before every source position has no edge at all (causality)
    assert not knocked_edges(dst, src).any()
    with pytest.raises(UserError, match="write it as 'src->dst'"):
        parse_pathway("vision-last")


def knock_trace(envoy, paths, window, allowed, knocked, n_layers):
    """Naive knockout plus every layer's output and (eager) attention weights."""
    layers = envoy_at(envoy, paths["layers"])
    active = torch.ones(allowed.shape[0], dtype=torch.bool)
    hidden, weights = [], []
    for j in range(n_layers):
        attn = envoy_at(layers[j], paths["attention"])
        if j in window:
            apply_knockout(attn, allowed, knocked, active)
        weights.append(attn.output[1])
        hidden.append(layers[j].output)
    return hidden, weights


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl"])
def test_prefix_unchanged_and_eager_probabilities_zero(tiny, family, one_thread):
    bundle = tiny(family, "eager")
    rows, batch = prepared(bundle)
    backend, engine = LocalBackend(bundle), KnockoutEngine(bundle, LocalBackend(bundle))
    src, dst = role_mask(batch, rows, "vision", "p"), role_mask(batch, rows, "instruction", "p")
    knocked = knocked_edges(src, dst)
    allowed = base_allowed(batch.inputs["attention_mask"], 0)
    n, window = bundle.n_layers, [1, 2]
    clean_h, clean_w = backend.trace(batch.inputs, knock_trace, engine.paths, [], allowed, knocked, n)
    h, w = backend.trace(batch.inputs, knock_trace, engine.paths, window, allowed, knocked, n)
    p0 = int(first_affected(knocked).min())
    real = batch.inputs["attention_mask"][:, :p0].bool()  # padding queries are nobody's input
    for j in range(n):
        assert torch.equal(h[j][:, :p0][real], clean_h[j][:, :p0][real]), (
            f"layer {j}: positions before min(dst) changed"
        )
    assert not torch.allclose(h[-1][:, p0:], clean_h[-1][:, p0:])
    edge = knocked[:, None].expand_as(w[1])
    for j in window:
        assert (w[j][edge] == 0).all(), f"layer {j}: dst->src probability not exactly 0"
        assert torch.allclose(w[j].sum(-1), torch.ones(()), atol=1e-5)
    assert torch.equal(w[0], clean_w[0])  # below the window nothing changed at all
    assert (w[3][edge] > 0).all()  # above it the edges are open again


def hook_reference(bundle, batch, knocked, window):
    """Plain torch: forward pre-hooks swap the eager additive mask, no nnsight; decision logits."""
    min_value = torch.finfo(torch.float32).min
    allowed = base_allowed(batch.inputs["attention_mask"], 0) & ~knocked
    mask = torch.where(allowed[:, None], 0.0, min_value)

    def swap(module, args, kwargs):
        return args, {**kwargs, "attention_mask": mask}

    handles = [bundle.layers[j].self_attn.register_forward_pre_hook(swap, with_kwargs=True) for j in window]
    try:
        with torch.no_grad():
            return bundle.model(**batch.inputs).logits[:, -1]
    finally:
        for h in handles:
            h.remove()


def test_nnsight_knockout_equals_hook_reference(tiny, one_thread):
    bundle = tiny("llava", "eager")
    rows, batch = prepared(bundle)
    engine = KnockoutEngine(bundle, LocalBackend(bundle), "naive")
    sweep = engine.sweep(batch, rows, [("context->last", "context", "last")], [2], 3)
    knocked = knocked_edges(role_mask(batch, rows, "context", "p"), role_mask(batch, rows, "last", "p"))
    logits = hook_reference(bundle, batch, knocked, window_layers(2, 3, bundle.n_layers))
    ids = torch.tensor([[r.answer_ids[r.followed], r.answer_ids[r.competitor]] for r in rows])
    expected = torch.gather(logits, 1, ids)
    torch.testing.assert_close(sweep.logits[:, 0, 0], expected, atol=1e-5, rtol=0)
    assert (sweep.logits[:, 0, 0] - sweep.clean).abs().max() > 1e-3  # the knockout did something


@pytest.mark.parametrize("family,attn", [("llava", "sdpa"), ("qwen2_5_vl", "sdpa"), ("internvl", "sdpa"),
                                         ("llama", "sdpa"), ("qwen2", "eager"), ("llava", "eager")])
def test_fast_path_equals_naive(tiny, family, attn, one_thread):
    bundle = tiny(family, attn)
    rows, batch = prepared(bundle)
    names = MULTIMODAL_PATHWAYS if bundle.adapter.is_multimodal else TEXT_PATHWAYS
    pathways = [(p, *parse_pathway(p)) for p in names]
    centres = list(range(bundle.n_layers))
    backend = LocalBackend(bundle)
    naive = KnockoutEngine(bundle, backend, "naive").sweep(batch, rows, pathways, centres, 3)
    fast = KnockoutEngine(bundle, backend, "fast", variants_per_pass=3).sweep(batch, rows, pathways, centres, 3)
    torch.testing.assert_close(fast.logits, naive.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.clean, naive.clean, atol=1e-5, rtol=0)
    assert (naive.logits - naive.clean[:, None, None]).abs().max() > 1e-3
    assert fast.cells < 0.6 * naive.cells


def test_destination_without_keys_is_a_named_error(tiny, one_thread):
    bundle = tiny("qwen2", "sdpa")  # text-only: `last` sees only text, so text->last leaves it nothing
    rows, batch = prepared(bundle)
    engine = KnockoutEngine(bundle, LocalBackend(bundle))
    with pytest.raises(UserError, match=r"knockout 'text->last' in sample 'sheep' \(vf\).*no key"):
        engine.sweep(batch, rows, [("text->last", "text", "last")], [0], 3)
    with pytest.raises(UserError, match=r"role 'vision' is empty in sample 'sheep' \(vf\)"):
        engine.sweep(batch, rows, [("vision->last", "vision", "last")], [0], 3)


def test_knockout_recipe_end_to_end(tmp_path, random_toy_path):
    import numpy as np
    import xarray as xr
    from click.testing import CliRunner

    from anchorlab.cli import main

    recipe = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "recipes" / "knockout.yaml")
    common = ["--set", f"model.id={random_toy_path}", "--set", "data.n_samples=3", "--set", "data.filter=all",
              "--set", "analyses.0.n_bootstrap=200"]
    fast = CliRunner().invoke(main, ["run", recipe, "--out", str(tmp_path / "fast"), *common])
    assert fast.exit_code == 0, fast.output
    naive = CliRunner().invoke(main, ["run", recipe, "--out", str(tmp_path / "naive"), *common,
                                      "--set", "analyses.0.engine=naive"])
    assert naive.exit_code == 0, naive.output
    a, b = xr.open_dataset(tmp_path / "fast" / "knockout.nc"), xr.open_dataset(tmp_path / "naive" / "knockout.nc")
    assert a["nssd"].dims == ("task", "pathway", "layer", "sample")
    assert list(a["pathway"].values)[0] == "vision->last" and a.sizes["pathway"] == 8
    assert a["nssd_mean_ci"].dims == ("task", "pathway", "layer", "bound")
    np.testing.assert_allclose(a["p_followed"].values, b["p_followed"].values, atol=1e-5)
    np.testing.assert_allclose(a["nssd"].values, b["nssd"].values, atol=1e-5)
    assert np.isfinite(a["nssd"].values).all() and (a["window_end"] - a["window_start"] <= 2).all()
    assert a.attrs["param_engine"] == "fast" and b.attrs["param_engine"] == "naive"
    assert a.attrs["decoder_cells"] < b.attrs["decoder_cells"]
    for fig in ("knockout_pathways.png", "knockout_layers.png"):
        assert (tmp_path / "fast" / "figures" / fig).stat().st_size > 10_000


def test_pathway_without_edges_changes_nothing(tiny, one_thread):
    """dst entirely before src (instruction before the context): no edge, the clean logits, NSSD 0."""
    bundle = tiny("llava", "sdpa")
    rows = compile_rows(bundle, [sample(True, position="before_context")], ["vf"], PromptStyle())
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    pathways = [("context->instruction", "context", "instruction"), ("context->last", "context", "last")]
    for mode in ("fast", "naive"):
        sweep = KnockoutEngine(bundle, LocalBackend(bundle), mode).sweep(batch, rows, pathways, [0, 2], 3)
        torch.testing.assert_close(sweep.logits[:, 0], sweep.clean[:, None].expand(-1, 2, -1), atol=1e-5, rtol=0)
        assert (sweep.logits[:, 1] - sweep.clean[:, None]).abs().max() > 1e-4


def test_window_wider_than_the_model_is_clipped(tiny, one_thread):
    """window 9 on 4 layers covers every layer from every centre: the same masks as window 7 (also all
    layers), in the fast engine as in the naive one."""
    bundle = tiny("llava", "sdpa")
    rows = compile_rows(bundle, [sample(True)], ["vf", "tf"], PromptStyle())
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    pathways = [("instruction->last", "instruction", "last"), ("vision->last", "vision", "last")]
    backend = LocalBackend(bundle)
    wide = KnockoutEngine(bundle, backend, "fast").sweep(batch, rows, pathways, [0, 1, 2, 3], 9)
    all_layers = KnockoutEngine(bundle, backend, "naive").sweep(batch, rows, pathways, [0, 1, 2, 3], 7)
    torch.testing.assert_close(wide.logits, all_layers.logits, atol=1e-5, rtol=0)
    for centre in range(4):
        assert window_layers(centre, 9, 4) == [0, 1, 2, 3]
    assert (wide.logits - wide.clean[:, None, None]).abs().max() > 1e-4  # the knockout did change something
