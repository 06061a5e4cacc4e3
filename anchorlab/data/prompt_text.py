"""The fixed text of conflict prompts (MC²'s instruction strings, the context prefix, the two-option
line) and the two-option view of a dataset. Data facts: the toy data, tiny tokenizers and the prompt
builder (rows/prompts.py) all read them from here."""
from __future__ import annotations

import dataclasses

from .sample import ConflictSample

# The MC² authors' instruction strings (shared/data/mc2/README.md), stripped of the trailing space.
MC2_INSTRUCTIONS: dict[str, str] = {
    "tf": "In case there is an inconsistency between the Text Context and the input image content, "
    "you must rely on the text context rather than the input image content.",
    "vf": "In case there is an inconsistency between the text context and the image content, "
    "you should follow the image content rather than the text context.",
}
CONTEXT_PREFIX = "Text context: "
# MC²'s two-option format: the question, then the options, then this line (README of the MC² data).
OPTION_LETTERS = ("A", "B")
OPTION_PROMPT = "Answer the question by selecting the correct answer A or B."
# Two-option sample ids: "<id>#vA" (the vision-supported answer is option A) or "<id>#tA".
ORDERS = {"vision_first": ("vision", "text"), "text_first": ("text", "vision")}


def two_option_samples(samples: list[ConflictSample], order: str = "both") -> list[ConflictSample]:
    """Each sample as two-option prompts: `both` gives `<id>#vA` (A = the vision-supported answer)
    and `<id>#tA` (A = the text-supported one); `vision_first` / `text_first` give one of them.

    The answers become the option letters, so y_p/y_c and E_f/E_c are the letters' first tokens;
    `extra` keeps the original answers ("answers") and the option texts in A, B order ("options")."""
    orders = list(ORDERS.values()) if order == "both" else [ORDERS[order]]
    out = []
    for s in samples:
        texts = s.extra.get("option_texts") or {"vision": s.answer_vision, "text": s.answer_text}
        for first, second in orders:
            letter = {first: OPTION_LETTERS[0], second: OPTION_LETTERS[1]}
            extra = {**s.extra, "options": (texts[first], texts[second]), "option_a": first,
                     "answers": {"vision": s.answer_vision, "text": s.answer_text}}
            out.append(dataclasses.replace(
                s, id=f"{s.id}#{first[0]}A", answer_vision=letter["vision"], answer_text=letter["text"],
                forms_vision=(), forms_text=(), extra=extra,
            ))
    return out
