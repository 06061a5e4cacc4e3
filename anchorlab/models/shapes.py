"""The paper's models at their real shapes, with random weights (issue 13).

`build_shape(name, out, layers=None, vision_layers=None)` writes a folder that `load_model(path)`
reads exactly as a hub checkpoint (config, safetensors, tokenizer, image processor, chat template),
from the published configs: text and vision widths, heads, grouped-query KV heads, MLP sizes,
vocabulary size, rope / M-RoPE settings and the image-processor settings that fix the number of
vision tokens. Weights are random (nothing here is downloaded); the tokenizer is a byte-level BPE
(tiny_tokenizer.py) padded with unreachable filler tokens so that it covers the whole vocabulary
and every special token sits at the hub model's id (`<|image_pad|>` = 151655, `<image>` = 32000, ...).
Full depth by default; tests and CPU benchmarks pass `layers=2` (full width, few layers).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers as T
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from ..errors import UserError
from .tiny import _set_tokenizer_class, build_once
from .tiny_tokenizer import SPECS, build_tokenizer, corpus_digest

QWEN_SPECIALS = (  # Qwen2 / Qwen2.5 tokenizer_config.json added tokens, ids 151643..151664
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
INTERNVL_SPECIALS = ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>")
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class Shape:
    name: str
    hub_id: str  # the checkpoint whose config.json this reproduces
    family: str  # tiny_tokenizer / tiny.py family: chat template and specials
    n_regular: int  # ids below this are ordinary tokens (BPE + filler); specials follow in order
    specials: tuple[str, ...]
    head_specials: tuple[str, ...] = ()  # ids 0.. (Llama's <unk> <s> </s>)
    text: dict = field(default_factory=dict)
    vision: dict = field(default_factory=dict)
    top: dict = field(default_factory=dict)
    image: dict = field(default_factory=dict)
    notes: str = ""


QWEN25_7B_TEXT = dict(  # Qwen/Qwen2.5-VL-7B-Instruct config.json (text part); Qwen2.5-7B-Instruct is the same LM
    vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, hidden_act="silu", max_position_embeddings=128000, rms_norm_eps=1e-6,
    use_sliding_window=False, sliding_window=32768, max_window_layers=28, attention_dropout=0.0,
    tie_word_embeddings=False, initializer_range=0.02, bos_token_id=151643, eos_token_id=151645,
)

SHAPES: dict[str, Shape] = {
    "qwen2.5-vl-7b": Shape(
        "qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", 151643, QWEN_SPECIALS,
        text=dict(QWEN25_7B_TEXT, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                                   "mrope_section": [16, 24, 24]}),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, hidden_act="silu",
                    patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                    out_hidden_size=3584, fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, in_channels=3),
        top=dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                 vision_end_token_id=151653, tie_word_embeddings=False),
        # dynamic resolution: one token per 28×28 pixels (14-px patches merged 2×2), 4..16384 tokens
        image=dict(patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=3136, max_pixels=12845056,
                   image_mean=CLIP_MEAN, image_std=CLIP_STD),
        notes="28 layers x 28 query heads (4 KV heads), width 3584, MLP 18944, vocab 152064, M-RoPE [16, 24, 24]",
    ),
    "qwen2.5-7b": Shape(  # the text LM inside Qwen2.5-VL-7B, as a text-only model (family `text`)
        "qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", "qwen2", 151643, QWEN_SPECIALS,
        text=dict(QWEN25_7B_TEXT, max_position_embeddings=32768, rope_theta=1000000.0),
        notes="Qwen2ForCausalLM: 28 layers x 28 heads (4 KV), width 3584, vocab 152064",
    ),
    "internvl3-8b": Shape(
        "internvl3-8b", "OpenGVLab/InternVL3-8B-hf", "internvl", 151643, QWEN_SPECIALS + INTERNVL_SPECIALS,
        text=dict(QWEN25_7B_TEXT, vocab_size=151674, max_position_embeddings=32768, rope_theta=1000000.0),
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    hidden_act="gelu", image_size=[448, 448], patch_size=[14, 14], norm_type="layer_norm",
                    layer_norm_eps=1e-6, use_qk_norm=False, layer_scale_init_value=0.1, use_mean_pooling=True),
        top=dict(image_token_id=151667, image_seq_length=256, downsample_ratio=0.5, projector_hidden_act="gelu",
                 vision_feature_layer=-1, vision_feature_select_strategy="default", tie_word_embeddings=False),
        # 256 tokens per 448-px tile (1024 patches, pixel-shuffled by 0.5), 1..12 tiles + a thumbnail
        image=dict(size={"height": 448, "width": 448}, crop_to_patches=True, min_patches=1, max_patches=12,
                   image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD),
        notes="InternViT-300M (24 x 1024) + Qwen2.5-7B LM (28 x 28 heads, 4 KV), 256 tokens per 448-px tile",
    ),
    "llava-1.5-7b": Shape(
        "llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", "llava", 32000, ("<image>", "<pad>"),
        head_specials=("<unk>", "<s>", "</s>"),
        text=dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, hidden_act="silu", max_position_embeddings=4096,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, initializer_range=0.02,
                  bos_token_id=1, eos_token_id=2, pad_token_id=32001),
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5),
        top=dict(image_token_index=32000, pad_token_id=32001, projector_hidden_act="gelu", vision_feature_layer=-2,
                 vision_feature_select_strategy="default", image_seq_length=576, tie_word_embeddings=False),
        # CLIP ViT-L/14 at 336 px: (336 / 14)² = 576 image tokens
        image=dict(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, image_mean=CLIP_MEAN,
                   image_std=CLIP_STD),
        notes="CLIP ViT-L/14-336 (24 x 1024) + Vicuna-7B (32 x 32 heads, width 4096), 576 image tokens",
    ),
}


def get_shape(name: str) -> Shape:
    if name not in SHAPES:
        raise UserError(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")
    return SHAPES[name]


# ------------------------------------------------------------------------------------ tokenizer


def shape_tokenizer(shape: Shape, bpe_vocab: int = 8192) -> PreTrainedTokenizerFast:
    """The family's offline BPE (tiny_tokenizer.py), padded with filler tokens to `n_regular`
    ordinary ids, then the hub model's special tokens at the hub's ids. Fillers have no merge that
    reaches them (text never encodes to one) but decode like any token."""
    spec = SPECS[shape.family]
    small = build_tokenizer(shape.family, bpe_vocab)
    data = json.loads(small.backend_tokenizer.to_str())
    tail = set(spec.tail_specials)
    data["added_tokens"] = [a for a in data["added_tokens"] if a["content"] not in tail]
    vocab = {t: i for t, i in data["model"]["vocab"].items() if t not in tail}
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise RuntimeError("tokenizer ids are not contiguous")
    if len(vocab) > shape.n_regular:
        raise RuntimeError(f"{shape.name}: BPE vocabulary {len(vocab)} exceeds {shape.n_regular}")
    for i in range(len(vocab), shape.n_regular):
        vocab[f"<|filler_{i}|>"] = i
    data["model"]["vocab"] = vocab
    for k, token in enumerate(shape.specials):
        data["added_tokens"].append({"id": shape.n_regular + k, "content": token, "single_word": False,
                                     "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    tok = Tokenizer.from_str(json.dumps(data))
    # named extras the vocabulary holds (InternVL3-8B-hf's 151674 ids end at </box>: no `<video>`)
    extras = {name: token for name, token in spec.named_extras if token in shape.specials}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=spec.bos, eos_token=spec.eos, pad_token=spec.pad, unk_token=spec.unk,
        chat_template=spec.chat_template, clean_up_tokenization_spaces=False, model_max_length=32768,
        **({"extra_special_tokens": extras} if extras else {}),
    )


# ---------------------------------------------------------------------------------------- models


def check_depth(shape: Shape, layers: int | None, vision_layers: int | None) -> None:
    """A shape is the published model or a shallower cut of it: never deeper (a 99-layer "qwen2.5-vl-7b"
    is no model anyone published)."""
    full = {"--layers": shape.text["num_hidden_layers"],
            "--vision-layers": shape.vision.get("depth", shape.vision.get("num_hidden_layers"))}
    for flag, value in (("--layers", layers), ("--vision-layers", vision_layers)):
        if value is None:
            continue
        if full[flag] is None:
            raise UserError(f"{flag} {value}: {shape.name} has no vision tower")
        if not 1 <= value <= full[flag]:
            raise UserError(f"{flag} {value}: {shape.name} ({shape.hub_id}) has {full[flag]} "
                            f"{'decoder' if flag == '--layers' else 'vision'} layers; give 1..{full[flag]}")


def _config(shape: Shape, layers: int | None, vision_layers: int | None):
    text = dict(shape.text)
    if layers is not None:
        text["num_hidden_layers"] = layers
        if "max_window_layers" in text:
            text["max_window_layers"] = layers
    vision = dict(shape.vision)
    if shape.family == "qwen2_5_vl":
        if vision_layers is not None:
            vision["depth"] = vision_layers
            # the full-attention blocks that exist at this depth (at least the last)
            keep = [i for i in vision["fullatt_block_indexes"] if i < vision_layers]
            vision["fullatt_block_indexes"] = keep or [vision_layers - 1]
        return T.Qwen2_5_VLConfig(text_config=T.Qwen2_5_VLTextConfig(**text),
                                  vision_config=T.Qwen2_5_VLVisionConfig(**vision), **shape.top)
    if vision_layers is not None:
        vision["num_hidden_layers"] = vision_layers
    if shape.family == "internvl":
        return T.InternVLConfig(text_config=T.Qwen2Config(**text), vision_config=T.InternVLVisionConfig(**vision),
                                **shape.top)
    if shape.family == "llava":
        if vision_layers is not None and vision_layers < 2:
            raise UserError("--vision-layers: llava-1.5-7b reads the second-to-last vision layer; give 2 or more")
        return T.LlavaConfig(text_config=T.LlamaConfig(**text), vision_config=T.CLIPVisionConfig(**vision),
                             **shape.top)
    return T.Qwen2Config(**text)


def shape_config(name: str, layers: int | None = None, vision_layers: int | None = None):
    """The model config alone (no weights): what `anchorlab estimate` builds on the meta device."""
    shape = get_shape(name)
    check_depth(shape, layers, vision_layers)
    return _config(shape, layers, vision_layers)


def published_facts(hub_id: str):
    """ModelFacts of a paper model from its published config (this table), for the checks `anchorlab
    validate` makes when the model is neither cached nor reachable; None for any other model."""
    from ..adapters import adapter_for
    from .loading import ModelFacts

    shape = next((s for s in SHAPES.values() if s.hub_id == hub_id), None)
    if shape is None:
        return None
    config = _config(shape, None, None)
    adapter = adapter_for(config)
    lm = adapter.lm_config(config)
    return ModelFacts(adapter, int(lm.num_hidden_layers), int(lm.num_attention_heads), hub_id, ())


def _processors(shape: Shape, tok):
    """(object to save_pretrained or None, hand-written processor_config.json or None)."""
    if shape.family == "qwen2_5_vl":
        return T.Qwen2VLImageProcessorPil(**shape.image), {"processor_class": "Qwen2_5_VLProcessor"}
    if shape.family == "internvl":
        return (T.GotOcr2ImageProcessorPil(**shape.image),
                {"processor_class": "InternVLProcessor", "image_seq_length": shape.top["image_seq_length"]})
    if shape.family == "llava":
        ip = T.CLIPImageProcessorPil(**shape.image)
        return T.LlavaProcessor(
            image_processor=ip,
            tokenizer=tok,
            patch_size=14,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=tok.chat_template,
        ), None
    return None, None


MODEL_CLASSES = {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "internvl": "InternVLForConditionalGeneration",
                 "llava": "LlavaForConditionalGeneration", "qwen2": "Qwen2ForCausalLM"}


def build_shape(name: str, out_dir: str | Path, layers: int | None = None, vision_layers: int | None = None,
                seed: int = 0, dtype: str = "bfloat16", config_only: bool = False) -> Path:
    """Write `name` with random weights into out_dir (save_pretrained), deterministic in the arguments.
    `config_only`: config, tokenizer and processors but no weights (enough for `anchorlab estimate`)."""
    shape = get_shape(name)
    check_depth(shape, layers, vision_layers)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = shape_tokenizer(shape)
    config = _config(shape, layers, vision_layers)
    if config_only:
        config.dtype = dtype
        config.save_pretrained(out)
        _write_rest(shape, tok, out, {"shape": name, "hub_id": shape.hub_id, "layers": layers,
                                      "vision_layers": vision_layers, "config_only": True, "notes": shape.notes})
        return out
    torch.manual_seed(seed)
    cls = getattr(T, MODEL_CLASSES[shape.family])
    torch_dtype = getattr(torch, dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)  # initialise in the saved dtype: half the memory of fp32 then cast
    try:
        model = cls(config)
    finally:
        torch.set_default_dtype(previous)
    model.to(torch_dtype).save_pretrained(out)
    del model
    _write_rest(shape, tok, out, {"shape": name, "hub_id": shape.hub_id, "layers": layers,
                                  "vision_layers": vision_layers, "seed": seed, "dtype": dtype,
                                  "random_weights": True, "notes": shape.notes})
    return out


def _write_rest(shape: Shape, tok, out: Path, meta: dict) -> None:
    tok.save_pretrained(out)
    processor, processor_config = _processors(shape, tok)
    if processor is not None:
        processor.save_pretrained(out)
    if processor_config is not None:
        (out / "processor_config.json").write_text(json.dumps(processor_config, indent=2) + "\n")
    _set_tokenizer_class(out, SPECS[shape.family].hub_class)
    (out / "anchorlab_shape.json").write_text(json.dumps(meta, indent=2) + "\n")


def shape_path(name: str, layers: int | None = None, vision_layers: int | None = None, seed: int = 0,
               dtype: str = "bfloat16") -> Path:
    """Build once into the cache (ANCHORLAB_CACHE or ~/.cache/anchorlab)/shapes; reuse after."""
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    key = json.dumps([name, layers, vision_layers, seed, dtype, code, corpus_digest(), T.__version__])
    root = Path(os.environ.get("ANCHORLAB_CACHE") or Path.home() / ".cache" / "anchorlab") / "shapes"
    path = root / f"{name}-{layers}L-{vision_layers}V-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    return build_once(path, lambda tmp: build_shape(name, tmp, layers, vision_layers, seed, dtype))
