"""Offline tokenizers for the tiny test models: a byte-level BPE trained on a small corpus.

Hub tokenizers cannot be downloaded here, and a character-level stand-in would hide the subword
and offset behaviour that token roles depend on. So each family gets a deterministic BPE over
English text, the MC² instructions and (when the data is present) MC² questions and contexts,
wrapped with the family's real special tokens and a chat template that mimics its hub model.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ..data.prompt_text import CONTEXT_PREFIX, MC2_INSTRUCTIONS

MC2_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "mc2" / "evaluate_final.json"
MC2_SAMPLES = 400  # enough text for realistic merges; training stays well under a second

# Qwen2's pre-tokenizer split (tokenizer.json of Qwen2/Qwen2.5 and InternVL3); GPT-2's default otherwise.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

ENGLISH = """\
What is in the picture? How many people are in the image? What color is the car? Where is the dog sitting?
What are the sheep doing? What is the man holding? Is there a cat on the table? Which animal is shown?
The picture shows two people walking along a busy street next to a red bus and a yellow taxi.
A small brown dog is sleeping on a green sofa while a child plays with a ball in the living room.
Three horses are eating grass in a field under a blue sky; one of them is white and the others are black.
The woman is reading a book at the kitchen table, and a cup of coffee stands beside her laptop.
Answer the question using a single word or phrase. Answer based on the image, not the text.
Answer based on the text, not the image. The answer is yes. The answer is no. one two three four five six
seven eight nine ten eleven twelve many several few none zero red orange yellow green blue purple pink
brown black white gray silver gold man woman boy girl child people person player team cat dog horse cow
sheep bird elephant zebra giraffe bear car bus truck train plane boat bicycle motorcycle table chair sofa
bed kitchen room street road field beach water snow tree grass sky sun rain playing eating drinking running
walking sitting standing sleeping riding flying swimming holding looking wearing cooking reading writing
猫 狗 红色 三个 人 chat chien rouge Hund rot 1 2 3 4 5 10 100 2024
"""
# Chat-template words, repeated so that BPE merges them as real tokenizers do.
CHAT = "USER: ASSISTANT: system user assistant You are a helpful assistant. Text context: Question: Answer:\n"


def corpus() -> list[str]:
    """Training text, in a fixed order so the merges (and so the ids) are reproducible."""
    # the built-in text twice: each of its words reaches min_frequency and becomes whole tokens, so the tests'
    # answers ("two" vs "three") stay distinct whether or not the MC² file is beside the checkout
    lines = ENGLISH.splitlines() * 2 + [CHAT] * 16 + list(MC2_INSTRUCTIONS.values()) + [CONTEXT_PREFIX.strip()]
    try:
        samples = json.loads(MC2_DATA.read_text())[:MC2_SAMPLES]
        for s in samples:
            lines += [str(s.get(k, "")) for k in ("question", "context", "answer_vision", "answer_text")]
    except (OSError, ValueError, TypeError, AttributeError):
        pass  # the built-in text alone still gives a working, if smaller, vocabulary
    return [line for line in lines if line]


def corpus_digest() -> str:
    return hashlib.sha256("\n".join(corpus()).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TokenizerSpec:
    head_specials: tuple[str, ...]  # ids 0.. before the BPE vocab (Llama's <unk> <s> </s>)
    tail_specials: tuple[str, ...]  # appended after it (Qwen's <|endoftext|>, <|im_start|>, ...)
    bos: str | None
    eos: str
    pad: str | None
    chat_template: str
    add_bos: bool = False  # the post-processor prepends bos (Llama tokenizers do, Qwen's do not)
    qwen_split: bool = False
    unk: str | None = None
    named_extras: tuple[tuple[str, str], ...] = ()  # extra_special_tokens by name (InternVL's)
    hub_class: str | None = None  # tokenizer_class the hub checkpoint names, when it loads this file as is


LLAVA_TEMPLATE = (  # llava-hf/llava-1.5-7b-hf
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
QWEN_VL_TEMPLATE = (  # Qwen/Qwen2.5-VL-*-Instruct
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
INTERNVL_TEMPLATE = (  # OpenGVLab/InternVL3-*-hf (transformers' convert_internvl_weights_to_hf.py)
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<IMG_CONTEXT>\n' }}{% elif content['type'] == 'video' %}{{ '<video>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)
QWEN2_TEMPLATE = (  # Qwen/Qwen2.5-*-Instruct, without the tool-calling branches
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (  # meta-llama/Llama-3.*-Instruct, without the tool/date preamble; it emits bos itself
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

QWEN_BASE = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_VL_EXTRA = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
INTERNVL_EXTRA = ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>",
                  "<video>")
LLAMA3 = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
QWEN = {"bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "qwen_split": True, "hub_class": "Qwen2Tokenizer"}
SPECS: dict[str, TokenizerSpec] = {
    "llava": TokenizerSpec(("<unk>", "<s>", "</s>"), ("<image>", "<pad>"), "<s>", "</s>", "<pad>", LLAVA_TEMPLATE,
                           add_bos=True, unk="<unk>"),
    "qwen2_5_vl": TokenizerSpec((), QWEN_BASE + QWEN_VL_EXTRA, chat_template=QWEN_VL_TEMPLATE, **QWEN),
    "internvl": TokenizerSpec(
        (), QWEN_BASE + INTERNVL_EXTRA, chat_template=INTERNVL_TEMPLATE, **QWEN,
        named_extras=(("start_image_token", "<img>"), ("end_image_token", "</img>"),
                      ("context_image_token", "<IMG_CONTEXT>"), ("video_token", "<video>")),
    ),
    "qwen2": TokenizerSpec((), QWEN_BASE, chat_template=QWEN2_TEMPLATE, **QWEN),
    "llama": TokenizerSpec((), LLAMA3, LLAMA3[0], "<|eot_id|>", None, LLAMA3_TEMPLATE, add_bos=True),
}


def build_tokenizer(family: str, bpe_vocab: int = 3072) -> PreTrainedTokenizerFast:
    spec = SPECS[family]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not spec.qwen_split)
    pre = (
        pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"), byte_level])
        if spec.qwen_split
        else byte_level
    )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre, decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab,
        min_frequency=2,
        special_tokens=[AddedToken(t, special=True) for t in spec.head_specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in spec.tail_specials])
    post = [processors.ByteLevel(trim_offsets=False)]
    if spec.add_bos:
        bos = [(spec.bos, tok.token_to_id(spec.bos))]
        post.append(processors.TemplateProcessing(single=f"{spec.bos} $A", pair=f"{spec.bos} $A {spec.bos} $B",
                                                  special_tokens=bos))
    tok.post_processor = processors.Sequence(post)
    extras = {name: token for name, token in spec.named_extras}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=spec.bos,
        eos_token=spec.eos,
        pad_token=spec.pad,
        unk_token=spec.unk,
        chat_template=spec.chat_template,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
        **({"extra_special_tokens": extras} if extras else {}),
    )
