"""docs/method.md §3.2 through nnsight vs an independent plain-torch computation (forward hooks)."""
import numpy as np
import pytest
import torch

from anchorlab.analyses import Context
from anchorlab.analyses.signal import SignalAnalysis, SignalSpec
from anchorlab.backends import LocalBackend
from anchorlab.data.toy import generate_samples
from anchorlab.models.loading import load_model
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import compile_rows
from anchorlab.rows.prompts import PromptStyle


@pytest.fixture(scope="module")
def setup(random_toy_path):
    bundle = load_model(str(random_toy_path), attn_implementation="eager")
    rows = compile_rows(bundle, generate_samples(3, seed=5), ["vf", "tf"], PromptStyle())
    return bundle, LocalBackend(bundle), rows


def reference(bundle, batch):
    """Layer outputs by forward hooks and the model's own logits, no nnsight involved."""
    outs, hooks = [], []
    for layer in bundle.layers:
        hooks.append(layer.register_forward_hook(lambda m, i, o: outs.append(o[0] if isinstance(o, tuple) else o)))
    try:
        with torch.no_grad():
            logits = bundle.model(**batch.inputs).logits
    finally:
        for h in hooks:
            h.remove()
    return outs, logits


@pytest.mark.parametrize("k,pool", [(1, "max"), (2, "max"), (1, "mean")])
def test_signal_equals_hand_computed_lens(setup, k, pool):
    bundle, backend, rows = setup
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    analysis = SignalAnalysis(SignalSpec(kind="signal", k=k, pool=pool), Context(bundle, backend, seed=0))
    got = analysis.run_batch(batch, rows)
    outs, _ = reference(bundle, batch)
    norm, unembed = bundle.module("model.language_model.norm"), bundle.model.lm_head.weight
    for i, row in enumerate(rows):
        pos = batch.roles[i]["instruction"]
        for m, modality in enumerate(("vision", "text")):
            ids = list(row.entities.of(modality))
            for layer, h in enumerate(outs):
                with torch.no_grad():
                    logits = norm(h[i, pos]) @ unembed[ids].T  # [P, M]
                pooled = logits.max(-1).values if pool == "max" else logits.mean(-1)
                expected = pooled.topk(min(k, len(pos))).values.mean()
                assert got["signal"][i, m, layer] == pytest.approx(expected.item(), abs=1e-5)


def test_restricted_lens_at_last_layer_equals_model_logits(setup):
    bundle, backend, rows = setup
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    got = SignalAnalysis(SignalSpec(kind="signal"), Context(bundle, backend, seed=0)).run_batch(batch, rows)
    _, logits = reference(bundle, batch)
    final = bundle.n_layers - 1
    for i, row in enumerate(rows):
        last = logits[i, batch.roles[i]["last"][0]]
        for m, modality in enumerate(("vision", "text")):
            expected = last[list(row.entities.of(modality))].max().item()
            assert got["signal_last"][i, m, final] == pytest.approx(expected, abs=1e-5)
        margin = last[row.answer_ids[row.followed]] - last[row.answer_ids[row.competitor]]
        assert got["decision_margin"][i] == pytest.approx(margin.item(), abs=1e-5)


def test_batched_equals_one_at_a_time(setup):
    bundle, backend, rows = setup
    analysis = SignalAnalysis(SignalSpec(kind="signal", k=2), Context(bundle, backend, seed=0))
    together = analysis.run_batch(collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id), rows)
    for i, row in enumerate(rows):
        alone = analysis.run_batch(collate([row.encoded], bundle.adapter, bundle.pad_token_id), [row])
        np.testing.assert_allclose(together["signal"][i], alone["signal"][0], atol=1e-5)
        np.testing.assert_allclose(together["signal_last"][i], alone["signal_last"][0], atol=1e-5)


def test_unnormed_lens_differs_and_layers_subset(setup):
    bundle, backend, rows = setup
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    ctx = Context(bundle, backend, seed=0)
    normed = SignalAnalysis(SignalSpec(kind="signal"), ctx).run_batch(batch, rows)["signal"]
    raw = SignalAnalysis(SignalSpec(kind="signal", final_norm=False), ctx).run_batch(batch, rows)["signal"]
    assert not np.allclose(normed, raw)
    sub = SignalAnalysis(SignalSpec(kind="signal", layers=[2, 0]), ctx).run_batch(batch, rows)["signal"]
    np.testing.assert_allclose(sub, normed[..., [0, 2]], atol=1e-6)
    with pytest.raises(ValueError, match="out of range for a model with 4 layers"):
        SignalAnalysis(SignalSpec(kind="signal", layers=[4]), ctx).run_batch(batch, rows)
