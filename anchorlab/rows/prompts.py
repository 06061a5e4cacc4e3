"""Prompt content for a (sample, task), with the character span of every text role.

The content is family-neutral; an adapter renders it through the model's chat template and
the spans are carried into the rendered string (roles.py), never guessed from positions.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from PIL import Image

from ..data.sample import ConflictSample, InstructionPosition, Task

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

Span = tuple[int, int]


@dataclass(frozen=True)
class PromptStyle:
    """How content is laid out; every field is a recipe option (data.prompt)."""

    instructions: tuple[tuple[str, str], ...] = tuple(sorted(MC2_INSTRUCTIONS.items()))
    instruction_position: InstructionPosition = "after_context"
    context_prefix: str = CONTEXT_PREFIX
    separator: str = "\n"
    option_prompt: str = OPTION_PROMPT

    def instruction(self, task: Task) -> str:
        return dict(self.instructions)[task]


@dataclass(frozen=True)
class Prompt:
    """One user turn: an optional image followed by text `content`; `spans` index into content."""

    sample_id: str
    task: Task
    content: str
    spans: dict[str, Span]
    image: Image.Image | None

    def segment(self, role: str) -> str:
        start, end = self.spans[role]
        return self.content[start:end]


def build_prompt(sample: ConflictSample, task: Task, style: PromptStyle = PromptStyle()) -> Prompt:
    instruction = (sample.instruction_vf if task == "vf" else sample.instruction_tf) or style.instruction(task)
    position = sample.instruction_position or style.instruction_position
    context_piece = (style.context_prefix, sample.context)
    query = sample.question
    if "options" in sample.extra:  # two-option prompt: the options and the selection line belong to the query
        lines = [f"{letter}. {text}" for letter, text in zip(OPTION_LETTERS, sample.extra["options"])]
        query = style.separator.join([query, *lines, style.option_prompt])
    pieces = {
        "before_context": [("instruction", instruction), ("context", context_piece), ("query", query)],
        "after_context": [("context", context_piece), ("instruction", instruction), ("query", query)],
        "after_question": [("context", context_piece), ("query", query), ("instruction", instruction)],
    }[position]
    content, spans = "", {}
    for i, (role, piece) in enumerate(pieces):
        if i:
            content += style.separator
        prefix, text = piece if isinstance(piece, tuple) else ("", piece)
        content += prefix
        spans[role] = (len(content), len(content) + len(text))
        content += text
    return Prompt(sample.id, task, content, spans, sample.image)


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
