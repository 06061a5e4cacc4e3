"""Token roles (docs/method.md §1) on tiny checkpoints of every supported family, loaded like hub models."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
import transformers
from tiny_support import (
    FAMILIES,
    MULTIMODAL,
    ORDER,
    POSITIONS,
    image_feature_rows,
    image_token_id,
    real_processor,
    sample,
    squash,
)

from anchorlab.adapters import UnknownFamilyError, adapter_for, known_families
from anchorlab.models.loading import load_model
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt
from anchorlab.rows.roles import TEXT_ROLES

pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("family", FAMILIES)
def test_roles_decode_to_their_segments(tiny, family, position):
    bundle = tiny(family)
    prompt = build_prompt(sample(position=position), "tf")
    enc = encode(bundle, prompt)
    ids, roles, n = enc.input_ids, enc.roles, len(enc.input_ids)
    for role in TEXT_ROLES:
        assert squash(bundle.tokenizer.decode(ids[roles[role]])) == squash(prompt.segment(role)), role
    assert roles["last"].tolist() == [n - 1]
    firsts = [int(roles[role][0]) for role in ORDER[position]]
    lasts = [int(roles[role][-1]) for role in ORDER[position]]
    assert all(lasts[i] < firsts[i + 1] for i in range(2)), (position, firsts, lasts)
    # vision and text partition the prompt; context/instruction/query are disjoint parts of text
    vision, text = set(roles["vision"].tolist()), set(roles["text"].tolist())
    assert not vision & text and vision | text == set(range(n))
    parts = [set(roles[role].tolist()) for role in TEXT_ROLES]
    assert sum(map(len, parts)) == len(set().union(*parts)) and set().union(*parts) <= text


@pytest.mark.parametrize("size", [(40, 30), (100, 40)])
@pytest.mark.parametrize("family", MULTIMODAL)
def test_vision_role_is_what_the_model_consumes(tiny, family, size):
    bundle = tiny(family)
    enc = encode(bundle, build_prompt(sample(size=size), "vf"))
    vision = enc.roles["vision"]
    assert torch.equal(vision, (enc.input_ids == image_token_id(bundle)).nonzero().flatten())
    assert len(vision) == image_feature_rows(bundle, enc.extras) > 0
    assert torch.equal(vision, torch.arange(int(vision[0]), int(vision[-1]) + 1))  # one contiguous block
    if family == "internvl":  # tiled: image_seq_length tokens per tile, between <img> and </img>
        tiles = enc.extras["pixel_values"].shape[0]
        assert len(vision) == tiles * bundle.model.config.image_seq_length
        tok = bundle.tokenizer
        assert tok.convert_ids_to_tokens([int(enc.input_ids[vision[0] - 1]), int(enc.input_ids[vision[-1] + 1])]) == [
            "<img>", "</img>"
        ]
    if family == "qwen2_5_vl":
        merge = bundle.image_processor.merge_size
        assert len(vision) == int(enc.extras["image_grid_thw"].prod()) // merge**2
        assert torch.equal(enc.extras["mm_token_type_ids"].nonzero().flatten(), vision)


def test_internvl_tiles_wide_images(tiny):
    enc = encode(tiny("internvl"), build_prompt(sample(size=(100, 40)), "vf"))
    assert enc.extras["pixel_values"].shape[0] > 1  # crop_to_patches: several tiles plus a thumbnail


@pytest.mark.parametrize("family", ["qwen2_5_vl", "internvl"])
def test_fallback_matches_the_real_processor(tiny, family):
    """Without torchvision the adapters expand image tokens themselves; the real processor must agree."""
    bundle = tiny(family)  # without torchvision AutoProcessor fails and the loader leaves processor None
    processor = bundle.processor or real_processor(bundle)
    bundle = dataclasses.replace(bundle, processor=None)
    for size in ((40, 30), (100, 40)):
        prompt = build_prompt(sample(size=size), "vf")
        fallback = encode(bundle, prompt)
        rendered = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt.content}]}],
            add_generation_prompt=True, tokenize=False,
        )
        assert rendered == fallback.rendered
        out = processor(text=rendered, images=prompt.image, return_tensors="pt")
        assert torch.equal(out["input_ids"][0], fallback.input_ids)
        assert torch.equal(out["pixel_values"], fallback.extras["pixel_values"])
        if family == "qwen2_5_vl":
            assert torch.equal(out["image_grid_thw"], fallback.extras["image_grid_thw"])
            assert torch.equal(out["mm_token_type_ids"][0], fallback.extras["mm_token_type_ids"])
        # and the adapter's processor path (taken where torchvision exists) gives the same encoding
        with_processor = encode(dataclasses.replace(bundle, processor=processor), prompt)
        assert torch.equal(with_processor.input_ids, fallback.input_ids)
        assert all(torch.equal(with_processor.roles[r], fallback.roles[r]) for r in fallback.roles)
        assert all(torch.equal(with_processor.extras[k], v) for k, v in fallback.extras.items())


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_module_paths_resolve(tiny, family):
    bundle = tiny(family)
    a = bundle.adapter
    assert bundle.n_layers == bundle.lm_config.num_hidden_layers
    assert isinstance(bundle.module(a.final_norm), torch.nn.Module)
    unembed = bundle.module(a.unembed)
    assert unembed.weight.shape == (bundle.lm_config.vocab_size, bundle.lm_config.hidden_size)
    o_proj = bundle.layers[0].get_submodule(a.o_proj)
    assert o_proj.in_features == bundle.n_heads * bundle.head_dim
    bundle.layers[0].get_submodule(a.attention)


def test_text_family_has_no_vision_and_one_bos(tiny):
    for family in ("qwen2", "llama"):
        bundle = tiny(family)
        enc = encode(bundle, build_prompt(sample(), "vf"))
        assert enc.roles["vision"].numel() == 0 and not enc.extras
        bos = bundle.tokenizer.bos_token_id
        assert bos is None or int((enc.input_ids == bos).sum()) <= 1  # Llama-3's template and tokenizer both add one


def test_unknown_model_type_lists_known_families(tmp_path):
    with pytest.raises(UnknownFamilyError) as info:
        adapter_for(SimpleNamespace(model_type="mamba"))
    message = str(info.value)
    assert "'mamba'" in message
    for family, types in known_families().items():
        assert family in message and all(t in message for t in types)
    assert set(known_families()) == {"llava", "qwen2_5_vl", "internvl", "text"}
    transformers.GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=16).save_pretrained(tmp_path)
    with pytest.raises(UnknownFamilyError, match="gpt2"):
        load_model(str(tmp_path))
