"""Tiny random-weight checkpoints of the real transformers classes, for tests and benchmarks.

Each factory writes a folder that `load_model(path)` reads exactly as it would a hub download
(config, safetensors, tokenizer, image processor, chat template), so the whole path from config to
token roles is exercised without network access. Weights are random: outputs mean nothing, but
shapes, module paths, image-token expansion and position handling are the real ones.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers as T

from .tiny_tokenizer import SPECS, build_tokenizer, corpus_digest

FAMILIES = ("llava", "qwen2_5_vl", "internvl", "qwen2", "llama")


@dataclass(frozen=True)
class TinySettings:
    """Sizes for a tiny model; every field can be overridden through `build_tiny(**overrides)`."""

    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None  # None: 2 for Qwen-based LMs (grouped-query like the real ones), else num_heads
    hidden_size: int = 64
    intermediate_size: int | None = None  # None: 2 * hidden_size
    vocab_size: int = 0  # embedding rows; at least the tokenizer's length, rounded up to a multiple of 64
    bpe_vocab: int = 3072  # tokenizer merges budget (the corpus may yield fewer)
    image_size: int = 32  # tile side the vision tower takes; Qwen2.5-VL: images keep >= image_size**2 pixels
    patch_size: int | None = None  # None: 8 for LLaVA's CLIP, 4 for Qwen2.5-VL and InternVL
    vision_layers: int = 2
    vision_hidden: int = 32
    vision_heads: int = 2
    max_tiles: int = 4  # InternVL's max_patches (hub: 12); keeps the tiled sequence short
    init_std: float = 0.1  # larger than the usual 0.02 so attention is peaked and masking errors show
    dtype: str = "float32"


def build_tiny(family: str, out_dir: str | Path, seed: int = 0, **overrides) -> Path:
    """Write a tiny `family` checkpoint into `out_dir` (deterministic in family, seed, overrides)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; choose from {', '.join(FAMILIES)}")
    s = dataclasses.replace(TinySettings(), **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(family, s.bpe_vocab)
    torch.manual_seed(seed)
    model, processor, processor_config = _BUILDERS[family](s, tok)
    model.to(getattr(torch, s.dtype)).save_pretrained(out)
    tok.save_pretrained(out)
    if processor is not None:  # a full processor (LLaVA) or just the image processor
        processor.save_pretrained(out)
    if processor_config is not None:  # written by hand where the processor cannot be built here
        (out / "processor_config.json").write_text(json.dumps(processor_config, indent=2) + "\n")
    _set_tokenizer_class(out, SPECS[family].hub_class)
    return out


def cache_root() -> Path:
    return Path(os.environ.get("ANCHORLAB_CACHE") or Path.home() / ".cache" / "anchorlab") / "tiny"


def tiny_model_path(family: str, seed: int = 0, **overrides) -> Path:
    """Build once per (family, seed, settings, corpus, builder code, transformers version); reuse after."""
    s = dataclasses.replace(TinySettings(), **overrides)
    code = hashlib.sha256(Path(__file__).read_bytes() + Path(build_tokenizer.__code__.co_filename).read_bytes())
    key = json.dumps([family, seed, dataclasses.asdict(s), corpus_digest(), code.hexdigest(), T.__version__])
    path = cache_root() / f"{family}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    return build_once(path, lambda tmp: build_tiny(family, tmp, seed, **overrides))


def build_once(path: Path, build) -> Path:
    """A cached checkpoint folder: `build(tmp)` writes it into a temporary sibling that is renamed into
    place (atomic: a concurrent builder either wins or finds ours complete); an existing one is reused."""
    if (path / "config.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build(tmp)
        try:
            tmp.rename(path)
        except OSError:
            if not (path / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _set_tokenizer_class(folder: Path, name: str | None) -> None:
    """Name the hub's tokenizer class (Qwen2Tokenizer) so AutoTokenizer takes the hub's code path."""
    if name:
        path = folder / "tokenizer_config.json"
        config = json.loads(path.read_text())
        config["tokenizer_class"] = name
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------- builders


def _vocab(s: TinySettings, tok) -> int:
    return -(-max(s.vocab_size, len(tok)) // 64) * 64


def _lm_kwargs(s: TinySettings, tok, kv_default: int | None = None) -> dict:
    ids = {name: tok.convert_tokens_to_ids(t) if t else None for name, t in
           (("bos_token_id", tok.bos_token), ("eos_token_id", tok.eos_token), ("pad_token_id", tok.pad_token))}
    return dict(
        vocab_size=_vocab(s, tok),
        hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size or 2 * s.hidden_size,
        num_hidden_layers=s.num_layers,
        num_attention_heads=s.num_heads,
        num_key_value_heads=s.num_kv_heads or kv_default or s.num_heads,
        max_position_embeddings=8192,
        initializer_range=s.init_std,
        **ids,
    )


def _qwen_kv(s: TinySettings) -> int:
    return 2 if s.num_heads % 2 == 0 else 1


def _clip_processor(s: TinySettings):
    side = {"height": s.image_size, "width": s.image_size}
    return T.CLIPImageProcessorPil(size={"shortest_edge": s.image_size}, crop_size=side)


def _llava(s: TinySettings, tok):
    patch = s.patch_size or 8
    vision = T.CLIPVisionConfig(
        hidden_size=s.vision_hidden, intermediate_size=2 * s.vision_hidden, num_hidden_layers=s.vision_layers,
        num_attention_heads=s.vision_heads, image_size=s.image_size, patch_size=patch, projection_dim=s.vision_hidden,
        initializer_range=s.init_std,
    )
    config = T.LlavaConfig(
        vision_config=vision,
        text_config=T.LlamaConfig(**_lm_kwargs(s, tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=(s.image_size // patch) ** 2,
        vision_feature_layer=-2 if s.vision_layers > 1 else -1,
        vision_feature_select_strategy="default",
        pad_token_id=tok.pad_token_id,
    )
    processor = T.LlavaProcessor(
        image_processor=_clip_processor(s), tokenizer=tok, patch_size=patch, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=tok.chat_template,
    )
    return T.LlavaForConditionalGeneration(config), processor, None


def _mrope_section(head_dim: int) -> list[int]:
    """Qwen2.5-VL's [16, 24, 24] (temporal, height, width) scaled to this head size."""
    half = head_dim // 2
    t = half // 4
    return [t, (half - t) // 2, half - t - (half - t) // 2]


def _qwen2_5_vl(s: TinySettings, tok):
    patch, merge = s.patch_size or 4, 2
    text = T.Qwen2_5_VLTextConfig(**_lm_kwargs(s, tok, _qwen_kv(s)), rope_parameters={
        "rope_type": "default", "rope_theta": 1000000.0, "mrope_section": _mrope_section(s.hidden_size // s.num_heads),
    })
    vision = T.Qwen2_5_VLVisionConfig(
        depth=s.vision_layers, hidden_size=s.vision_hidden, intermediate_size=2 * s.vision_hidden,
        num_heads=s.vision_heads, patch_size=patch, spatial_merge_size=merge, temporal_patch_size=2,
        window_size=patch * merge * 2, out_hidden_size=s.hidden_size, fullatt_block_indexes=[s.vision_layers - 1],
        initializer_range=s.init_std,
    )
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    config = T.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    # Dynamic resolution as in the hub model, within [1, 4] x image_size**2 pixels: a square image of
    # side image_size gives (image_size / (patch * merge))**2 tokens, any other at least about as many.
    area = s.image_size**2
    image_processor = T.Qwen2VLImageProcessorPil(
        patch_size=patch, merge_size=merge, temporal_patch_size=2, min_pixels=area, max_pixels=4 * area,
    )
    # The processor itself cannot be built without torchvision (its video processor); the folder still
    # says which one a full install would build, as the hub's does.
    processor_config = {"processor_class": "Qwen2_5_VLProcessor"}
    return T.Qwen2_5_VLForConditionalGeneration(config), image_processor, processor_config


def _internvl(s: TinySettings, tok):
    patch, downsample = s.patch_size or 4, 0.5
    vision = T.InternVLVisionConfig(
        hidden_size=s.vision_hidden, intermediate_size=2 * s.vision_hidden, num_hidden_layers=s.vision_layers,
        num_attention_heads=s.vision_heads, image_size=[s.image_size, s.image_size], patch_size=[patch, patch],
        initializer_range=s.init_std,
    )
    seq = int((s.image_size // patch) ** 2 * downsample**2)
    config = T.InternVLConfig(
        vision_config=vision,
        text_config=T.Qwen2Config(**_lm_kwargs(s, tok, _qwen_kv(s))),
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=seq,
        downsample_ratio=downsample,
    )
    image_processor = T.GotOcr2ImageProcessorPil(
        size={"height": s.image_size, "width": s.image_size}, max_patches=s.max_tiles,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )
    processor_config = {"processor_class": "InternVLProcessor", "image_seq_length": seq}
    return T.InternVLForConditionalGeneration(config), image_processor, processor_config


def _qwen2(s: TinySettings, tok):
    return T.Qwen2ForCausalLM(T.Qwen2Config(**_lm_kwargs(s, tok, _qwen_kv(s)))), None, None


def _llama(s: TinySettings, tok):
    return T.LlamaForCausalLM(T.LlamaConfig(**_lm_kwargs(s, tok))), None, None


_BUILDERS = {"llava": _llava, "qwen2_5_vl": _qwen2_5_vl, "internvl": _internvl, "qwen2": _qwen2, "llama": _llama}
