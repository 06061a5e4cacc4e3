"""Build the toy LLaVA from explicit settings: tokenizer, image processor, processor, config.

Nothing is downloaded: the vocabulary comes from the toy data's word lists, the image processor
is the PIL (torchvision-free) CLIP processor with toy sizes, and the model is a LLaVA-1.5 layout
(tiny CLIP vision tower, 2-layer GELU projector, tiny Llama LM) so the `llava` adapter covers it.
"""
from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from ..data.toy import IMAGE_SIZE, vocabulary_words

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>", "<image>")
PATCH_SIZE = 8
N_IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # CLS dropped ("default" feature selection)

# LLaVA-1.5's conversation format ("USER: <image>\n... ASSISTANT:"); content may be a string or
# a list of {"type": "image"} / {"type": "text"} items, as the llava adapter sends it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

LM = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=8)
VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)


def build_tokenizer(words: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Word-level, lowercasing (offsets still index the original text), punctuation split off.
    `words`: the vocabulary after the specials (default: the toy data's, `vocabulary_words()`)."""
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *(vocabulary_words() if words is None else words)])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tk.add_special_tokens(list(SPECIALS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
        model_max_length=512,
    )


def build_image_processor() -> CLIPImageProcessorPil:
    side = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    return CLIPImageProcessorPil(
        size=side, crop_size=side, do_resize=True, do_center_crop=True, do_rescale=True, do_normalize=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True,
    )


def build_processor(tokenizer=None) -> LlavaProcessor:
    return LlavaProcessor(
        image_processor=build_image_processor(),
        tokenizer=tokenizer or build_tokenizer(),
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
        image_token="<image>",
    )


def build_config(tokenizer, lm: dict = LM) -> LlavaConfig:
    vocab = len(tokenizer)
    # Tied embeddings and a wider init (0.05, not 0.02) make the tiny LM leave its loss plateaus
    # several hundred steps sooner; with the defaults some seeds were not converged at 1600 steps.
    text = LlamaConfig(
        vocab_size=vocab, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True,
        initializer_range=0.05, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **lm,
    )
    vision = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, num_channels=3, projection_dim=64, **VISION)
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=N_IMAGE_TOKENS, vision_feature_select_strategy="default", vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    config.pad_token_id = tokenizer.pad_token_id
    return config


def build_model(tokenizer, seed: int, lm: dict = LM) -> LlavaForConditionalGeneration:
    """Randomly initialised from `seed` (the weights train.py starts from); `lm`: the LM's sizes."""
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(build_config(tokenizer, lm)).float()
