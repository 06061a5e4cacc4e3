"""Load any supported checkpoint (hub id, local folder, or shipped toy) through from_pretrained."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from ..adapters import Adapter, adapter_for
from ..adapters.paths import lens_weights, weight
from ..errors import UserError
from ..method.lens import LensWeights

log = logging.getLogger("anchorlab")

TOY_PREFIX = "toy:"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelLoadError(UserError):
    pass


class HubUnreachable(ModelLoadError):
    """A hub id neither in the Hugging Face cache nor reachable: the recipe may be fine."""


# what a hub id looks like (NAME or ORG/NAME); anything else is a local path
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
HUB_PROBE_SECONDS = 3.0  # how long an unreachable hub may take to say so
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def resolve_model_path(model_id: str) -> str:
    """`toy:NAME` names a model shipped inside the package; an existing folder is itself; anything
    else shaped like NAME or ORG/NAME goes to the hub, and any other path that is not there is refused."""
    if model_id.startswith(TOY_PREFIX):
        from ..toy import shipped_path

        try:
            return str(shipped_path(model_id[len(TOY_PREFIX):]))
        except ValueError as exc:
            raise ModelLoadError(f"model.id {model_id!r}: {exc}") from None
    local = Path(model_id).expanduser()
    if local.is_dir():
        return str(local)
    if local.exists():
        raise ModelLoadError(f"model.id {model_id!r}: {local} is a file, not a model folder")
    if ".." in model_id or not HUB_ID.fullmatch(model_id):
        raise ModelLoadError(f"model.id {model_id!r}: {local}: not found (no such folder; a hub id is NAME or "
                             "ORG/NAME)")
    return model_id


def hub_access(model_id: str, revision: str | None) -> dict:
    """from_pretrained kwargs for a hub id, decided in a few seconds: the cached copy alone when the hub
    cannot be reached; a UserError naming HF_HUB_OFFLINE, the cache and a local folder when it is not
    cached either (transformers would retry for half a minute, then print its message twice)."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(model_id, "config.json", revision=revision), str)
    if constants.HF_HUB_OFFLINE:
        if cached:
            return {}
        raise HubUnreachable(f"model.id {model_id!r}: HF_HUB_OFFLINE is set and the model is not in the Hugging "
                             f"Face cache ({constants.HF_HUB_CACHE}); download it once with network, or pass "
                             "a local folder as model.id")
    import httpx

    try:
        httpx.head(constants.ENDPOINT, timeout=HUB_PROBE_SECONDS)
        return {}
    except httpx.HTTPError as exc:
        if cached:
            log.info("the hub at %s is unreachable (%s): using the cached copy of %s", constants.ENDPOINT,
                     type(exc).__name__, model_id)
            return {"local_files_only": True}
        raise HubUnreachable(f"model.id {model_id!r}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
                             f"and the hub at {constants.ENDPOINT} is unreachable ({type(exc).__name__}); "
                             "download it once with network (HF_HUB_OFFLINE=1 then uses the cache alone), "
                             "or pass a local folder as model.id") from None


@dataclass(frozen=True)
class ModelFacts:
    """What a checkpoint is, read from its config and weight-file headers (no weights loaded)."""

    adapter: Adapter
    n_layers: int
    n_heads: int
    path: str
    weight_files: tuple[Path, ...]  # local checkpoints only; () for a hub id


WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")
# what decides a run's numbers besides the weights: config, tokenizer, chat template, processor
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
               "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
               "chat_template.json", "processor_config.json", "preprocessor_config.json")


def model_files(path: str, revision: str | None = None) -> list[Path]:
    """The config, tokenizer, chat template and processor files of a model (resolved path): those in a
    local folder (a shipped toy's too), else those of a hub id's snapshot in the local HF cache."""
    folder = Path(path)
    if folder.is_dir():
        return [folder / name for name in MODEL_FILES if (folder / name).is_file()]
    from huggingface_hub import try_to_load_from_cache

    try:
        found = [try_to_load_from_cache(path, name, revision=revision) for name in MODEL_FILES]
    except ValueError:  # not a hub id either: nothing to hash
        return []
    return [Path(f) for f in found if isinstance(f, str)]


def _read_config(model_id: str, revision: str | None):
    """(path, from_pretrained kwargs, config, adapter) of a model id; an unreadable config names model.id."""
    path = resolve_model_path(model_id)
    kwargs = {"revision": revision} if revision else {}
    if not Path(path).is_dir():
        kwargs.update(hub_access(path, revision))
    try:
        config = transformers.AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model.id {model_id!r}: cannot read a model config there ({exc})") from None
    return path, kwargs, config, adapter_for(config)


def inspect_model(model_id: str, revision: str | None = None) -> ModelFacts:
    """The model's family and size, and a check that a local folder's weights are there and readable:
    every recipe check against the model runs on this, before anything heavy is loaded."""
    path, kwargs, config, adapter = _read_config(model_id, revision)
    lm = adapter.lm_config(config)
    files: tuple[Path, ...] = ()
    folder = Path(path)
    if folder.is_dir():
        files = tuple(sorted(f for pattern in WEIGHT_PATTERNS for f in folder.glob(pattern)))
        if not files:
            raise ModelLoadError(f"model.id {model_id!r}: no weights in {folder} (expected *.safetensors or *.bin)")
        check_tokenizer_files(model_id, folder)
        for f in files:
            if f.suffix == ".safetensors":
                _check_safetensors(model_id, f)
    return ModelFacts(adapter, int(lm.num_hidden_layers), int(lm.num_attention_heads), path, files)


def check_tokenizer_files(model_id: str, folder: Path, field: str = "model.id") -> None:
    """A local folder holds a tokenizer (transformers would otherwise suggest installing sentencepiece)."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"{field} {model_id!r}: no tokenizer files in {folder} (expected one of "
                             f"{', '.join(TOKENIZER_FILES)}, as the tokenizer's save_pretrained writes them)")


def _check_safetensors(model_id: str, path: Path) -> None:
    """Header and tensor index of a safetensors file: a truncated or foreign file is named before loading."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            keys = list(fh.keys())
            if keys:
                fh.get_slice(keys[0]).get_shape()
    except Exception as exc:  # noqa: BLE001 - any parse failure means an unreadable file
        raise ModelLoadError(f"model.id {model_id!r}: weights file {path} is unreadable or corrupt "
                             f"({type(exc).__name__}: {exc})") from None
    if not keys:
        raise ModelLoadError(f"model.id {model_id!r}: weights file {path} holds no tensors")


@dataclass
class ModelBundle:
    model: nn.Module
    tokenizer: Any
    processor: Any | None
    image_processor: Any | None
    adapter: Adapter
    model_id: str
    path: str
    revision: str | None = None

    def module(self, dotted: str) -> nn.Module:
        return self.model.get_submodule(dotted)

    @property
    def layers(self) -> nn.ModuleList:
        return self.module(self.adapter.layers)

    @property
    def lm_config(self):
        return self.adapter.lm_config(self.model.config)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_heads(self) -> int:
        return int(self.lm_config.num_attention_heads)

    @property
    def head_dim(self) -> int:
        cfg = self.lm_config
        return int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)

    def weight(self, dotted: str):
        """A parameter by its dotted name (a WeightRef, read on the server, when this bundle has no weights)."""
        return weight(self.model, dotted)

    @property
    def lens(self) -> LensWeights:
        """Unembedding + final norm, as the logit lens reads them (the adapter knows where they are)."""
        return lens_weights(self.model, self.adapter)

    @property
    def has_weights(self) -> bool:
        """False for NDIF's client: the model is built on the meta device, its weights live on the server."""
        return not next(self.model.parameters()).is_meta

    @property
    def device(self) -> torch.device:
        """Where this process puts the tensors it builds: the model's device, or the CPU for a weightless
        client (the server moves what it receives onto its own device)."""
        device = next(self.model.parameters()).device
        return torch.device("cpu") if device.type == "meta" else device

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return int(pad if pad is not None else 0)


def load_model(
    model_id: str,
    dtype: str = "float32",
    device: str = "cpu",
    attn_implementation: str = "sdpa",
    revision: str | None = None,
    weights: bool = True,
) -> ModelBundle:
    """`weights=False`: the architecture on the meta device, with tokenizer and processor (what an NDIF
    client needs: every weight a trace reads is read on the server); nothing is read from the weight files."""
    path, kwargs, config, adapter = _read_config(model_id, revision)
    cls = getattr(transformers, adapter.model_class)
    if weights:
        log.info("loading %s (%s family, %s, %s, attention=%s)", model_id, adapter.family, dtype, device,
                 attn_implementation)
        model = _from_pretrained(cls, model_id, path, kwargs, config, adapter, dtype, attn_implementation).to(device)
    else:
        log.info("building %s on the meta device (%s family, %s; no weights loaded here)", model_id, adapter.family,
                 dtype)
        with torch.device("meta"):
            build = cls.from_config if cls.__name__.startswith("Auto") else cls._from_config
            model = build(config, dtype=DTYPES[dtype], attn_implementation=attn_implementation)
    model.eval()
    tokenizer = _tokenizer(model_id, path, kwargs, "model.id")
    processor = _optional(transformers.AutoProcessor, path, kwargs) if adapter.is_multimodal else None
    image_processor = (
        getattr(processor, "image_processor", None) or _optional(transformers.AutoImageProcessor, path, kwargs)
        if adapter.is_multimodal
        else None
    )
    return ModelBundle(model, tokenizer, processor, image_processor, adapter, model_id, path, revision)


def _from_pretrained(cls, model_id, path, kwargs, config, adapter, dtype, attn_implementation):
    try:
        model, info = cls.from_pretrained(path, dtype=DTYPES[dtype], attn_implementation=attn_implementation,
                                          output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"model.id {model_id!r}: cannot load the weights as {adapter.model_class} "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None
    broken = {k: sorted(info.get(k) or []) for k in ("missing_keys", "mismatched_keys")}
    if any(broken.values()):  # transformers would fill them with random values: never analyse that
        kind, keys = next((k, v) for k, v in broken.items() if v)
        raise ModelLoadError(f"model.id {model_id!r}: the weights do not fit {adapter.model_class} "
                             f"({len(keys)} {kind.replace('_', ' ')}, e.g. {keys[0]}); is config.json's "
                             f"model_type {config.model_type!r} right for this checkpoint?")
    return model


def load_tokenizer(model_id: str, revision: str | None = None):
    """Just the tokenizer of a model (dictionary coverage needs no weights)."""
    path = resolve_model_path(model_id)
    kwargs = {"revision": revision} if revision else {}
    if not Path(path).is_dir():
        kwargs.update(hub_access(path, revision))
    return _tokenizer(model_id, path, kwargs, "--model")


def _tokenizer(model_id: str, path: str, kwargs: dict, field: str):
    if Path(path).is_dir():
        check_tokenizer_files(model_id, Path(path), field)
    try:
        return transformers.AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{field} {model_id!r}: cannot load a tokenizer there "
                             f"({' '.join(str(exc).split())[:300]})") from None


def _optional(auto_cls, path: str, kwargs: dict):
    """Some processors cannot be built here (Qwen2.5-VL's needs torchvision); adapters fall back."""
    try:
        return auto_cls.from_pretrained(path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure means 'not available', logged
        log.debug("%s unavailable for %s: %s", auto_cls.__name__, path, exc)
        return None
