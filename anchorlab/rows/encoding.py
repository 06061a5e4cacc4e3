"""Prompt -> model inputs + token roles, through the family's adapter."""
from __future__ import annotations

from ..adapters.base import Encoded
from ..models.loading import ModelBundle
from .prompts import Prompt
from .roles import token_roles


def encode(bundle: ModelBundle, prompt: Prompt) -> Encoded:
    adapter, tok = bundle.adapter, bundle.tokenizer
    rendered = adapter.render(bundle, prompt)
    image = prompt.image if adapter.is_multimodal else None
    ids, extras = adapter.tokenize(bundle, rendered, image)
    image_id = tok.convert_tokens_to_ids(adapter.image_token) if adapter.image_token and image is not None else None
    expansion = {tok.convert_tokens_to_ids(t) for t in adapter.expansion_tokens} if image is not None else set()
    roles = token_roles(prompt, rendered, ids, tok, image_id, expansion, add_special_tokens=True)
    return Encoded(ids, extras, roles, rendered)
