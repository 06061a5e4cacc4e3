"""Left-padded batches give every row what it gets alone, for every family and attention kind."""
from __future__ import annotations

import pytest
import torch
from tiny_support import FAMILIES, sample

from anchorlab.rows.batching import collate
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-5


def run(bundle, inputs):
    with torch.no_grad():
        return bundle.model(**inputs, output_hidden_states=True)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_padded_rows_match_single_prompts(tiny, family, attn):
    bundle = tiny(family, attn)
    encoded = [
        encode(bundle, build_prompt(sample(long=True, size=(40, 30)), "vf")),
        encode(bundle, build_prompt(sample(long=False, size=(100, 40), position="after_question"), "tf")),
    ]
    batch = collate(encoded, bundle.adapter, bundle.pad_token_id)
    assert min(batch.pad.tolist()) == 0 and max(batch.pad.tolist()) > 0  # lengths differ: one row is padded
    out = run(bundle, batch.inputs)
    assert torch.isfinite(out.logits).all()
    for row, enc in enumerate(encoded):
        alone = run(bundle, collate([enc], bundle.adapter, bundle.pad_token_id).inputs)
        roles = batch.roles[row]
        assert roles.keys() == enc.roles.keys()
        for role, positions in roles.items():  # padded roles point at the same tokens
            assert torch.equal(batch.inputs["input_ids"][row, positions], enc.input_ids[enc.roles[role]]), role
        torch.testing.assert_close(out.logits[row, -1], alone.logits[0, -1], atol=ATOL, rtol=0)
        assert int(roles["last"]) == batch.inputs["input_ids"].shape[1] - 1
        for layer, (h, h_alone) in enumerate(zip(out.hidden_states, alone.hidden_states)):
            for role in ("vision", "context", "instruction", "query", "text", "last"):
                torch.testing.assert_close(
                    h[row, roles[role]], h_alone[0, enc.roles[role]], atol=ATOL, rtol=0, msg=f"{role}@{layer}"
                )


@pytest.mark.parametrize("family", FAMILIES)
def test_the_comparison_can_fail(tiny, family):
    """Attending to the padding must change the padded row by far more than ATOL."""
    bundle = tiny(family, "sdpa")
    encoded = [encode(bundle, build_prompt(sample(long=long), "vf")) for long in (True, False)]
    batch = collate(encoded, bundle.adapter, bundle.pad_token_id)
    row = int(batch.pad.argmax())
    assert batch.pad[row] > 0
    good = run(bundle, batch.inputs).logits[row, -1]
    unmasked = dict(batch.inputs, attention_mask=torch.ones_like(batch.inputs["attention_mask"]))
    assert (run(bundle, unmasked).logits[row, -1] - good).abs().max() > 1e3 * ATOL


def test_qwen2_5_vl_needs_mm_token_type_ids(tiny):
    """Without them transformers silently uses 1-D positions; the adapter must always pass them."""
    bundle = tiny("qwen2_5_vl")
    enc = encode(bundle, build_prompt(sample(), "vf"))
    inputs = collate([enc], bundle.adapter, bundle.pad_token_id).inputs
    assert "mm_token_type_ids" in inputs and "position_ids" not in inputs
    without = {k: v for k, v in inputs.items() if k != "mm_token_type_ids"}
    assert (run(bundle, inputs).logits[0, -1] - run(bundle, without).logits[0, -1]).abs().max() > 1e3 * ATOL


@pytest.mark.parametrize("family", ["llava", "internvl", "qwen2", "llama"])
def test_explicit_position_ids_are_mask_derived(tiny, family):
    bundle = tiny(family)
    encoded = [encode(bundle, build_prompt(sample(long=long), "vf")) for long in (True, False)]
    batch = collate(encoded, bundle.adapter, bundle.pad_token_id)
    for row, enc in enumerate(encoded):
        pad = int(batch.pad[row])
        assert batch.inputs["position_ids"][row, pad:].tolist() == list(range(len(enc.input_ids)))
