"""Qwen2.5-VL family: ChatML whose image turn is `<|vision_start|><|image_pad|><|vision_end|>`.

`<|image_pad|>` expands to one token per merged patch: prod(image_grid_thw) / merge_size**2.
The 3-D (t, h, w) rope positions are computed inside the model from `mm_token_type_ids`
(1 at image tokens, 0 elsewhere) and the attention mask, so left padding needs no position ids;
without `mm_token_type_ids` transformers 5.23 silently falls back to 1-D positions.
"""
from __future__ import annotations

import torch

from .base import Adapter
from .llava import render

IMAGE_PAD = "<|image_pad|>"


def tokenize(bundle, rendered: str, image):
    tok = bundle.tokenizer
    if bundle.processor is not None:  # a full install (torchvision present) builds the real processor
        out = bundle.processor(text=rendered, images=image, return_tensors="pt")
        ids = out["input_ids"][0]
        extras = {k: out[k] for k in ("pixel_values", "image_grid_thw") if k in out}
    else:  # what Qwen2_5_VLProcessor.replace_image_token does, with its image processor alone
        text, extras = rendered, {}
        if image is not None:
            ip = bundle.image_processor
            if ip is None:
                raise ValueError(f"{bundle.model_id}: Qwen2.5-VL needs its image processor (none could be loaded)")
            px = ip(images=image, return_tensors="pt")
            extras = {"pixel_values": px["pixel_values"], "image_grid_thw": px["image_grid_thw"]}
            if rendered.count(IMAGE_PAD) != 1:
                raise ValueError(f"{bundle.model_id}: expected one {IMAGE_PAD} in the rendered prompt")
            text = rendered.replace(IMAGE_PAD, IMAGE_PAD * (int(px["image_grid_thw"][0].prod()) // ip.merge_size**2))
        ids = tok(text, return_tensors="pt", add_special_tokens=True)["input_ids"][0]
    extras["mm_token_type_ids"] = (ids == tok.convert_tokens_to_ids(IMAGE_PAD)).to(torch.long)
    return ids, extras


QWEN2_5_VL = Adapter(
    family="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    model_class="Qwen2_5_VLForConditionalGeneration",
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    unembed="lm_head",
    render=render,
    tokenize=tokenize,
    image_token=IMAGE_PAD,
    per_position_extras=("mm_token_type_ids",),
    explicit_position_ids=False,
)
