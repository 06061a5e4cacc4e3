"""Data of the model organism (`toy:anchored`, `toy:anchored-flawed`): the toy's colour conflicts in
MC²'s layout (image, "Text context: ...", instruction, question) with instruction wordings that come
in token-length-matched vf/tf pairs, drawn as *groups*: samples sharing every template choice
(wording, context sentence, question) and differing only in their colours and image jitter, so the
members of a group tokenize to the same length and their positions align one to one. Interchange
training and the ground-truth checks splice activations between members of a group (other colours)
and between the two tasks of one sample (the opposite instruction, same length).
"""
from __future__ import annotations

import random

from ..data.sample import ConflictSample
from .data import COLOUR_NAMES, COLOURS, CONTEXTS, QUESTIONS, _words, draw_square, surface_forms, vocabulary_words

# vf / tf wordings in pairs of equal token length (index k of one task matches index k of the other).
WORDING_PAIRS: tuple[tuple[str, str], ...] = (
    ("answer based on the image , not the text .", "answer based on the text , not the image ."),
    ("trust the picture rather than the context .", "trust the context rather than the picture ."),
    ("follow the image content and ignore the text context .", "follow the text context and ignore the image content ."),
    ("use the image , not the text .", "use the text , not the image ."),
    ("rely on the image content rather than the text context .", "rely on the text context rather than the image content ."),
    (_words("In case there is an inconsistency between the text context and the image content, you should follow "
            "the image content rather than the text context."),
     _words("In case there is an inconsistency between the text context and the image content, you should follow "
            "the text context rather than the image content.")),
)
POSITION = "after_context"  # MC²'s order: the buffer needs the image and the context before the instruction
ORGANISM_SEED_BASE = 2_000_000_000  # training pools: ORGANISM_SEED_BASE + seed; evaluation: small seeds


def organism_train_seed(seed: int) -> int:
    return ORGANISM_SEED_BASE + seed


def check_vocabulary() -> None:
    vocab = set(vocabulary_words())
    missing = {w for pair in WORDING_PAIRS for text in pair for w in text.split()} - vocab
    assert not missing, missing


def _sample(rng: random.Random, sid: str, template: dict, vision: str, text: str) -> ConflictSample:
    k = template["wording"]
    return ConflictSample(
        id=sid, question=QUESTIONS[template["question"]], context=CONTEXTS[template["context_template"]].format(c=text),
        answer_vision=vision, answer_text=text, image=draw_square(COLOURS[vision][0], rng),
        forms_vision=surface_forms(vision), forms_text=surface_forms(text),
        instruction_vf=WORDING_PAIRS[k][0], instruction_tf=WORDING_PAIRS[k][1], instruction_position=POSITION,
        category="colour", extra={**template},
    )


def generate_groups(n: int, seed: int, size: int = 3) -> list[list[ConflictSample]]:
    """`n` groups of `size` samples sharing one template; within a group no colour repeats between
    member 0 and any other member (member 0's two colours are disjoint from every partner's), so a
    partner's answer is never one of member 0's candidates. Pure function of (n, seed, size)."""
    rng = random.Random(f"anchorlab-organism-{seed}")
    groups = []
    for g in range(n):
        template = {"wording": rng.randrange(len(WORDING_PAIRS)), "context_template": rng.randrange(len(CONTEXTS)),
                    "question": rng.randrange(len(QUESTIONS)), "seed": seed, "group": g}
        vision, text = rng.sample(COLOUR_NAMES, 2)
        members = [_sample(rng, f"org-{seed}-{g}-0", template, vision, text)]
        others = [c for c in COLOUR_NAMES if c not in (vision, text)]
        for m in range(1, size):
            v2, t2 = rng.sample(others, 2)
            members.append(_sample(rng, f"org-{seed}-{g}-{m}", template, v2, t2))
        groups.append(members)
    return groups


def generate_samples(n: int, seed: int) -> list[ConflictSample]:
    """Held-out prompts for analyses: member 0 of each of `n` groups (the prompts the checks use)."""
    return [g[0] for g in generate_groups(n, seed)]
