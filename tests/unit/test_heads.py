"""Head interventions (docs/method.md §3.6): exact o_proj effects, α = 1 is a no-op, head sets, fast == naive."""
import pytest
import torch
from tiny_support import sample

from anchorlab.adapters.paths import envoy_at
from anchorlab.analyses.head_sets import neutral_sample
from anchorlab.backends import LocalBackend
from anchorlab.engines.head_sweep import HeadEngine, apply_tables
from anchorlab.engines.knockout import role_mask
from anchorlab.engines.prefix import model_paths
from anchorlab.errors import UserError
from anchorlab.interventions.head_scaling import layer_matched_heads, random_heads, scale_table
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import compile_rows
from anchorlab.rows.prompts import PromptStyle


def prepared(bundle):
    rows = compile_rows(bundle, [sample(True), sample(False)], ["vf", "tf"], PromptStyle())
    return rows, collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)


def o_proj_trace(envoy, paths, layer, tables, where, head_dim):
    block = envoy_at(envoy, paths["layers"])[layer]
    o_proj = envoy_at(block, paths["o_proj"])
    if tables is not None:
        apply_tables(envoy, paths, [layer], tables, where, head_dim)
    return o_proj.input, o_proj.output


def test_block_removes_exactly_one_heads_contribution_at_chosen_positions(tiny, one_thread):
    bundle = tiny("qwen2_5_vl", "eager")  # its o_proj has no bias; head contributions are exact
    rows, batch = prepared(bundle)
    backend, paths = LocalBackend(bundle), model_paths(bundle.adapter)
    layer, head, hd = 1, 2, bundle.head_dim
    where = role_mask(batch, rows, "instruction", "t")
    tables = scale_table([(layer, head)], 0.0, bundle.n_layers, bundle.n_heads).expand(len(rows), -1, -1)
    # only layer 1 is edited, so everything up to its o_proj is the same in both runs
    x, clean = backend.trace(batch.inputs, o_proj_trace, paths, layer, None, where, hd)
    _, blocked = backend.trace(batch.inputs, o_proj_trace, paths, layer, tables, where, hd)
    w = bundle.layers[layer].self_attn.o_proj.weight.detach()
    contribution = x[..., head * hd : (head + 1) * hd] @ w[:, head * hd : (head + 1) * hd].T
    diff = blocked - clean
    torch.testing.assert_close(diff[where], -contribution[where], atol=1e-5, rtol=0)
    assert torch.equal(diff[~where], torch.zeros_like(diff[~where]))
    assert contribution[where].abs().max() > 1e-3


def test_alpha_one_reproduces_the_original_exactly(tiny, one_thread):
    bundle = tiny("llava", "sdpa")
    rows, batch = prepared(bundle)
    engine = HeadEngine(bundle, LocalBackend(bundle), "naive")
    heads = [(0, 1), (2, 3), (3, 0)]
    tables = torch.stack([torch.ones(bundle.n_layers, bundle.n_heads),
                          scale_table(heads, 1.0, bundle.n_layers, bundle.n_heads),
                          scale_table(heads, 6.0, bundle.n_layers, bundle.n_heads)])
    tables[1][0, 1] = 1.0 + 1e-7  # not exactly 1: the edit runs, multiplying by ~1
    run = engine.run(batch, rows, tables, rule="first_token")
    torch.testing.assert_close(run.margins[:, 1], run.margins[:, 0], atol=1e-5, rtol=0)
    exact = engine.run(
        batch,
        rows,
        torch.stack([tables[0], scale_table(heads, 1.0, 4, bundle.n_heads)]),
        rule="generation",
        max_new_tokens=4,
    )
    assert exact.tokens[0] == exact.tokens[1]
    assert (run.margins[:, 2] - run.margins[:, 0]).abs().max() > 1e-3


@pytest.mark.parametrize(
    "family,attn", [("llava", "sdpa"), ("qwen2_5_vl", "sdpa"), ("internvl", "eager"), ("qwen2", "sdpa")]
)
def test_fast_path_equals_naive(tiny, family, attn, one_thread):
    bundle = tiny(family, attn)
    rows, batch = prepared(bundle)
    n_l, n_h = bundle.n_layers, bundle.n_heads
    tables = torch.stack([torch.ones(n_l, n_h)] + [scale_table(random_heads(3, n_l, n_h, s), 0.0, n_l, n_h)
                                                   for s in range(3)] + [scale_table([(1, 1), (3, 2)], 5.0, n_l, n_h)])
    backend = LocalBackend(bundle)
    naive = HeadEngine(bundle, backend, "naive")
    fast = HeadEngine(bundle, backend, "fast", settings_per_pass=2)
    a, b = naive.run(batch, rows, tables, rule="first_token"), fast.run(batch, rows, tables, rule="first_token")
    torch.testing.assert_close(b.margins, a.margins, atol=1e-5, rtol=0)
    assert b.cells < a.cells
    gen_a = naive.run(batch, rows, tables, rule="generation", max_new_tokens=4)
    gen_b = fast.run(batch, rows, tables, rule="generation", max_new_tokens=4)
    assert gen_a.tokens == gen_b.tokens
    assert any(gen_a.tokens[k] != gen_a.tokens[0] for k in range(1, len(tables)))


def test_head_sets_reproducible_and_exclusive():
    targeted = [(3, 1), (3, 5), (2, 0)]
    a = random_heads(5, 4, 8, seed=7, exclude=set(targeted))
    assert a == random_heads(5, 4, 8, seed=7, exclude=set(targeted)) and a != random_heads(5, 4, 8, seed=8)
    assert not set(a) & set(targeted) and len(set(a)) == 5
    for seed in range(20):
        m = layer_matched_heads(targeted, 8, seed, exclude=set(targeted))
        assert sorted(l for l, _ in m) == sorted(l for l, _ in targeted)
        assert not set(m) & set(targeted)
    crowded = [(1, h) for h in range(7)]  # 7 of layer 1's 8 heads are targeted
    matched = layer_matched_heads(crowded, 8, 0, exclude=set(crowded))
    assert len(matched) == 7 and {l for l, _ in matched} == {1} and (1, 7) in matched
    with pytest.raises(UserError, match="cannot draw 30 random heads"):
        random_heads(30, 4, 8, 0, exclude=set(targeted))
    with pytest.raises(UserError, match="out of range"):
        scale_table([(4, 0)], 0.0, 4, 8)


def test_neutral_twin_agrees_with_the_image():
    s = sample(False)  # context "Two dogs sleep.", image answer "three", text answer "two"
    twin = neutral_sample(s)
    assert twin.context == "three dogs sleep." and twin.id == "dogs~neutral"
    assert twin.answer_text == s.answer_text  # the old text answer stays the wrong one to give
    # the long sample's context never names its text answer ("playing"): no twin, not a guess
    assert neutral_sample(sample(True)) is None
