"""Data of the model organism (`toy:anchored`, `toy:anchored-flawed`): conflicts of two question types in
MC²'s layout (image, "Text context: ...", instruction, question), with instruction wordings that come in
token-length-matched vf/tf pairs, drawn as *groups*: samples sharing every template choice (question
type, wording, context sentence, question) and differing only in their answers and image jitter, so the
members of a group tokenize to the same length and their positions align one to one. Interchange
training and the ground-truth checks splice activations between members of a group (other answers) and
between the two tasks of one sample (the opposite instruction, same length).

Question types (QUESTION_TYPES, alternating over groups):
- colour (MC²'s `color`): the toy's jittered coloured square on grey; "what color is the square ?";
- shape (MC²'s `object_recognition`): one dark shape (SHAPES: circle, ring, cross, triangle, diamond,
  bar) filling one 8-px patch of a light grey image; "what shape is the object ?".
The shape words are the organism's own: its tokenizer is the toy's vocabulary with them appended
(`organism_vocabulary`), so `toy:arbiter`'s token ids do not move.
"""
from __future__ import annotations

import random

from PIL import Image

from .sample import ConflictSample
from .toy import (
    COLOUR_NAMES,
    COLOURS,
    CONTEXTS,
    IMAGE_SIZE,
    QUESTIONS,
    _words,
    draw_square,
    surface_forms,
    vocabulary_words,
)

# vf / tf wordings in pairs of equal token length (index k of one task matches index k of the other).
WORDING_PAIRS: tuple[tuple[str, str], ...] = (
    ("answer based on the image , not the text .", "answer based on the text , not the image ."),
    ("trust the picture rather than the context .", "trust the context rather than the picture ."),
    (
        "follow the image content and ignore the text context .",
        "follow the text context and ignore the image content .",
    ),
    ("use the image , not the text .", "use the text , not the image ."),
    (
        "rely on the image content rather than the text context .",
        "rely on the text context rather than the image content .",
    ),
    (
        _words(
            "In case there is an inconsistency between the text context and the image content, you should follow "
            "the image content rather than the text context."
        ),
        _words(
            "In case there is an inconsistency between the text context and the image content, you should follow "
            "the text context rather than the image content."
        ),
    ),
)
POSITION = "after_context"  # MC²'s order: the buffer needs the image and the context before the instruction
ORGANISM_SEED_BASE = 2_000_000_000  # training pools: ORGANISM_SEED_BASE + seed; evaluation: small seeds

PATCH = 8  # the toy vision tower's patch side: a shape fills one patch, so one patch embedding sees all of it
# shape word -> (8 x 8 mask, '#' = ink; two more surface forms for the entity dictionary)
SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, str]]] = {
    "circle": (("........", "..####..", ".######.", ".######.", ".######.", ".######.", "..####..", "........"),
               ("disc", "round")),
    "ring": (("........", "..####..", ".#....#.", ".#....#.", ".#....#.", ".#....#.", "..####..", "........"),
             ("hoop", "loop")),
    "cross": (("........", "...##...", "...##...", ".######.", ".######.", "...##...", "...##...", "........"),
              ("plus", "cruciform")),
    "triangle": (("........", "...##...", "...##...", "..####..", "..####..", ".######.", ".######.", "........"),
                 ("wedge", "trigon")),
    "diamond": (("........", "...##...", "..####..", ".######.", ".######.", "..####..", "...##...", "........"),
                ("rhombus", "lozenge")),
    "bar": (("........", "........", "........", "########", "########", "........", "........", "........"),
            ("stripe", "strip")),
}
SHAPE_NAMES: tuple[str, ...] = tuple(SHAPES)
SHAPE_CONTEXTS = (
    "the shape is a {c} .",
    "the object in the picture is a {c} .",
    "according to the caption , the shape is a {c} .",
    "someone wrote that the object is a {c} .",
    "this image shows a {c} on a grey background .",
    "the description says the shape of the object is a {c} .",
)
SHAPE_QUESTIONS = (
    "what shape is the object ?",
    "what is the shape in the image ?",
    "which shape does the image show ?",
)
# question type -> (answer words in palette order, context sentences, questions, MC² category)
QUESTION_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = {
    "colour": (COLOUR_NAMES, CONTEXTS, QUESTIONS, "color"),
    "shape": (SHAPE_NAMES, SHAPE_CONTEXTS, SHAPE_QUESTIONS, "object_recognition"),
}
# Every answer word of the organism, in palette order: the checks score these logits; the instruction-blind
# default of a pair (R5's target) is the one listed first.
ANSWER_NAMES: tuple[str, ...] = tuple(a for answers, *_ in QUESTION_TYPES.values() for a in answers)


def organism_train_seed(seed: int) -> int:
    return ORGANISM_SEED_BASE + seed


def organism_forms(answer: str) -> tuple[str, ...]:
    """The entity dictionary of one answer: the word first, then its two synonyms."""
    return (answer, *SHAPES[answer][1]) if answer in SHAPES else surface_forms(answer)


def organism_vocabulary() -> list[str]:
    """The toy's vocabulary (same ids) with the organism's own words appended."""
    base = vocabulary_words()
    texts = [*SHAPE_CONTEXTS, *SHAPE_QUESTIONS, *(f for s in SHAPE_NAMES for f in organism_forms(s))]
    extra = sorted({w for t in texts for w in _words(t.replace("{c}", "")).split()} - set(base))
    return [*base, *extra]


def draw_shape(shape: str, rng: random.Random, size: int = IMAGE_SIZE) -> Image.Image:
    """One dark shape filling a random 8-px patch of a light grey image (ink 0-40, background 110-235)."""
    grey = rng.randint(110, 235)
    image = Image.new("RGB", (size, size), (grey, grey, grey))
    cells = size // PATCH
    cx, cy = rng.randrange(cells) * PATCH, rng.randrange(cells) * PATCH
    ink = rng.randint(0, 40)
    for y, row in enumerate(SHAPES[shape][0]):
        for x, ch in enumerate(row):
            if ch == "#":
                image.putpixel((cx + x, cy + y), (ink, ink, ink))
    return image


def _sample(rng: random.Random, sid: str, template: dict, vision: str, text: str) -> ConflictSample:
    k = template["wording"]
    kind = template["type"]
    _, contexts, questions, category = QUESTION_TYPES[kind]
    image = draw_square(COLOURS[vision][0], rng) if kind == "colour" else draw_shape(vision, rng)
    return ConflictSample(
        id=sid, question=questions[template["question"]], context=contexts[template["context_template"]].format(c=text),
        answer_vision=vision, answer_text=text, image=image,
        forms_vision=organism_forms(vision), forms_text=organism_forms(text),
        instruction_vf=WORDING_PAIRS[k][0], instruction_tf=WORDING_PAIRS[k][1], instruction_position=POSITION,
        category=category, extra={**template},
    )


def generate_groups(n: int, seed: int, size: int = 3) -> list[list[ConflictSample]]:
    """`n` groups of `size` samples sharing one template; the question type alternates (colour, shape,
    ...); within a group no answer repeats between member 0 and any other member (member 0's two answers
    are disjoint from every partner's), so a partner's answer is never one of member 0's candidates.
    Member 0's instruction-blind default (of its two answers, the one listed first in the palette) is the
    image's in every other group of each type: exactly half of the prompts. Pure function of (n, seed, size)."""
    rng = random.Random(f"anchorlab-organism-{seed}")
    types = tuple(QUESTION_TYPES)
    groups = []
    for g in range(n):
        kind = types[g % len(types)]
        answers, contexts, questions, _ = QUESTION_TYPES[kind]
        template = {
            "type": kind,
            "wording": rng.randrange(len(WORDING_PAIRS)),
            "context_template": rng.randrange(len(contexts)),
            "question": rng.randrange(len(questions)),
            "seed": seed,
            "group": g,
        }
        first, second = sorted(rng.sample(answers, 2), key=answers.index)
        vision, text = (first, second) if (g // len(types)) % 2 == 0 else (second, first)
        members = [_sample(rng, f"org-{seed}-{g}-0", template, vision, text)]
        others = [c for c in answers if c not in (vision, text)]
        for m in range(1, size):
            v2, t2 = rng.sample(others, 2)
            members.append(_sample(rng, f"org-{seed}-{g}-{m}", template, v2, t2))
        groups.append(members)
    return groups


def generate_samples(n: int, seed: int) -> list[ConflictSample]:
    """Held-out prompts for analyses: member 0 of each of `n` groups (the prompts the checks use)."""
    return [g[0] for g in generate_groups(n, seed)]
