import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def random_toy_path(tmp_path_factory):
    """The toy LLaVA architecture, randomly initialised, saved and loaded like a hub checkpoint."""
    from anchorlab.toy.build import build_model, build_processor, build_tokenizer

    path = tmp_path_factory.mktemp("random-toy")
    tok = build_tokenizer()
    build_model(tok, seed=0).save_pretrained(path)
    build_processor(tok).save_pretrained(path)
    return path
