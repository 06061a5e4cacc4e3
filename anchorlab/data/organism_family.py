"""Data of the organism family (`toy:organism-*`): the organism's colour / shape conflicts (data/organism.py)
with instructions drawn from a template pool, at every instruction position and with several context prefixes.

Instruction pairs: a template with slots {m} (the followed modality's noun), {o} (the other's) and, for
clauses that name both in a fixed order, {v} / {t}; filled with a NOUN_PAIRS pair (vision noun, text noun)
of equal token length, so a sample's vf and tf prompts have the same length and positions (the
instruction-swapped twin of a prompt aligns with it token for token). Layouts: (instruction position,
context prefix). organism_heldout.json names the templates, (template, nouns) combinations and layouts
that training never sees, and hand-written paraphrases outside the pool (`paraphrases`: probes of how far
the instruction reading generalises); `split="heldout"` draws prompts with a held-out pair at a held-out layout.
The `composed` and `composed2` pools (later training stages') add sentences of a clause grammar over the same words.

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
# The composed pool (a later training stage's `pool: composed`): two groups in three take a sentence of a clause
# grammar (compose()) for their template: a clause that follows the modality {m} (a verb of following or a statement
# that it is right), one that rejects the other {o} (the same verbs negated, or a statement that it is wrong), or
# both, joined in either order, a contrast tail ("rather than the {o}") or an elliptical pair ("the {m} is right ; the
# {o} is not"), with an optional lead-in and one filler inserted at random. WORD_CLASSES: the instruction words grouped
# by what they do, each class's most frequent word in TEMPLATES first; organisms/lexicon.py ties each class to that
# word's embedding row. A composed sentence whose class sequence is a held-out template's or that of a probe that
# organism_heldout.json's pool_excludes names for its pool is dropped, so no such probe is trained, even up to a
# synonym. `pool: composed2` is the same grammar with more frames (compose()), and redraws a sentence that would
# train a held-out pair.
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
GOOD = ("right", "correct")
FOLLOW_VERBS = ("use", "trust", "follow", "rely on", "go with", "look at", "answer from", "answer with",
                "answer based on", "answer according to", "look only at", "rely only on", "go only with")
FOLLOW_LEADS = ("", "", "", "you should ", "you must ", "only ")
REJECT_LEADS = ("do not ", "never ", "you should not ", "you must not ", "you should never ")
JOINERS = (" , ", " ; ", " and ")
LEAD_INS = ("in this case , ", "to answer this question , ", "when the {t} and the {v} disagree , ",
            "when there is an inconsistency , ", "in case of an inconsistency , ")
# composed2 also mentions the two modalities neutrally, in either order (a lead-in is no instruction)
LEAD_INS_2 = (*LEAD_INS, "when the {o} and the {m} disagree , ", "when the {m} and the {o} disagree , ",
              "in case the {o} and the {m} disagree , ", "the {o} and the {m} disagree ; ",
              "the {m} and the {o} disagree , ", "the {t} and the {v} disagree ; ")
PURPOSES = (" to answer", " to answer this question", " to answer the question")  # composed2: "use the X to answer"
FILLERS: tuple[str, ...] = ("the", "this", "so", "only", "you", "should", "must", "answer", "question", "that",
                            "there", "what", "is", "in", "on", "at", "to", "of", "a", "and", "based", "according")
POOLS = ("base", "composed", "composed2")
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
    pair. composed2 redraws it; composed did not (two shipped stages drew one such group, docs/models.md), and is
    kept as it was so that its stages retrain as shipped."""
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


def _object(rng: random.Random, slot: str) -> str:
    return rng.choice((f"the {slot}", f"the {slot}", f"what the {slot} shows", f"what the {slot} says",
                       f"what you see in the {slot}", f"only the {slot}"))


def _subject(rng: random.Random, slot: str, v2: bool = False) -> str:
    return rng.choice((f"the {slot}", f"the {slot}", f"what the {slot} says", f"what the {slot} shows",
                       f"the answer in the {slot}", *((f"what you see in the {slot}",) if v2 else ())))


def _statement(rng: random.Random, slot: str, right: bool, v2: bool = False) -> str:
    """A statement that `slot` is right (or wrong): a subject naming it and a predicate, or the answer's place (`v2`,
    composed2: more places)."""
    g, verb = rng.choice(GOOD), rng.choice(("use", "trust", "follow"))
    if rng.random() < 0.2:
        places = ((f"the {g} answer is in the {slot}", f"the answer is in the {slot}",
                   f"the {g} answer comes from the {slot}", f"the answer comes from the {slot}") if right else
                  (f"the {g} answer is not in the {slot}", f"the answer is not in the {slot}",
                   f"the answer is not what the {slot} says", f"the {g} answer is not what the {slot} shows"))
        if v2:
            places += ((f"the answer is what the {slot} says", f"the {g} answer is what the {slot} shows",
                        f"there is the {g} answer in the {slot}") if right else
                       (f"there is a wrong answer in the {slot}", f"the {slot} does not have the {g} answer",
                        f"the {slot} may have the wrong answer", f"the answer in the {slot} is wrong"))
        return rng.choice(places)
    predicate = rng.choice((f"is {g}", f"shows the {g} answer", "shows the answer", f"shows what is {g}",
                            f"is what you should {verb}", f"is the {g} answer") if right else
                           ("is wrong", "may be wrong", f"is not {g}", f"may not be {g}", "shows the wrong answer",
                            f"does not show the {g} answer", "does not show the answer",
                            f"is not what you should {verb}",
                            f"is not the {g} answer"))
    return f"{_subject(rng, slot, v2)} {predicate}"


def _follows(rng: random.Random, slot: str, verbal: bool = False, v2: bool = False) -> str:
    """A clause that follows `slot`: a verb of following, or (unless `verbal`) a statement that it is right."""
    if verbal or rng.random() < 0.5:
        return _purpose(rng, f"{rng.choice(FOLLOW_LEADS)}{rng.choice(FOLLOW_VERBS)} {_object(rng, slot)}", v2)
    return _statement(rng, slot, True, v2)


def _purpose(rng: random.Random, clause: str, v2: bool) -> str:
    """composed2: now and then a verb clause ends with its purpose ("... to answer this question")."""
    return clause + rng.choice(PURPOSES) if v2 and rng.random() < 0.15 else clause


def _rejects(rng: random.Random, slot: str, v2: bool = False) -> str:
    """A clause that rejects `slot`: a negated verb of following, `ignore`, or a statement that it is wrong."""
    r = rng.random()
    if r < 0.3:
        return _purpose(rng, f"{rng.choice(REJECT_LEADS)}{rng.choice(FOLLOW_VERBS)} {_object(rng, slot)}", v2)
    if r < 0.4:
        return f"{rng.choice(('', 'you should ', 'you must '))}ignore {_object(rng, slot)}"
    return _statement(rng, slot, False, v2)


def _elliptical(rng: random.Random, v2: bool = False) -> str:
    """A statement about one modality, then the other named with the predicate left out (its polarity reversed)."""
    g, j = rng.choice(GOOD), rng.choice((" , ", " ; ", " and "))
    m, o = _subject(rng, "{m}", v2), _subject(rng, "{o}", v2)
    return rng.choice((f"{m} is {g}{j}{o} is not", f"{o} is not {g}{j}{m} is", f"{o} is wrong{j}{m} is not",
                       f"{m} shows the answer{j}{o} does not", f"{o} does not show the answer{j}{m} does",
                       f"{m} , not {o} , is {g}", f"{o} , not {m} , is wrong", f"{m} is {g} , not {o}",
                       f"{o} is wrong , not {m}", f"{m} and not {o} is {g}"))


KINDS = (0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5)  # 1: one rejecting clause alone, the hardest to read, drawn most
KINDS_2 = (*KINDS, 6, 6)  # composed2: 6, the contrast fronted ("rather than the {o} , use the {m}")


def compose(rng: random.Random, pool: str = "composed") -> str:
    """One sentence of a composed pool's clause grammar (slots {m}, {o}, and {t} / {v} in a lead-in). composed2 adds
    neutral lead-ins in either order, fronted contrasts, purpose tails, "what you see in the X" as a subject and
    statements of where the answer is; composed draws as it always did."""
    v2 = pool == "composed2"
    kind = rng.choice(KINDS_2 if v2 else KINDS)
    if kind == 0:
        body = _follows(rng, "{m}", v2=v2)
    elif kind == 1:
        body = _rejects(rng, "{o}", v2)
    elif kind == 2:
        tail = rng.choice((" , not ", " and not ", " rather than ", " instead of ", " , and not "))
        body = f"{_follows(rng, '{m}', verbal=True)}{tail}{_object(rng, '{o}')}"
    elif kind == 3:
        body = f"{_follows(rng, '{m}', v2=v2)}{rng.choice(JOINERS)}{_rejects(rng, '{o}', v2)}"
    elif kind == 4:
        body = f"{_rejects(rng, '{o}', v2)}{rng.choice((*JOINERS, ' , so ', ' so '))}{_follows(rng, '{m}', v2=v2)}"
    elif kind == 5:
        body = _elliptical(rng, v2)
    else:
        front = rng.choice(("rather than ", "instead of ", "not "))
        body = f"{front}{_object(rng, '{o}')} , {_follows(rng, '{m}', verbal=True, v2=v2)}"
    if rng.random() < (0.25 if v2 else 0.15):
        body = rng.choice(LEAD_INS_2 if v2 else LEAD_INS) + body
    words = body.split(" ")
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words) + 1), rng.choice(FILLERS))
    return " ".join(words) + " ."


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
                    pool == "composed2" and fill(template, vision, text) in _heldout_pairs()):
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
