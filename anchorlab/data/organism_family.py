"""Data of the organism family (`toy:organism-*`): the organism's colour / shape conflicts (data/organism.py)
with instructions drawn from a template pool, at every instruction position and with several context prefixes.

Instruction pairs: a template with slots {m} (the followed modality's noun), {o} (the other's) and, for
clauses that name both in a fixed order, {v} / {t}; filled with a NOUN_PAIRS pair (vision noun, text noun)
of equal token length, so a sample's vf and tf prompts have the same length and positions (the
instruction-swapped twin of a prompt aligns with it token for token). Layouts: (instruction position,
context prefix). organism_heldout.json names the templates, (template, nouns) combinations and layouts
that training never sees, and hand-written paraphrases outside the pool (`paraphrases`: probes of how far
the instruction reading generalises); `split="heldout"` draws prompts with a held-out pair at a held-out layout.
The `composed` to `composed5` pools (later training stages') add sentences of a clause grammar over the same words.

Training draws *groups*: samples sharing every template choice (question type, pair, layout, context
sentence, question) and differing in their answers and images, so all members and both tasks of a group
tokenize to the same length (organisms/ resamples heads between members).
"""
from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path

from .organism import QUESTION_TYPES, draw_shape, organism_forms, organism_vocabulary
from .organism_grammar import GRAMMARS, compose
from .sample import ConflictSample
from .toy import COLOURS, POSITIONS, _words, draw_square

HELDOUT_FILE = Path(__file__).with_name("organism_heldout.json")
FAMILY_SEED_BASE = 3_000_000_000  # training pools: FAMILY_SEED_BASE + seed; held-out prompts: small seeds
TEMPLATES: tuple[str, ...] = (
    "answer based on the {m} , not the {o} .",
    "trust the {m} rather than the {o} .",
    "follow the {m} and ignore the {o} .",
    "use the {m} , not the {o} .",
    "rely on the {m} rather than the {o} .",
    "in case there is an inconsistency between the {t} and the {v} , you should follow the {m} rather than the {o} .",
    "ignore the {o} and answer from the {m} .",
    "do not use the {o} ; use the {m} .",
    "the {o} may be wrong , so trust the {m} .",
    "answer according to the {m} instead of the {o} .",
    "look at the {m} , not at the {o} .",
    "when the {t} and the {v} disagree , go with the {m} .",
    "answer based on the {m} .",
    "use what the {m} shows .",
    "the answer is in the {m} .",
    "only the {m} is right .",
    "ignore the {o} .",
    "the {o} is wrong .",
    "answer from the {m} , not from the {o} .",
    "do not trust the {o} ; trust the {m} .",
    "rely on the {m} , not on the {o} .",
    "go with the {m} , not with the {o} .",
    "follow the {m} , not the {o} .",
    "trust the {m} , not the {o} .",
    "do not follow the {o} ; follow the {m} .",
    "do not rely on the {o} ; rely on the {m} .",
    "do not look at the {o} , look at the {m} .",
    "never use the {o} ; use the {m} .",
    "use the {m} instead of the {o} .",
    "the {m} is right and the {o} is wrong .",
    "the {o} is wrong ; answer from the {m} .",
    "trust only the {m} .",
    "use the {m} and ignore the {o} .",
    "use what you see in the {m} .",
    "do not answer from the {o} ; answer from the {m} .",
    "answer with the {m} , not with the {o} .",
    "use the {m} and not the {o} .",
    "the answer comes from the {m} , not from what the {o} says .",
    "in case there is an inconsistency between the {t} and the {v} , you must rely on the {m} rather than the {o} .",
)
# (vision noun, text noun), equal token lengths
NOUN_PAIRS: tuple[tuple[str, str], ...] = (
    ("image", "text"), ("picture", "context"), ("photo", "caption"), ("image", "description"), ("picture", "text"),
    ("image content", "text context"), ("visual input", "written text"),
)
# The composed pools (later training stages' `pool: composed` to `composed5`): two groups in three take a
# sentence of a clause grammar (organism_grammar.compose) as their template. WORD_CLASSES: the instruction words
# grouped by what they do, each class's most frequent word in TEMPLATES first; organisms/lexicon.py ties each class to
# that word's embedding row. A composed sentence whose class sequence is a held-out template's or that of a probe that
# organism_heldout.json's pool_excludes names for its pool is dropped, so no such probe is trained, even up to a
# synonym; composed2 and the later pools also redraw a sentence that would train a held-out pair.
WORD_CLASSES: dict[str, tuple[str, ...]] = {
    "vision_noun": ("image", "picture", "photo", "visual", "content", "input"),
    "text_noun": ("text", "context", "caption", "description", "written"),
    "negation": ("not", "never", "ignore"),
    "bad": ("wrong",),
    "good": ("right", "correct"),
    "contrast": ("rather", "than", "instead"),
    "follow_verb": ("use", "follow", "trust", "rely", "look", "go", "see"),
    "filler": ("the", "a", "according", "an", "and", "answer", "at", "based", "be", "between", "by", "case", "comes",
               "disagree", "do", "does", "from", "have", "in", "inconsistency", "is", "may",
               "must", "of", "on", "only", "or", "question", "says", "selecting", "should", "show", "shows", "so",
               "someone", "that", "there", "this", "to", "what", "when", "which", "with", "wrote", "you"),
    "full_stop": (".", "!"),
}
POOLS = ("base", *GRAMMARS)
PREFIXES: tuple[str, ...] = ("Text context: ", "Context: ", "Caption: ", "Text: ", "Description: ", "")
Pair = tuple[str, str]  # (vf instruction, tf instruction)
Layout = tuple[str, str]  # (instruction position, context prefix)


def fill(template: str, vision: str, text: str) -> Pair:
    """The (vf, tf) pair of one template and noun pair."""
    return (template.format(m=vision, o=text, v=vision, t=text), template.format(m=text, o=vision, v=vision, t=text))


@cache
def _heldout() -> dict:
    spec = json.loads(HELDOUT_FILE.read_text())
    for t in spec["templates"] + [c["template"] for c in spec["combos"]]:
        if t not in TEMPLATES:
            raise ValueError(f"{HELDOUT_FILE.name}: template {t!r} is not in organism_family.TEMPLATES")
    for c in spec["combos"]:
        if (c["vision"], c["text"]) not in NOUN_PAIRS:
            raise ValueError(f"{HELDOUT_FILE.name}: nouns {(c['vision'], c['text'])!r} are not in NOUN_PAIRS")
    for lay in spec["layouts"]:
        if lay["position"] not in POSITIONS or lay["context_prefix"] not in PREFIXES:
            raise ValueError(f"{HELDOUT_FILE.name}: layout {lay!r} is not a (POSITIONS, PREFIXES) layout")
    return spec


def _entries(split: str) -> list[tuple[str, str, str]]:
    """(template, vision noun, text noun) of every pair of `split`: `train`, those whose template and (template,
    nouns) are not held out; `heldout`, the others."""
    spec = _heldout()
    held = {fill(c["template"], c["vision"], c["text"]) for c in spec["combos"]}
    held |= {fill(t, v, x) for t in spec["templates"] for v, x in NOUN_PAIRS}
    return [(t, v, x) for t in TEMPLATES for v, x in NOUN_PAIRS if (fill(t, v, x) in held) == (split == "heldout")]


def instruction_pairs(split: str) -> list[Pair]:
    return [fill(*e) for e in _entries(split)]


@cache
def _heldout_pairs() -> frozenset[Pair]:
    """A composed sentence can equal a template; filled with a held-out combination's nouns it would train a held-out
    pair. composed2 and the later pools redraw it; composed did not (two shipped stages drew one such group,
    docs/models.md), and is kept as it was so that its stages retrain as shipped."""
    return frozenset(instruction_pairs("heldout"))


def word_class(word: str) -> str:
    """A word's class in WORD_CLASSES, or the word itself (slots, answers, other punctuation)."""
    return _CLASS_OF.get(word, word)


_CLASS_OF = {w: name for name, words in WORD_CLASSES.items() for w in words}


def class_sequence(template: str) -> tuple[str, ...]:
    return tuple(word_class(w) for w in template.split())


@cache
def _never_trained(pool: str) -> frozenset[tuple[str, ...]]:
    """Class sequences no sentence of a composed `pool` may have: the held-out templates' and those of the paraphrase
    probes `pool_excludes` names for it (fixed per pool, so that a probe added later leaves a pool, and a retrain, as
    they were)."""
    spec = _heldout()
    probes = [t for name in spec["pool_excludes"][pool] for t in spec["paraphrases"][name]]
    return frozenset(class_sequence(t) for t in [*spec["templates"], *probes])


def in_pool(template: str, pool: str) -> bool:
    """Whether a composed `pool` may train `template`: its class sequence is not left out, and no noun pair fills it
    into a held-out pair (the stricter form of generate_groups' redraw, for sentences drawn outside a pool's groups)."""
    return class_sequence(template) not in _never_trained(pool) and not any(
        fill(template, v, t) in _heldout_pairs() for v, t in NOUN_PAIRS)


def layouts(split: str) -> list[Layout]:
    held = {(lay["position"], lay["context_prefix"]) for lay in _heldout()["layouts"]}
    return [(p, x) for p in POSITIONS for x in PREFIXES if ((p, x) in held) == (split == "heldout")]


def family_vocabulary() -> list[str]:
    """The organism's vocabulary (toy:anchored's ids) with the family's instruction words appended."""
    base = organism_vocabulary()
    texts = [*TEMPLATES, *(n for pair in NOUN_PAIRS for n in pair), *PREFIXES]
    words = {w for t in texts for w in _words(t.replace("{m}", "").replace("{o}", "").replace("{v}", "")
                                             .replace("{t}", "")).split()}
    return [*base, *sorted(words - set(base))]


def _sample(rng: random.Random, sid: str, t: dict, pair: Pair, layout: Layout, vision: str,
            text: str) -> ConflictSample:
    _, contexts, questions, category = QUESTION_TYPES[t["type"]]
    image = draw_square(COLOURS[vision][0], rng) if t["type"] == "colour" else draw_shape(vision, rng)
    return ConflictSample(
        id=sid, question=questions[t["question"]], context=contexts[t["context_template"]].format(c=text),
        answer_vision=vision, answer_text=text, image=image,
        forms_vision=organism_forms(vision), forms_text=organism_forms(text),
        instruction_vf=pair[0], instruction_tf=pair[1], instruction_position=layout[0], context_prefix=layout[1],
        category=category, extra=dict(t),
    )


def generate_groups(n: int, seed: int, size: int, split: str = "train",
                    pool: str = "base") -> list[list[ConflictSample]]:
    """`n` groups of `size` samples sharing one template choice (pair, layout, question type alternating,
    context sentence, question); answers drawn independently per member. `pool` composed: two of every three pairs
    of question types have a composed sentence for their template (its nouns still the pair's). Pure function of the
    arguments."""
    if pool not in POOLS:
        raise ValueError(f"pool: {pool!r} is not one of {POOLS}")
    rng = random.Random(f"anchorlab-organism-family-{split}-{seed}")
    entries, lays, types = _entries(split), layouts(split), tuple(QUESTION_TYPES)
    groups = []
    for g in range(n):
        kind = types[g % len(types)]
        answers, contexts, questions, _ = QUESTION_TYPES[kind]
        k, j = rng.randrange(len(entries)), rng.randrange(len(lays))
        template, vision, text = entries[k]
        composed = pool != "base" and g // len(types) % 3 != 0
        while composed:
            template = compose(rng, pool)
            if class_sequence(template) not in _never_trained(pool) and not (
                    pool != "composed" and fill(template, vision, text) in _heldout_pairs()):
                break
        t = {"type": kind, "pair": k, "layout": j, "context_template": rng.randrange(len(contexts)),
             "question": rng.randrange(len(questions)), "split": split, "seed": seed, "group": g}
        if composed:
            t["template"] = template
        groups.append([_sample(rng, f"fam-{split}-{seed}-{g}-{m}", t, fill(template, vision, text), lays[j],
                               *rng.sample(answers, 2)) for m in range(size)])
    return groups


def generate_samples(n: int, seed: int, split: str = "heldout") -> list[ConflictSample]:
    """`n` prompts (member 0 of `n` groups): by default held-out pairs at held-out layouts."""
    return [g[0] for g in generate_groups(n, seed, 1, split)]


def family_train_seed(seed: int) -> int:
    return FAMILY_SEED_BASE + seed
