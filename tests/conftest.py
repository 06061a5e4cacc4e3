"""Fixtures shared by the unit and end-to-end tests: every model a test needs comes from
anchorlab.models.tiny (tiny checkpoints of the real classes) or anchorlab.toy (the toy LLaVA)."""
import functools
import os

import pytest
import torch
from tiny_support import FAMILIES

from anchorlab.models.loading import load_model
from anchorlab.models.tiny import tiny_model_path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def random_toy_path(tmp_path_factory):
    """The toy LLaVA architecture, randomly initialised, saved and loaded like a hub checkpoint."""
    from anchorlab.models.toy import build_model, build_processor, build_tokenizer

    path = tmp_path_factory.mktemp("random-toy")
    tok = build_tokenizer()
    build_model(tok, seed=0).save_pretrained(path)
    build_processor(tok).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def random_organism_path(tmp_path_factory):
    """The same, with the organism's tokenizer (the toy's plus the shape words): for recipes on organism data."""
    from anchorlab.models.toy import build_model
    from organisms.anchored import LM_ANCHORED, organism_processor

    path = tmp_path_factory.mktemp("random-organism")
    processor = organism_processor()
    build_model(processor.tokenizer, seed=0, lm=LM_ANCHORED).save_pretrained(path)
    processor.save_pretrained(path)
    return path


@functools.cache
def _load(path: str, attn: str):
    return load_model(path, attn_implementation=attn)


@pytest.fixture(scope="session")
def tiny():
    """tiny(family, attn="eager") -> ModelBundle; every checkpoint is built once into the cache."""
    paths = {family: str(tiny_model_path(family)) for family in FAMILIES}
    return lambda family, attn="eager": _load(paths[family], attn)


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread is fastest, and several are 100x slower when another job holds a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_paths():
    """Checkpoint folders of the tiny LLaVA and Qwen2.5-VL models (for CLI runs that take a path)."""
    return {family: str(tiny_model_path(family)) for family in ("llava", "qwen2_5_vl")}
