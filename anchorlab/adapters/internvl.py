"""InternVL family (transformers' native InternVLForConditionalGeneration, the `-hf` checkpoints).

The chat template emits one `<IMG_CONTEXT>`; the processor tiles the image (crop_to_patches, plus a
thumbnail) and replaces it with `<img>` + image_seq_length * tiles `<IMG_CONTEXT>` + `</img>`.
`<IMG_CONTEXT>` positions are the vision role; `<img>` and `</img>` stay text.
"""
from __future__ import annotations

import transformers

from .base import Adapter
from .llava import render

IMG_CONTEXT, IMG_START, IMG_END = "<IMG_CONTEXT>", "<img>", "</img>"


def tokenize(bundle, rendered: str, image):
    if bundle.processor is not None:
        out = bundle.processor(text=rendered, images=image, return_tensors="pt")
        return out["input_ids"][0], ({"pixel_values": out["pixel_values"]} if image is not None else {})
    # Without torchvision the processor (its video processor) cannot be built: do what
    # InternVLProcessor.replace_image_token does, with the processor's call-time image defaults.
    text, extras = rendered, {}
    if image is not None:
        ip = bundle.image_processor
        if ip is None:
            raise ValueError(f"{bundle.model_id}: InternVL needs its image processor (none could be loaded)")
        px = ip(images=image, return_tensors="pt", **transformers.InternVLProcessor.images_kwargs)
        if rendered.count(IMG_CONTEXT) != 1:
            raise ValueError(f"{bundle.model_id}: expected one {IMG_CONTEXT} in the rendered prompt")
        n = int(bundle.model.config.image_seq_length) * int(px["num_patches"][0])
        text = rendered.replace(IMG_CONTEXT, IMG_START + IMG_CONTEXT * n + IMG_END)
        extras = {"pixel_values": px["pixel_values"]}
    return bundle.tokenizer(text, return_tensors="pt", add_special_tokens=True)["input_ids"][0], extras


INTERNVL = Adapter(
    family="internvl",
    model_types=("internvl",),
    model_class="InternVLForConditionalGeneration",
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    unembed="lm_head",
    render=render,
    tokenize=tokenize,
    image_token=IMG_CONTEXT,
    expansion_tokens=(IMG_START, IMG_END),
)
