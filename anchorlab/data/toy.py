"""The `toy` data source: synthetic colour conflicts (docs/method.md §1) drawn deterministically from a seed.

Each sample's image shows one coloured square on a grey background; the text context asserts a
different colour; the instruction wording and its position vary per sample. Every word used here
is in the toy vocabulary (build.py derives the vocabulary from these lists), written lowercase
with punctuation as separate words, so the word-level tokenizer never meets an unknown word.

Seeds: `generate_samples(n, seed)` is a pure function of its arguments, each seed its own stream
(ids `toy-<seed>-<i>`). Training draws its pool from `train_data_seed(seed)` = TRAIN_SEED_BASE +
seed, so every seed below TRAIN_SEED_BASE gives samples the models never trained on. train.py
evaluates a model trained with seed s on `generate_samples(n_eval, s)`: for the shipped models
(s = 0) these are the samples a recipe with `data: {source: toy}` and seed 0 analyses.
"""
from __future__ import annotations

import random
import re

from PIL import Image

from .prompt_text import MC2_INSTRUCTIONS, OPTION_LETTERS, OPTION_PROMPT
from .sample import ConflictSample

IMAGE_SIZE = 32
TRAIN_SEED_BASE = 1_000_000_000


def train_data_seed(seed: int) -> int:
    """The data seed of the training pool for model seed `seed`: disjoint from evaluation seeds."""
    return TRAIN_SEED_BASE + seed


# colour word -> (RGB, two more in-vocabulary surface forms for the entity dictionary)
COLOURS: dict[str, tuple[tuple[int, int, int], tuple[str, str]]] = {
    "red": ((215, 35, 35), ("crimson", "scarlet")),
    "green": ((40, 165, 60), ("emerald", "lime")),
    "blue": ((35, 70, 215), ("azure", "navy")),
    "yellow": ((240, 220, 40), ("golden", "lemon")),
    "orange": ((245, 135, 25), ("amber", "tangerine")),
    "purple": ((135, 45, 175), ("violet", "lilac")),
    "pink": ((245, 125, 190), ("rose", "magenta")),
    "brown": ((125, 75, 35), ("chocolate", "tan")),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

CONTEXTS = (
    "the square is {c} .",
    "the square in the picture is {c} .",
    "according to the caption , the square is {c} .",
    "someone wrote that the square is {c} .",
    "this image shows a {c} square on a grey background .",
    "the description says the colour of the square is {c} .",
)
QUESTIONS = (
    "what color is the square ?",
    "what is the colour of the square ?",
    "which colour does the square have ?",
)


def _words(text: str) -> str:
    """Lowercase, punctuation split off: the form the toy tokenizer and vocabulary expect."""
    return " ".join(re.findall(r"\w+|[^\w\s]", text.lower()))


# Several wordings per task; the last one is the MC² authors' string (the default PromptStyle's),
# so the toy also follows prompts built without per-sample instructions.
INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "vf": (
        "answer based on the image , not the text .",
        "trust the picture rather than the context .",
        "follow the image content and ignore the text context .",
        "use what you see in the image .",
        _words(MC2_INSTRUCTIONS["vf"]),
    ),
    "tf": (
        "answer based on the text , not the image .",
        "trust the context rather than the picture .",
        "follow the text context and ignore the image content .",
        "use what the text says .",
        _words(MC2_INSTRUCTIONS["tf"]),
    ),
}
POSITIONS = ("before_context", "after_context", "after_question")


def surface_forms(colour: str) -> tuple[str, ...]:
    """The entity dictionary of one answer: the colour word first, then its synonyms."""
    return (colour, *COLOURS[colour][1])


def draw_square(rgb: tuple[int, int, int], rng: random.Random, size: int = IMAGE_SIZE) -> Image.Image:
    """A jittered square (side 7/16..5/8 of the image: most of some 8-px patch is pure colour) on grey."""
    grey = rng.randint(20, 235)
    image = Image.new("RGB", (size, size), (grey, grey, grey))
    side = rng.randint(size * 7 // 16, size * 5 // 8)
    x, y = rng.randint(0, size - side), rng.randint(0, size - side)
    colour = tuple(max(0, min(255, v + rng.randint(-10, 10))) for v in rgb)
    image.paste(colour, (x, y, x + side, y + side))
    return image


def generate_samples(n: int, seed: int, colours: tuple[str, ...] = COLOUR_NAMES) -> list[ConflictSample]:
    """`n` conflict samples, a pure function of (n, seed, colours); `extra` records every choice."""
    rng = random.Random(f"anchorlab-toy-{seed}")
    out = []
    for i in range(n):
        vision, text = rng.sample(colours, 2)
        wording_vf = rng.randrange(len(INSTRUCTIONS["vf"]))
        wording_tf = rng.randrange(len(INSTRUCTIONS["tf"]))
        position = rng.choice(POSITIONS)
        context_template = rng.randrange(len(CONTEXTS))
        question = rng.randrange(len(QUESTIONS))
        image = draw_square(COLOURS[vision][0], rng)
        out.append(
            ConflictSample(
                id=f"toy-{seed}-{i}",
                question=QUESTIONS[question],
                context=CONTEXTS[context_template].format(c=text),
                answer_vision=vision,
                answer_text=text,
                image=image,
                forms_vision=surface_forms(vision),
                forms_text=surface_forms(text),
                instruction_vf=INSTRUCTIONS["vf"][wording_vf],
                instruction_tf=INSTRUCTIONS["tf"][wording_tf],
                instruction_position=position,
                category="colour",
                extra={"wording_vf": wording_vf, "wording_tf": wording_tf, "context_template": context_template,
                       "question": question, "seed": seed},
            )
        )
    return out


def vocabulary_words() -> list[str]:
    """Every word of the toy data, the chat template, the default PromptStyle and the two-option
    format (the toy is not trained on that format, but its prompts then tokenize without <unk>)."""
    texts = [*CONTEXTS, *QUESTIONS, *INSTRUCTIONS["vf"], *INSTRUCTIONS["tf"], "user : assistant : text context :",
             OPTION_PROMPT, *OPTION_LETTERS]
    words = {w for t in texts for w in _words(t.replace("{c}", "")).split()}
    words.update(w for c in COLOUR_NAMES for w in surface_forms(c))
    words.update({"grey", "gray", "image", "square", "color", "colour", "!"})
    return sorted(words)
