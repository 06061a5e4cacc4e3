"""Head patching (kind: head_patching): alignment, Spearman and attribution patching against brute force;
fast == naive on the toy and three families; both == a plain-torch forward-hook implementation."""
import numpy as np
import pytest
import torch
from tiny_support import sample

from anchorlab.analyses.head_patching import patch_pairs, twin_batch
from anchorlab.backends import LocalBackend
from anchorlab.engines.head_patch import HeadPatchEngine, passes_and_cells, plan_passes
from anchorlab.errors import UserError
from anchorlab.interventions.head_patch import align_positions
from anchorlab.method.head_contribution import attribution_patching
from anchorlab.method.stats import average_ranks, spearman
from anchorlab.models.loading import load_model
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import compile_rows
from anchorlab.rows.prompts import PromptStyle


def prepared(bundle, position=None):
    """Two samples whose instructions tokenise to different lengths in the two tasks (31 vs 36 tokens)."""
    rows = compile_rows(bundle, [sample(True, position=position), sample(False, position="after_question")],
                        ["vf", "tf"], PromptStyle())
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    return rows, batch, twin_batch(bundle, rows, PromptStyle())


def test_alignment_right_and_equal():
    t = torch.tensor
    dst, src, valid = align_positions([t([3, 4, 5]), t([7, 8, 9])], [t([2, 3]), t([9, 10, 11, 12])], "right",
                                      ["a", "b"], "instruction")
    assert dst.tolist() == [[4, 5, 4], [7, 8, 9]] and src.tolist() == [[2, 3, 2], [10, 11, 12]]
    assert valid.tolist() == [[True, True, False], [True, True, True]]
    dst, src, valid = align_positions([t([3, 4])], [t([6, 7])], "equal", ["a"], "instruction")
    assert dst.tolist() == [[3, 4]] and src.tolist() == [[6, 7]] and valid.all()
    with pytest.raises(UserError, match=r"sample 'x' \(vf\): role 'instruction' has 3 tokens here but 2 in its"):
        align_positions([t([3, 4, 5])], [t([2, 3])], "equal", ["sample 'x' (vf)"], "instruction")
    with pytest.raises(UserError, match="role 'query' has no tokens"):
        align_positions([t([], dtype=torch.long)], [t([2])], "right", ["sample 'x' (vf)"], "query")


def test_spearman_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(size=30), rng.normal(size=30)
        ra, rb = np.argsort(np.argsort(a)) + 1.0, np.argsort(np.argsort(b)) + 1.0  # no ties
        n = len(a)
        expected = 1 - 6 * ((ra - rb) ** 2).sum() / (n * (n * n - 1))
        assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert average_ranks(np.array([5.0, 1.0, 5.0, 3.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    # ties: Pearson of (1, 2.5, 2.5, 4) with (1, 2, 3, 4) = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(4.5 * 5), abs=1e-12)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_attribution_patching_against_a_loop():
    g = torch.Generator().manual_seed(0)
    n_layers, b, p, n_heads, hd = 3, 2, 4, 3, 5
    z_twin, z_clean, grad = (torch.randn(n_layers, b, p, n_heads * hd, generator=g) for _ in range(3))
    valid = torch.tensor([[True, True, False, True], [False, True, True, True]])
    got = attribution_patching(z_twin, z_clean, grad, valid, n_heads)
    want = torch.zeros(b, n_layers, n_heads)
    for i in range(b):
        for layer in range(n_layers):
            for h in range(n_heads):
                cols = slice(h * hd, (h + 1) * hd)
                for q in range(p):
                    if valid[i, q]:
                        want[i, layer, h] += ((z_twin[layer, i, q, cols] - z_clean[layer, i, q, cols])
                                              * grad[layer, i, q, cols]).sum()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_pass_plan_never_mixes_layers():
    assert plan_passes(2, 5, 2) == [(0, (0, 1)), (0, (2, 3)), (0, (4,)), (1, (0, 1)), (1, (2, 3)), (1, (4,))]
    assert plan_passes(3, 4, 16) == [(0, (0, 1, 2, 3)), (1, (0, 1, 2, 3)), (2, (0, 1, 2, 3))]


def run_engines(bundle, rows, batch, twins, approximation=False, role="instruction", per_pass=3):
    dst, src, valid = patch_pairs(batch, twins, rows, role, "right")
    out = {}
    for mode in ("naive", "fast"):
        backend = LocalBackend(bundle)
        out[mode] = HeadPatchEngine(bundle, backend, mode, per_pass).run(batch, twins, rows, dst, src, valid,
                                                                          approximation)
        b, s = batch.inputs["input_ids"].shape
        passes, cells = passes_and_cells(mode, bundle.n_layers, bundle.n_heads, per_pass, b, s,
                                         twins.inputs["input_ids"].shape[1], int(dst[valid].min()), approximation)
        assert backend.traces == passes and out[mode].cells == cells  # what `anchorlab estimate` counts, ran
    return out


@pytest.mark.parametrize("family,attn", [("llava", "sdpa"), ("qwen2_5_vl", "sdpa"), ("internvl", "eager"),
                                         ("qwen2", "sdpa")])
def test_fast_equals_naive(tiny, family, attn, one_thread):
    bundle = tiny(family, attn)
    rows, batch, twins = prepared(bundle)
    out = run_engines(bundle, rows, batch, twins)
    fast, naive = out["fast"], out["naive"]
    torch.testing.assert_close(fast.logits, naive.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.clean, naive.clean, atol=1e-5, rtol=0)
    assert (naive.logits - naive.clean[:, None, None]).abs().amax() > 1e-3  # some patch changed the decision
    assert fast.cells < 0.6 * naive.cells


def test_fast_equals_naive_on_the_toy(random_toy_path, one_thread):
    bundle = load_model(str(random_toy_path))
    from anchorlab.data.toy import generate_samples

    rows = compile_rows(bundle, generate_samples(3, seed=5), ["vf", "tf"], PromptStyle())
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    out = run_engines(bundle, rows, batch, twin_batch(bundle, rows, PromptStyle()), per_pass=5)
    torch.testing.assert_close(out["fast"].logits, out["naive"].logits, atol=1e-5, rtol=0)
    assert (out["naive"].logits - out["naive"].clean[:, None, None]).abs().amax() > 1e-4


def hook_reference(bundle, rows, batch, twins):
    """Plain torch, no nnsight: forward pre-hooks record every o_proj input of the twin, then replace one
    head's slice at the right-aligned instruction positions; the model's own logits of the decision
    tokens per (layer, head), and the gradient x activation-difference estimate from torch.autograd."""
    hd, n_heads, n_layers = bundle.head_dim, bundle.n_heads, bundle.n_layers
    o_projs = [layer.get_submodule(bundle.adapter.o_proj) for layer in bundle.layers]
    ids = torch.tensor([[r.answer_ids[r.followed], r.answer_ids[r.competitor]] for r in rows])
    pairs = []
    for i in range(len(rows)):
        r, t = batch.roles[i]["instruction"].tolist(), twins.roles[i]["instruction"].tolist()
        n = min(len(r), len(t))
        pairs.append(list(zip(r[len(r) - n :], t[len(t) - n :])))
    recorded = {}

    def run(hooks, inputs, grad=False):
        handles = [o_projs[j].register_forward_pre_hook(fn) for j, fn in hooks.items()]
        try:
            with torch.set_grad_enabled(grad):
                return torch.gather(bundle.model(**inputs).logits[:, -1], 1, ids)
        finally:
            for h in handles:
                h.remove()

    def record(j):
        return lambda module, args: recorded.__setitem__(j, args[0].detach().clone())

    run({j: record(j) for j in range(n_layers)}, twins.inputs)
    twin = dict(recorded)
    logits = torch.zeros(len(rows), n_layers, n_heads, 2)
    for layer in range(n_layers):
        for head in range(n_heads):
            def patch(module, args, layer=layer, head=head):
                x = args[0].clone()
                cols = slice(head * hd, (head + 1) * hd)
                for i, row_pairs in enumerate(pairs):
                    for q, k in row_pairs:
                        x[i, q, cols] = twin[layer][i, k, cols]
                return (x,)
            logits[:, layer, head] = run({layer: patch}, batch.inputs)
    clean_inputs = {}
    out = run({j: (lambda j: lambda module, args: clean_inputs.__setitem__(j, args[0]))(j) for j in range(n_layers)},
              batch.inputs, grad=True)
    grads = torch.autograd.grad((out[:, 0] - out[:, 1]).sum(), [clean_inputs[j] for j in range(n_layers)])
    approx = torch.zeros(len(rows), n_layers, n_heads)
    for i, row_pairs in enumerate(pairs):
        for layer in range(n_layers):
            for head in range(n_heads):
                cols = slice(head * hd, (head + 1) * hd)
                for q, k in row_pairs:
                    diff = twin[layer][i, k, cols] - clean_inputs[layer][i, q, cols].detach()
                    approx[i, layer, head] += (diff * grads[layer][i, q, cols]).sum()
    return logits, out.detach(), approx


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl"])
def test_engines_equal_plain_torch_hooks(tiny, family, one_thread):
    bundle = tiny(family, "eager")
    rows, batch, twins = prepared(bundle)
    logits, clean, approx = hook_reference(bundle, rows, batch, twins)
    out = run_engines(bundle, rows, batch, twins, approximation=True)
    for mode in ("naive", "fast"):
        torch.testing.assert_close(out[mode].logits, logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(out[mode].clean, clean, atol=1e-5, rtol=0)
        torch.testing.assert_close(out[mode].approx, approx, atol=1e-5, rtol=0)
    assert approx.abs().amax() > 1e-3 and (logits - clean[:, None, None]).abs().amax() > 1e-3


def test_patches_that_change_no_value_change_nothing(tiny, one_thread):
    """Invariants: prompts patched from themselves, and the context (before the instruction, so the same
    tokens in the twin; positions from the mask, so padding moves nothing) patched from the twin, keep
    every margin."""
    bundle = tiny("llava", "sdpa")
    rows, batch, twins = prepared(bundle, position="after_context")
    for twin, role in ((batch, "instruction"), (twins, "context")):
        for run in run_engines(bundle, rows, batch, twin, role=role).values():
            torch.testing.assert_close(run.logits, run.clean[:, None, None].expand_as(run.logits), atol=1e-5, rtol=0)
