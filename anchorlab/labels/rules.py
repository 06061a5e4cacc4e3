"""Did the model follow the instructed modality? The labelling rules (docs/method.md, MFR).

Answers are generated in capture.py (through the run's backend, so labels are computed where the
model runs; the knockout / head-intervention engines generate under their hooks and reuse
`classify_answer`). `select_rows` turns labels into the rows an analysis aggregates over.
An answer *follows* iff it contains a surface form of E_f and none of E_c (whole words,
case-insensitive; single-character forms such as option letters match case-sensitively, so the
article "a" is not option "A"); *fails* iff it contains one of E_c and none of E_f; else *neither*.
"""
from __future__ import annotations

import functools
import re

import numpy as np

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


def select_rows(mode: str, labels: np.ndarray | None, n: int) -> np.ndarray:
    """Rows kept by `data.filter`; `labels` per row: follows/fails/neither (following.py), or
    booleans (True = follows) from the first-token rule."""
    if mode == "all":
        return np.ones(n, dtype=bool)
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels if mode == "follows" else ~labels
    return labels == ("follows" if mode == "follows" else "fails")
