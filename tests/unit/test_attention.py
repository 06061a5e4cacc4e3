"""flash_attention_2 (issue 13): intervention passes run with sdpa (recorded) or stop clearly —
a dense knockout mask is never silently ignored; sdpa and eager stay exact."""
import pytest
import torch
from tiny_support import sample

from anchorlab.backends import LocalBackend
from anchorlab.engines.knockout import KnockoutEngine, naive_capture, role_mask
from anchorlab.engines.prefix import model_paths
from anchorlab.errors import UserError
from anchorlab.interventions.knockout import base_allowed, knocked_edges, window_layers
from anchorlab.models.loading import load_model
from anchorlab.models.tiny import tiny_model_path
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import compile_rows
from anchorlab.rows.prompts import PromptStyle

PATHWAYS = [("vision->last", "vision", "last"), ("context->instruction", "context", "instruction")]


def flash_loaded(family):
    """A fresh model whose config says flash_attention_2 (flash-attn is not installed on CPU: the
    config is set after loading, as from_pretrained(attn_implementation="flash_attention_2") would)."""
    bundle = load_model(str(tiny_model_path(family)), attn_implementation="sdpa")
    bundle.model.config._attn_implementation = "flash_attention_2"
    assert bundle.lm_config._attn_implementation == "flash_attention_2"
    return bundle


def prepared(bundle):
    rows = compile_rows(bundle, [sample(True)], ["vf", "tf"], PromptStyle())
    return rows, collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)


def test_flash_model_is_switched_to_sdpa_and_gives_the_sdpa_numbers(tiny, one_thread):
    flash = flash_loaded("qwen2_5_vl")
    rows, batch = prepared(flash)
    got = KnockoutEngine(flash, LocalBackend(flash), "fast").sweep(batch, rows, PATHWAYS, [1, 2], 3)
    assert flash.lm_config._attn_implementation == "sdpa"
    assert flash.model._anchorlab_attn_switched == ("flash_attention_2", "sdpa")
    ref_bundle = tiny("qwen2_5_vl", "sdpa")
    ref = KnockoutEngine(ref_bundle, LocalBackend(ref_bundle), "fast").sweep(batch, rows, PATHWAYS, [1, 2], 3)
    torch.testing.assert_close(got.logits, ref.logits, atol=1e-6, rtol=0)
    assert (got.logits - got.clean[:, None, None]).abs().max() > 1e-3  # the knockout acted


def test_a_mask_flash_would_ignore_is_refused(one_thread):
    flash = flash_loaded("llama")
    rows, batch = prepared(flash)
    knocked = knocked_edges(role_mask(batch, rows, "context", "p"), role_mask(batch, rows, "last", "p"))
    dec_w = torch.zeros(len(rows), 2, flash.lm_config.hidden_size)
    allowed = base_allowed(batch.inputs["attention_mask"], 0)
    # the knocked pass (from layer 0: the check runs before any flash kernel is reached)
    with pytest.raises(Exception, match="needs a dense attention mask, which flash_attention_2 ignores"):
        LocalBackend(flash).trace(dict(batch.inputs), naive_capture, model_paths(flash.adapter),
                                  window_layers(0, 3, flash.n_layers), allowed, knocked, dec_w)


def test_switch_failure_is_a_clear_error(one_thread, monkeypatch):
    flash = flash_loaded("llama")

    def refuse(impl):
        raise ValueError("not supported here")

    monkeypatch.setattr(flash.model, "set_attn_implementation", refuse)
    with pytest.raises(UserError, match="needs a dense attention mask.*load it with model.attn_implementation: sdpa"):
        KnockoutEngine(flash, LocalBackend(flash))


def test_recipe_accepts_flash_and_records_what_ran(tmp_path, monkeypatch, one_thread):
    from anchorlab.api import run
    from anchorlab.run import executor

    real = executor.load_model

    def load(model_id, dtype, device, attn, revision):
        assert attn == "flash_attention_2"
        bundle = real(model_id, dtype, device, "sdpa", revision)
        bundle.model.config._attn_implementation = "flash_attention_2"
        return bundle

    monkeypatch.setattr(executor, "load_model", load)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: fa\nmodel: {id: toy:arbiter, attn_implementation: flash_attention_2}\n"
                      "data: {source: toy, n_samples: 2, tasks: [vf], filter: all}\n"
                      "analyses:\n  - {kind: knockout, layers: [1], pathways: [vision->last], n_bootstrap: 10}\n")
    ds = run(recipe, out=tmp_path / "out")["knockout"]
    assert ds.attrs["attn_implementation"] == "flash_attention_2"
    assert ds.attrs["attn_implementation_used"] == "sdpa"
