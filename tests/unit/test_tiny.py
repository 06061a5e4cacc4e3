"""The tiny checkpoint factory: deterministic, overridable, cached where ANCHORLAB_CACHE says."""
from __future__ import annotations

import pytest
from tiny_support import sample

from anchorlab.models.loading import load_model
from anchorlab.models.tiny import build_tiny, tiny_model_path
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt

pytestmark = pytest.mark.usefixtures("one_thread")


def test_build_is_deterministic(tmp_path):
    a, b = build_tiny("llama", tmp_path / "a"), build_tiny("llama", tmp_path / "b")
    files = sorted(p.name for p in a.iterdir())
    assert "model.safetensors" in files and files == sorted(p.name for p in b.iterdir())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    c = build_tiny("llama", tmp_path / "c", seed=1)
    assert (c / "model.safetensors").read_bytes() != (a / "model.safetensors").read_bytes()


def test_overrides_shape_the_model(tmp_path):
    path = build_tiny(
        "qwen2_5_vl", tmp_path, num_layers=2, num_heads=8, hidden_size=64, vocab_size=5000, image_size=64, patch_size=8
    )
    bundle = load_model(str(path))
    assert (bundle.n_layers, bundle.n_heads, bundle.head_dim) == (2, 8, 8)
    assert bundle.lm_config.vocab_size == 5056  # rounded up to a multiple of 64
    enc = encode(bundle, build_prompt(sample(size=(64, 64)), "vf"))
    assert len(enc.roles["vision"]) == (64 // (8 * 2)) ** 2  # square image: (side / (patch * merge))**2
    with pytest.raises(TypeError):
        build_tiny("llama", tmp_path / "x", num_layerz=2)
    with pytest.raises(ValueError, match="llava"):
        build_tiny("gpt2", tmp_path / "y")


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ANCHORLAB_CACHE", str(tmp_path))
    path = tiny_model_path("qwen2", num_layers=1)
    assert path.parent == tmp_path / "tiny" and (path / "config.json").exists()
    assert tiny_model_path("qwen2", num_layers=1) == path
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == [path.name]  # no temporary folder left behind
