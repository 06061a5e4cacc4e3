"""LLaVA-1.5 family (LlavaForConditionalGeneration): `<image>` expands to one token per patch."""
from __future__ import annotations

from ..errors import UserError
from .base import Adapter


def user_messages(prompt, with_image: bool = True) -> list[dict]:
    content = ([{"type": "image"}] if with_image and prompt.image is not None else []) + [
        {"type": "text", "text": prompt.content}
    ]
    return [{"role": "user", "content": content}]


def render(bundle, prompt) -> str:
    templater = bundle.processor or bundle.tokenizer
    return templater.apply_chat_template(user_messages(prompt), add_generation_prompt=True, tokenize=False)


def tokenize(bundle, rendered: str, image):
    if bundle.processor is None:
        raise UserError(f"{bundle.model_id}: LLaVA needs its processor (AutoProcessor could not be built)")
    out = bundle.processor(text=rendered, images=image, return_tensors="pt")
    extras = {"pixel_values": out["pixel_values"]} if image is not None else {}
    return out["input_ids"][0], extras


LLAVA = Adapter(
    family="llava",
    model_types=("llava",),
    model_class="LlavaForConditionalGeneration",
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    unembed="lm_head",
    render=render,
    tokenize=tokenize,
    image_token="<image>",
)
