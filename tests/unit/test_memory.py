"""Memory that fits (issue 13): the fast engines keep only what a pass reads, results bit-identical
to the earlier per-variant-`repeat` implementation (kept here as the reference), and no analysis
computes full-vocabulary logits at any position but `last`."""
from unittest import mock

import pytest
import torch
from tiny_support import sample
from transformers import DynamicCache

from anchorlab.backends import LocalBackend
from anchorlab.engines import knockout as ko
from anchorlab.engines.knockout import KnockoutEngine, plan_passes
from anchorlab.engines.prefix import clean_capture
from anchorlab.interventions.knockout import base_allowed, first_affected, parse_pathway
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import compile_rows
from anchorlab.rows.prompts import PromptStyle

PATHWAYS = ["vision->last", "text->last", "vision->text", "context->instruction",
            "vision->instruction", "context->last", "instruction->last", "vision->context"]


def prepared(bundle, n=2):
    samples = [sample(True), sample(False, position="after_question")][:n]
    rows = compile_rows(bundle, samples, ["vf", "tf"][:n], PromptStyle())
    return rows, collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)


# ------------------------------------------------------------- the earlier implementation (reference)


def _old_suffix_inputs(embeds, positions, key_mask, cache, p0, g, lm_config):
    prefix = None
    if p0 > 0:
        prefix = DynamicCache(config=lm_config)
        for j, layer in enumerate(cache.layers):
            prefix.update(layer.keys[:, :, :p0].repeat(g, 1, 1, 1), layer.values[:, :, :p0].repeat(g, 1, 1, 1), j)
    inputs = {"inputs_embeds": embeds[:, p0:].repeat(g, 1, 1), "attention_mask": key_mask.repeat(g, 1),
              "past_key_values": prefix, "use_cache": True}
    if positions is not None:
        inputs["position_ids"] = positions[..., p0:].repeat(*([1] * (positions.dim() - 2)), g, 1)
    return inputs


def old_fast_sweep(t, inputs, paths, multimodal, lm_config, per_pass, edges, windows, key_mask, dec_w, n_layers):
    """engines/knockout.py's fast_sweep before issue 13: every skipped layer's clean output and the
    whole prefix cache repeated per variant, full logits in the clean pass."""
    b, s = key_mask.shape
    starts = [int(first_affected(k).min()) for k in edges]
    start = min(min(starts), s - 1)
    embeds, positions, hidden, clean, cache = t.trace(
        dict(inputs, use_cache=True), clean_capture, paths, multimodal, start, n_layers, dec_w)
    out = torch.empty((b, len(edges), len(windows), 2))
    groups = {}
    for p in range(len(edges)):
        for c, window in enumerate(windows):
            low = min(window, default=n_layers)
            groups.setdefault((starts[p], low if s - starts[p] > 1 else 0), []).append((p, c))
    for (p0, _), variants in sorted(groups.items()):
        if p0 >= s:
            for p, c in variants:
                out[:, p, c] = clean.cpu()
            continue
        variants.sort(key=lambda v: min(windows[v[1]], default=n_layers))
        for chunk in (variants[i : i + per_pass] for i in range(0, len(variants), per_pass)):
            g = len(chunk)
            skip_below = min(min(windows[c], default=n_layers) for _, c in chunk)
            active = {}
            for k, (_, c) in enumerate(chunk):
                for layer in windows[c]:
                    active.setdefault(layer, torch.zeros(g * b, dtype=torch.bool))
                    active[layer][k * b : (k + 1) * b] = True
            pass_inputs = _old_suffix_inputs(embeds, positions, key_mask, cache, p0, g, lm_config)
            skip = [hidden[j][:, p0 - start :].repeat(g, 1, 1) for j in range(skip_below)]
            knocked = torch.cat([edges[p][:, p0:] for p, _ in chunk])
            allowed = base_allowed(key_mask, p0).repeat(g, 1, 1)
            res = t.trace(pass_inputs, ko.suffix_capture, paths, skip_below, skip, active, allowed,
                          knocked, dec_w.repeat(g, 1, 1)).view(g, b, 2).cpu()
            for k, (p, c) in enumerate(chunk):
                out[:, p, c] = res[k]
    return out, clean.cpu(), 0


@pytest.mark.parametrize("family,attn,n", [("qwen2_5_vl", "sdpa", 2), ("qwen2_5_vl", "sdpa", 1),
                                           ("llava", "eager", 1), ("internvl", "sdpa", 2)])
def test_fast_sweep_bit_identical_to_the_repeat_implementation(tiny, family, attn, n, one_thread):
    bundle = tiny(family, attn)
    rows, batch = prepared(bundle, n)
    pathways = [(p, *parse_pathway(p)) for p in PATHWAYS]
    centres = list(range(bundle.n_layers))
    engine = KnockoutEngine(bundle, LocalBackend(bundle), "fast", variants_per_pass=3)
    new = engine.sweep(batch, rows, pathways, centres, 3)
    with mock.patch.object(ko, "fast_sweep", old_fast_sweep):
        old = engine.sweep(batch, rows, pathways, centres, 3)
    assert torch.equal(new.logits, old.logits) and torch.equal(new.clean, old.clean)


# ------------------------------------------------------------------------ what each pass is given


def storage_bytes(x: torch.Tensor) -> int:
    return x.untyped_storage().nbytes()


@pytest.mark.parametrize("n", [1, 2])
def test_suffix_passes_get_only_what_they_read(tiny, n, one_thread):
    bundle = tiny("qwen2_5_vl", "sdpa")
    rows, batch = prepared(bundle, n)
    backend = LocalBackend(bundle)
    calls = []
    real = backend.trace

    def spy(inputs, fn, *args):  # what the pass is given, before it runs (a pass grows its cache)
        cache = inputs.get("past_key_values")
        layers = [(storage_bytes(x.keys), x.keys.shape[-2], x.keys.stride(0)) for x in cache.layers] if cache else None
        calls.append((inputs, fn, args, layers))
        return real(inputs, fn, *args)

    backend.trace = spy
    pathways = [(p, *parse_pathway(p)) for p in PATHWAYS]
    KnockoutEngine(bundle, backend, "fast", variants_per_pass=4).sweep(batch, rows, pathways, [1, 2, 3], 3)
    (clean_inputs, fn, clean_args, _), *suffix = calls
    assert fn is clean_capture and clean_inputs["logits_to_keep"].numel() == 0  # no logits in the clean pass
    b, s = batch.inputs["input_ids"].shape
    d = bundle.lm_config.hidden_size
    hidden_bytes = b * s * d * 4  # one layer's clean output, all positions (fp32)
    needed = set()
    for inputs, fn, args, layers in suffix:
        assert fn is ko.suffix_capture
        skip_below, skip = args[1], args[2]
        g = inputs["attention_mask"].shape[0] // b
        if skip_below:
            needed.add(skip_below - 1)
            *lower, below = skip
            assert len(lower) == skip_below - 1 and all(storage_bytes(x) <= 4 for x in lower)
            assert below.shape[0] == g * b and storage_bytes(below) <= hidden_bytes * (g if b > 1 else 1)
            assert storage_bytes(inputs["inputs_embeds"]) <= 4  # not read when layer 0 is skipped
        for j, (nbytes, length, stride) in enumerate(layers or []):
            assert length == layers[0][1]  # layer 0 gives the cache position: the prefix length
            if j < skip_below:
                assert nbytes <= 4
            elif b == 1 and g > 1:  # a view of the clean cache, shared by the g copies
                assert stride == 0
    assert set(clean_args[-1]) == needed  # the clean pass kept exactly the layers some pass reads


def test_plan_cells_equal_the_sweep(tiny, one_thread):
    bundle = tiny("llava", "sdpa")
    rows, batch = prepared(bundle)
    pathways = [(p, *parse_pathway(p)) for p in PATHWAYS]
    sweep = KnockoutEngine(bundle, LocalBackend(bundle), "fast", 5).sweep(batch, rows, pathways, [0, 1, 2, 3], 3)
    b, s = batch.inputs["input_ids"].shape
    edges = [ko.knocked_edges(ko.role_mask(batch, rows, src, n), ko.role_mask(batch, rows, dst, n))
             for n, src, dst in pathways]
    windows = [ko.window_layers(c, 3, bundle.n_layers) for c in range(4)]
    passes, _ = plan_passes([int(first_affected(e).min()) for e in edges], windows, s, bundle.n_layers, 5)
    cells = bundle.n_layers * s * b + sum(ko.pass_cells(p, s, b, bundle.n_layers) for p in passes)
    assert cells == sweep.cells


# ------------------------------------------------------------------ no full-vocabulary logits


RECIPE = """
name: all_kinds
model: {id: toy:arbiter-flawed}
data: {source: toy, n_samples: 6, tasks: [vf, tf], filter: all, filter_rule: generation, max_new_tokens: 2}
analyses:
  - {kind: signal, n_bootstrap: 10}
  - {kind: knockout, layers: [1, 2], n_bootstrap: 10}
  - {kind: path_blocking, max_new_tokens: 2, n_bootstrap: 10}
  - {kind: attribution, top_g: 4, n_bootstrap: 10}
  - {kind: heads_block, n_heads: [1], seeds: 1, max_new_tokens: 2, rows: all, n_bootstrap: 10}
  - {kind: heads_amplify, n_heads: [1], alphas: [2], seeds: 1, rule: first_token, rows: all, n_bootstrap: 10}
  - {kind: knockout, name: knockout_best, layers: [1], decision: dictionary_best, engine: naive, n_bootstrap: 10}
"""


@pytest.mark.slow
def test_no_analysis_computes_full_vocabulary_logits(tmp_path, one_thread):
    """Every analysis kind on the toy, with a hook on the unembedding: at most one position (`last`,
    greedy decoding) ever reaches it."""
    from anchorlab.api import run
    from anchorlab.run import executor

    seen = []
    real = executor.load_model

    def load(*args, **kwargs):
        bundle = real(*args, **kwargs)
        bundle.module(bundle.adapter.unembed).register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
        return bundle

    recipe = tmp_path / "all.yaml"
    recipe.write_text(RECIPE)
    with mock.patch.object(executor, "load_model", load):
        results = run(recipe, out=tmp_path / "out")
    assert {"signal", "knockout", "path_blocking", "attribution", "heads_block", "heads_amplify"} <= set(results)
    assert seen and max(shape[1] for shape in seen) <= 1, sorted(set(seen))
