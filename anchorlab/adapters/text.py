"""Text-only decoder LMs (Llama, Mistral, Qwen2, Qwen3): the baseline with no vision role.

All share `model.layers` / `model.norm` / `lm_head` and pre-norm layers whose attention output
is `self_attn.o_proj`, which the sublayer and head attributions rely on (so Gemma2-style
post-norm models are deliberately not listed).
"""
from __future__ import annotations

from .base import Adapter


def _adds_bos(tok) -> bool:
    return tok.bos_token_id is not None and tok("a", add_special_tokens=True)["input_ids"][:1] == [tok.bos_token_id]


def render(bundle, prompt) -> str:
    tok = bundle.tokenizer
    if tok.chat_template is None:  # base checkpoints have no template: the content is the prompt
        return prompt.content
    messages = [{"role": "user", "content": prompt.content}]
    rendered = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # Llama-3's template writes bos itself and its tokenizer adds another: keep only the tokenizer's.
    if tok.bos_token and rendered.startswith(tok.bos_token) and _adds_bos(tok):
        rendered = rendered[len(tok.bos_token):]
    return rendered


def tokenize(bundle, rendered: str, image):
    return bundle.tokenizer(rendered, return_tensors="pt", add_special_tokens=True)["input_ids"][0], {}


TEXT = Adapter(
    family="text",
    model_types=("llama", "mistral", "qwen2", "qwen3"),
    model_class="AutoModelForCausalLM",
    layers="model.layers",
    final_norm="model.norm",
    unembed="lm_head",
    render=render,
    tokenize=tokenize,
    text_config=None,
    is_multimodal=False,
)
