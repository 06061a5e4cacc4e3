"""Did the model follow the instructed modality? Generation-based labels (SPEC §3.6's MFR rule).

`generate_answers` decodes greedily (through the run's backend, so labels are computed where the
model runs; the knockout / head-intervention engines generate under their hooks and reuse
`classify_answer`).
An answer *follows* iff it contains a surface form of E_f and none of E_c (whole words,
case-insensitive; single-character forms such as option letters match case-sensitively, so the
article "a" is not option "A"); *fails* iff it contains one of E_c and none of E_f; else *neither*.
"""
from __future__ import annotations

import functools
import re

import torch

LABELS = ("follows", "fails", "neither")


@functools.lru_cache(maxsize=65536)
def _pattern(form: str) -> re.Pattern:
    flags = 0 if len(form.strip()) == 1 else re.IGNORECASE
    words = r"\s+".join(re.escape(w) for w in form.split())
    return re.compile(rf"(?<!\w){words}(?!\w)", flags)


def mentions(text: str, forms) -> bool:
    return any(_pattern(f).search(text) for f in forms if f.strip())


def classify_answer(text: str, forms_f, forms_c) -> str:
    """'follows' / 'fails' / 'neither' for one generated answer (see the module docstring)."""
    f, c = mentions(text, forms_f), mentions(text, forms_c)
    return "follows" if f and not c else "fails" if c and not f else "neither"


def answer_forms(row) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Surface forms (followed, competitor) a row's answer is matched against: the dictionary
    forms; for two-option prompts the option letter and the option's text."""
    sample = row.sample
    if "options" in sample.extra:
        letters = {m: sample.answer(m) for m in ("vision", "text")}
        texts = dict(zip(("A", "B"), sample.extra["options"]))
        forms = {m: (letters[m], texts[letters[m]]) for m in letters}
    else:
        forms = {m: sample.forms(m) for m in ("vision", "text")}
    return forms[row.followed], forms[row.competitor]


def generate_answers(bundle, batch, max_new_tokens: int = 16, backend=None, **generate_kwargs) -> list[str]:
    """Greedy answers for a collated batch (anchorlab.batching.collate), for every family.

    With a `backend`, through its nnsight traces (local or NDIF, the same greedy loop interventions
    use); without one, through the HF model's own `generate` (the toy trainer, no nnsight needed).
    `position_ids` are left out there: generate derives them from the attention mask at each step
    (Qwen2.5-VL: its 3-D positions from `mm_token_type_ids`, which the batch carries)."""
    if backend is not None:
        from .engines.generation import greedy_generate

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
    import numpy as np

    if rule == "generation":
        answers = generate_answers(bundle, batch, max_new_tokens, backend=backend)
        labels = [classify_answer(a, *answer_forms(r)) for a, r in zip(answers, rows)]
        return {"label": np.array(labels, dtype=str), "answer": np.array(answers, dtype=str)}
    from .filters import first_token_margin

    margin = first_token_margin(bundle, backend, batch, rows)
    return {"label": np.where(margin > 0, "follows", "fails").astype(str), "margin": margin}
