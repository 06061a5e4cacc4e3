"""Prompt content for a (sample, task), with the character span of every text role.

The content is family-neutral; an adapter renders it through the model's chat template and
the spans are carried into the rendered string (roles.py), never guessed from positions.
"""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from ..data.prompt_text import CONTEXT_PREFIX, MC2_INSTRUCTIONS, OPTION_LETTERS, OPTION_PROMPT
from ..data.sample import ConflictSample, InstructionPosition, Task

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
    prefix = style.context_prefix if sample.context_prefix is None else sample.context_prefix
    context_piece = (prefix, sample.context)
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
