"""Path blocking (docs/method.md §3.3): generation under a knockout at every generated position."""
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from click.testing import CliRunner
from tiny_support import sample

from anchorlab.analyses.path_blocking import default_layers
from anchorlab.backends import LocalBackend
from anchorlab.cli import main
from anchorlab.engines.generation import greedy_generate
from anchorlab.engines.knockout import role_mask
from anchorlab.interventions.knockout import generation_blocker
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import compile_rows
from anchorlab.rows.prompts import PromptStyle


def test_default_layers_scale_the_papers_range():
    assert default_layers(28) == [20, 21, 22, 23, 24, 25]
    assert default_layers(4) == [3] and default_layers(12) == [9, 10, 11]


def reference_blocked_generation(bundle, batch, src, layers, steps):
    """Plain torch, no nnsight: forward pre-hooks give the generating query an additive mask
    without `src` keys; greedy loop on HF's KV cache."""
    mask2d = batch.inputs["attention_mask"]
    n_prompt = mask2d.shape[1]
    state = {}

    def hook(module, args, kwargs):
        hidden = kwargs["hidden_states"]
        q, keys = hidden.shape[1], state["mask"].shape[1]
        key_ok = state["mask"].bool()[:, None, :].expand(-1, q, -1).clone()
        qpos = torch.arange(keys - q, keys)[:, None]
        key_ok &= torch.arange(keys)[None, :] <= qpos
        blocked = torch.zeros_like(key_ok)
        blocked[:, -1, :n_prompt] = src  # only the generating (last) query loses the source keys
        allowed = key_ok & ~blocked
        pad_rows = ~allowed.any(-1, keepdim=True)
        allowed |= pad_rows & (torch.arange(keys)[None, None, :] == qpos[None])
        additive = torch.where(allowed[:, None], 0.0, torch.finfo(hidden.dtype).min)
        return args, {**kwargs, "attention_mask": additive}

    handles = [bundle.layers[j].self_attn.register_forward_pre_hook(hook, with_kwargs=True) for j in layers]
    out, cache = [], None
    ids, positions = batch.inputs["input_ids"], batch.inputs["position_ids"]
    extras = {k: v for k, v in batch.inputs.items() if k not in ("input_ids", "position_ids", "attention_mask")}
    mask = mask2d
    try:
        with torch.no_grad():
            for step in range(steps):
                state["mask"] = mask
                res = bundle.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                   past_key_values=cache, use_cache=True, **(extras if step == 0 else {}))
                token = res.logits[:, -1].argmax(-1)
                out.append(token)
                cache, ids = res.past_key_values, token[:, None]
                positions = positions[:, -1:] + 1
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(out, 1).tolist()


def test_blocked_generation_equals_hook_reference(tiny, one_thread):
    bundle = tiny("llava", "eager")
    rows = compile_rows(bundle, [sample(True), sample(False)], ["vf"], PromptStyle())
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    src = role_mask(batch, rows, "instruction", "instruction->last")
    layers = [1, 2, 3]
    blocker = generation_blocker(bundle.adapter.layers, bundle.adapter.attention, layers, src,
                                 batch.inputs["attention_mask"])
    backend = LocalBackend(bundle)
    ours = greedy_generate(bundle, backend, batch.inputs, 5, blocker)
    assert ours == reference_blocked_generation(bundle, batch, src, layers, 5)
    assert ours != greedy_generate(bundle, backend, batch.inputs, 5)  # the block changes what is generated


def test_path_blocking_recipe_end_to_end(tmp_path, random_toy_path):
    recipe = str(Path(__file__).resolve().parents[2] / "recipes" / "path_blocking.yaml")
    result = CliRunner().invoke(main, ["run", recipe, "--out", str(tmp_path), "--set", f"model.id={random_toy_path}",
                                       "--set", "data.n_samples=4", "--set", "data.filter=all",
                                       "--set", "analyses.0.layers=[1,2,3]"])
    assert result.exit_code == 0, result.output
    ds = xr.open_dataset(tmp_path / "path_blocking.nc")
    assert list(ds["setting"].values) == ["original", "instruction->last", "followed_context->last"]
    assert ds["mfr"].dims == ("task", "setting") and ds["mfr_ci"].dims == ("task", "setting", "bound")
    labels = ds["label"].values
    assert set(np.unique(labels)) <= {0, 1, 2}
    np.testing.assert_allclose(ds["mfr"].values, (labels == 0).mean(-1))
    assert ds.attrs["blocked_layers"] == "1, 2, 3" and ds.attrs["rule"] == "generation"
    assert (tmp_path / "figures" / "path_blocking_mfr.png").exists()
