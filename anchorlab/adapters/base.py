"""What anchorlab needs to know about an architecture family, kept as data plus two small hooks.

Everything architecture-specific (module paths, image-token handling, chat templates) lives in
the family modules beside this one; the rest of anchorlab reads it through `Adapter`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from ..models.loading import ModelBundle
    from ..rows.prompts import Prompt


@dataclass(frozen=True)
class Encoded:
    """One prompt, unpadded: 1-D ids, the model's other inputs for it, and its token roles."""

    input_ids: torch.Tensor  # [S] long
    extras: dict[str, torch.Tensor]  # e.g. pixel_values, image_grid_thw, mm_token_type_ids ([S])
    roles: dict[str, torch.Tensor]  # role -> sorted positions in [0, S)
    rendered: str  # the prompt after the chat template, before image expansion


# render(bundle, prompt) -> rendered text (chat template applied, one image placeholder)
Render = Callable[["ModelBundle", "Prompt"], str]
# tokenize(bundle, rendered, image) -> (expanded input_ids [S], extras)
Tokenize = Callable[["ModelBundle", str, "Image.Image | None"], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class Adapter:
    family: str
    model_types: tuple[str, ...]  # config.model_type values this family covers
    model_class: str  # transformers class that loads a checkpoint of this family
    layers: str  # dotted path, from the top model, to the ModuleList of decoder layers
    final_norm: str
    unembed: str
    render: Render
    tokenize: Tokenize
    attention: str = "self_attn"  # relative to a decoder layer
    embed: str = "embed_tokens"  # token embedding, relative to the decoder (the parent of `layers`)
    norm_kind: str = "rms"  # the final norm's kind, as method.lens.FinalNorm applies it
    o_proj: str = "self_attn.o_proj"  # relative to a decoder layer
    text_config: str | None = "text_config"  # config attribute holding the LM's config (None: top level)
    image_token: str | None = None  # token string filling the vision positions after expansion
    expansion_tokens: tuple[str, ...] = ()  # other tokens the processor adds around an image
    per_position_extras: tuple[str, ...] = ()  # extras indexed by position, left-padded like input_ids
    explicit_position_ids: bool = True  # pass mask-derived position ids (exact under left padding)
    is_multimodal: bool = True
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def decoder(self) -> str:
        """Dotted path of the decoder stack (the module holding `layers`, the embedding, the norm)."""
        return self.layers.rsplit(".", 1)[0]

    def lm_config(self, config):
        return getattr(config, self.text_config) if self.text_config else config
