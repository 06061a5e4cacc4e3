"""Helpers for the tiny-model tests: the families, samples, images, real processors (fixtures are in
conftest.py)."""
from __future__ import annotations

from unittest import mock

import numpy as np
import torch
from PIL import Image
from transformers import InternVLProcessor, ProcessorMixin, Qwen2_5_VLProcessor

from anchorlab.data.sample import ConflictSample

FAMILIES = ("llava", "qwen2_5_vl", "internvl", "qwen2", "llama")
# knockout pathways tried on every family (text-only LMs have no vision role)
MULTIMODAL_PATHWAYS = ["vision->last", "text->last", "vision->text", "context->instruction",
                       "vision->instruction", "context->last", "instruction->last", "vision->context"]
TEXT_PATHWAYS = ["query->last", "context->instruction", "context->last", "instruction->last", "context->query"]
# instruction positions and the segment order each one gives
POSITIONS = ("before_context", "after_context", "after_question")
ORDER = {
    "before_context": ("instruction", "context", "query"),
    "after_context": ("context", "instruction", "query"),
    "after_question": ("context", "query", "instruction"),
}


def squash(text: str) -> str:
    return "".join(text.split())

MULTIMODAL = ("llava", "qwen2_5_vl", "internvl")


def image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def sample(long: bool = True, position=None, size=(40, 30)) -> ConflictSample:
    """Two shapes of sample: prompts of clearly different lengths, images of different sizes."""
    if long:
        return ConflictSample(
            id="sheep", question="What are the sheep doing?",
            context="Several sheep are playfully bounding around in a field beside a road, their movements "
            "light and carefree. One sheep cautiously steps onto the pavement.",
            answer_vision="eating", answer_text="playing", image=image(*size, seed=1), instruction_position=position,
        )
    return ConflictSample(
        id="dogs", question="How many dogs are there?", context="Two dogs sleep.", answer_vision="three",
        answer_text="two", image=image(*size, seed=2), instruction_position=position,
    )


def image_token_id(bundle) -> int:
    config = bundle.model.config
    return int(getattr(config, "image_token_id", None) or config.image_token_index)


def image_feature_rows(bundle, extras: dict) -> int:
    """How many embeddings the vision tower hands the LM: what the vision role must index."""
    kwargs = {k: extras[k] for k in ("pixel_values", "image_grid_thw") if k in extras}
    with torch.no_grad():
        features = bundle.model.get_image_features(**kwargs).pooler_output
    parts = features if isinstance(features, (list, tuple)) else [features]
    return sum(p.reshape(-1, p.shape[-1]).shape[0] for p in parts)


def real_processor(bundle):
    """The family's real processor, built with no video processor (which needs torchvision).

    ProcessorMixin insists on a video processor class it cannot import here; skipping only that
    check lets the tests compare the adapters' fallback with the real expansion code.
    """
    original = ProcessorMixin.check_argument_for_proper_class

    def check(self, name, arg):
        return None if name == "video_processor" and arg is None else original(self, name, arg)

    kwargs = {"image_processor": bundle.image_processor, "tokenizer": bundle.tokenizer, "video_processor": None,
              "chat_template": bundle.tokenizer.chat_template}
    with mock.patch.object(ProcessorMixin, "check_argument_for_proper_class", check):
        if bundle.adapter.family == "qwen2_5_vl":
            return Qwen2_5_VLProcessor(**kwargs)
        return InternVLProcessor(image_seq_length=bundle.model.config.image_seq_length, **kwargs)
