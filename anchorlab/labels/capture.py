"""What the model decides, read inside a trace: the restricted logits of the decision pair at `last`,
the dictionary's best token per answer, and greedy answers labelled follows / fails / neither.

The first-token rule (P(y_f) > P(y_c) at `last`) and the generation rule (docs/method.md §3.6) both start
here; rules.py classifies, store.py keeps labels.nc.
"""
from __future__ import annotations

import numpy as np
import torch

from ..adapters.paths import envoy_at
from ..method.lens import restricted_logits
from ..rows.batching import no_logits
from ..rows.layout import decision_rows, entity_rows
from .rules import answer_forms, classify_answer


def decision_capture(envoy, layers_path, final, last, dec_w, norm):
    """Runs inside the trace: the lens logits of the tokens `dec_w` (rows) at `last` of layer `final`."""
    b = torch.arange(last.shape[0], device=last.device)
    h = envoy_at(envoy, layers_path)[final].output[b, last]
    return restricted_logits(norm(h)[:, None], dec_w)[:, 0]


def first_token_margin(bundle, backend, batch, rows) -> np.ndarray:
    """Per row: logit(y_f) - logit(y_c) of the model's next token at `last`."""
    lens = bundle.lens
    last = torch.stack([roles["last"][-1] for roles in batch.roles]).to(bundle.device)
    logits = backend.trace(no_logits(batch.inputs), decision_capture, bundle.adapter.layers, bundle.n_layers - 1, last,
                           lens.rows(decision_rows(rows)), lens.norm)
    return (logits[:, 0] - logits[:, 1]).float().cpu().numpy()


def dictionary_best(ctx, batch, rows) -> torch.Tensor:
    """[B, 2] per row: the dictionary token of each answer with the highest clean logit at `last`."""
    bundle = ctx.bundle
    ids, member = entity_rows(rows)
    lens = bundle.lens
    last = torch.stack([roles["last"][-1] for roles in batch.roles]).to(bundle.device)
    logits = ctx.backend.trace(
        no_logits(batch.inputs),
        decision_capture,
        bundle.adapter.layers,
        bundle.n_layers - 1,
        last,
        lens.rows(ids),
        lens.norm,
    ).cpu()
    out = torch.empty((len(rows), 2), dtype=torch.long)
    for i, row in enumerate(rows):
        for side, modality in enumerate((row.followed, row.competitor)):
            m = 0 if modality == "vision" else 1
            scores = logits[i].masked_fill(~member[i, m], float("-inf"))
            out[i, side] = ids[i, int(scores.argmax())]
    return out


def generate_answers(bundle, batch, max_new_tokens: int = 16, backend=None, **generate_kwargs) -> list[str]:
    """Greedy answers for a collated batch (anchorlab.rows.batching.collate), for every family.

    With a `backend`, through its nnsight traces (local or NDIF, the same greedy loop interventions
    use); without one, through the HF model's own `generate` (the toy trainer, no nnsight needed).
    `position_ids` are left out there: generate derives them from the attention mask at each step
    (Qwen2.5-VL: its 3-D positions from `mm_token_type_ids`, which the batch carries)."""
    if backend is not None:
        from ..engines.generation import greedy_generate

        ids = greedy_generate(bundle, backend, batch.inputs, max_new_tokens)
        return [text.strip() for text in bundle.tokenizer.batch_decode(ids, skip_special_tokens=True)]
    device = bundle.device
    inputs = {k: v.to(device) for k, v in batch.inputs.items() if k != "position_ids"}
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                  pad_token_id=bundle.pad_token_id)
    kwargs.update(generate_kwargs)
    with torch.inference_mode():
        out = bundle.model.generate(**inputs, **kwargs)
    new = out[:, inputs["input_ids"].shape[1]:]
    return [text.strip() for text in bundle.tokenizer.batch_decode(new, skip_special_tokens=True)]


def label_batch(bundle, backend, batch, rows, rule: str, max_new_tokens: int) -> dict:
    """Per-row arrays for the run store: `label` (str) and, by rule, the generated `answer` or the
    first-token logit `margin` y_f - y_c at `last`."""
    if rule == "generation":
        answers = generate_answers(bundle, batch, max_new_tokens, backend=backend)
        labels = [classify_answer(a, *answer_forms(r)) for a, r in zip(answers, rows)]
        return {"label": np.array(labels, dtype=str), "answer": np.array(answers, dtype=str)}
    margin = first_token_margin(bundle, backend, batch, rows)
    return {"label": np.where(margin > 0, "follows", "fails").astype(str), "margin": margin}
