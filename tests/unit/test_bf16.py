"""bf16 on the real Qwen2.5-VL-7B shape (issue 13): 2 decoder layers and 1 vision layer at full width
(3584, 28 heads / 4 KV heads, vocabulary 152,064), random weights, loaded in bfloat16 with sdpa.

Tolerance for fast == naive in bf16. The fast engine computes the same function as the naive one
but on differently shaped batches (suffix positions only, variants stacked as rows), so the
matmul kernels block and accumulate differently and every bf16 result may round differently.
bf16 keeps 8 significant bits (unit roundoff u = 2^-8); a hidden state that differs by one
rounding in a few coordinates moves a decision logit (an fp32 dot product over d = 3584 with a
bf16 unembedding row) by about u × |logit| per rounded operation in its path. Two layers put ~10
rounded operations (norm, q/k/v, attention, o_proj, gate/up, down, residual adds) between the
embeddings and the logit, so we allow |fast - naive| <= 16 u × max |logit| (≈ 6% of the logit
scale), and require NSSD (a ratio of probabilities computed in fp64 from those logits) to agree
within 0.05. fp32 keeps the 1e-5 of tests/test_knockout.py; in bf16 exact agreement is not a
property of the computation.

The lens, Φ and NSSD are fp32 from the bf16 activations: the final norm is applied as the model
applies it (its bf16 output rounding included), then the restricted unembedding is an fp32
matmul, and the result must match the model's own bf16 logits within their rounding (u × |logit|).
"""
import numpy as np
import pytest
import torch
from tiny_support import sample

from anchorlab.backends import LocalBackend
from anchorlab.engines.head_sweep import HeadEngine
from anchorlab.engines.knockout import KnockoutEngine
from anchorlab.interventions.knockout import parse_pathway
from anchorlab.models.loading import load_model
from anchorlab.models.shapes import shape_path
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import compile_rows
from anchorlab.rows.prompts import PromptStyle

pytestmark = pytest.mark.slow  # a 3 GB bf16 model
U = 2.0**-8  # bf16 unit roundoff
PATHWAYS = ["vision->last", "context->instruction", "instruction->last", "vision->context"]


@pytest.fixture(scope="module")
def qwen_bf16():
    torch.set_num_threads(2)
    return load_model(str(shape_path("qwen2.5-vl-7b", layers=2, vision_layers=1)), dtype="bfloat16")


@pytest.fixture(scope="module")
def prepared(qwen_bf16):
    rows = compile_rows(qwen_bf16, [sample(True, size=(224, 224))], ["vf", "tf"], PromptStyle())
    return rows, collate([r.encoded for r in rows], qwen_bf16.adapter, qwen_bf16.pad_token_id)


def test_shape_is_real_and_bf16(qwen_bf16, prepared):
    b, (rows, _) = qwen_bf16, prepared
    assert b.model.dtype == torch.bfloat16 and b.n_layers == 2 and b.n_heads == 28
    assert b.lm_config.hidden_size == 3584 and b.lm_config.num_key_value_heads == 4
    assert b.model.lm_head.weight.shape == (152064, 3584)
    assert len(rows[0].encoded.roles["vision"]) == 64  # 224² px / 28² px per token


def test_knockout_fast_equals_naive_in_bf16(qwen_bf16, prepared):
    rows, batch = prepared
    backend = LocalBackend(qwen_bf16)
    pathways = [(p, *parse_pathway(p)) for p in PATHWAYS]
    naive = KnockoutEngine(qwen_bf16, backend, "naive").sweep(batch, rows, pathways, [0, 1], 3)
    fast = KnockoutEngine(qwen_bf16, backend, "fast", variants_per_pass=3).sweep(batch, rows, pathways, [0, 1], 3)
    assert fast.logits.dtype == torch.float32 and torch.isfinite(fast.logits).all()
    scale = naive.logits.abs().max()
    assert (fast.logits - naive.logits).abs().max() <= 16 * U * scale
    assert (fast.clean - naive.clean).abs().max() <= 16 * U * scale
    assert (naive.logits - naive.clean[:, None, None]).abs().max() > 16 * U * scale  # the knockout did something

    from anchorlab.analyses.knockout import subspace_p
    from anchorlab.method.nssd import nssd

    def nssd_of(sweep):
        p, q = subspace_p(sweep.clean.numpy())[:, None, None], subspace_p(sweep.logits.numpy())
        return nssd(p, 1 - p, q, 1 - q)

    assert np.abs(nssd_of(fast) - nssd_of(naive)).max() <= 0.05


def test_lens_is_fp32_and_matches_the_models_bf16_logits(qwen_bf16, prepared):
    from anchorlab.labels.capture import first_token_margin
    from anchorlab.rows.layout import decision_rows

    rows, batch = prepared
    backend = LocalBackend(qwen_bf16)
    margin = first_token_margin(qwen_bf16, backend, batch, rows)  # restricted lens at `last`, fp32
    with torch.inference_mode():
        logits = qwen_bf16.model(**batch.inputs, logits_to_keep=1).logits[:, -1]  # bf16, the model's own
    dec = decision_rows(rows)
    own = (logits.gather(1, dec).float()[:, 0] - logits.gather(1, dec).float()[:, 1]).numpy()
    assert margin.dtype == np.float32
    assert np.abs(margin - own).max() <= 2 * U * float(logits.float().abs().max())


def test_head_sweep_fast_equals_naive_in_bf16(qwen_bf16, prepared):
    rows, batch = prepared
    tables = torch.ones(3, 2, 28)
    tables[1, 1, :4] = 0.0
    tables[2, 0, 3:9] = 4.0
    backend = LocalBackend(qwen_bf16)
    naive = HeadEngine(qwen_bf16, backend, "naive").run(batch, rows, tables, "instruction", "first_token")
    fast = HeadEngine(qwen_bf16, backend, "fast", 2).run(batch, rows, tables, "instruction", "first_token")
    scale = float(naive.margins.abs().max()) + 1.0
    assert (fast.margins - naive.margins).abs().max() <= 16 * U * scale


RECIPE = """
name: bf16_all
model: {{id: "{path}", dtype: bfloat16, attn_implementation: sdpa}}
data: {{source: jsonl, path: examples/conflicts/samples.jsonl, n_samples: 1, tasks: [vf, tf], filter: all,
        filter_rule: first_token}}
analyses:
  - {{kind: signal, n_bootstrap: 10}}
  - {{kind: knockout, layers: [1], window: 1, pathways: [vision->last, context->instruction], n_bootstrap: 10}}
  - {{kind: path_blocking, layers: [1], max_new_tokens: 2, n_bootstrap: 10}}
  - {{kind: attribution, top_g: 4, n_bootstrap: 10}}
  - {{kind: heads_block, n_heads: [1], seeds: 1, rule: first_token, rows: all, n_bootstrap: 10}}
  - {{kind: heads_amplify, n_heads: [1], alphas: [2], seeds: 1, rule: first_token, rows: all, n_bootstrap: 10}}
batch_size: 2
"""


def test_every_analysis_runs_in_bf16(tmp_path, qwen_bf16):
    from anchorlab.api import run

    recipe = tmp_path / "bf16.yaml"
    recipe.write_text(RECIPE.format(path=qwen_bf16.path))
    results = run(recipe, out=tmp_path / "out")
    assert {"signal", "knockout", "path_blocking", "attribution", "heads_block", "heads_amplify"} <= set(results)
    for name in ("signal", "knockout", "attribution"):
        ds = results[name]
        for var in ds.data_vars:
            if ds[var].dtype.kind == "f":
                assert ds[var].dtype in (np.float32, np.float64), (name, var)
                assert np.isfinite(ds[var].values).any(), (name, var)
    assert results["knockout"].attrs.get("model_dtype", "bfloat16") == "bfloat16"
    assert np.isfinite(results["signal"]["signal"].values).all()
    assert np.isfinite(results["knockout"]["nssd"].values).all()
