"""The clause grammar of the organism family's composed pools (`compose`): sentences over the family's instruction
words with slots {m} (the modality to follow), {o} (the other) and {t} / {v} (both, in a lead-in): a clause that
follows {m} (a verb of following or a statement that it is right), one that rejects {o} (the verbs negated, or a
statement that it is wrong), or both in either order, a contrast tail or an elliptical pair, with an optional lead-in
and one filler inserted at random. Each later pool adds frames and leaves the earlier pools' draws unchanged, so that
their shipped stages retrain as they were (tests/unit/test_organisms.py pins the draws); data/organism_family.py
filters and fills the sentences."""
from __future__ import annotations

import random

GRAMMARS = ("composed", "composed2", "composed3", "composed4", "composed5", "composed6")
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
# composed3: more verbs of following, joiners that end a sentence, lead-ins, and short second sentences
VERB_OBJECTS = ("look at", "rely on", "go with", "answer from", "answer with")  # "what you should ..."
VERB_PHRASES = ("be selecting the answer from", "answer the question with", "answer the question from",
                "answer this question with", "only use", "only trust", "only follow")
JOINERS_3 = (" . ", " ! ", " : ", " ; so ")
ASIDE_JOINERS = (*JOINERS, *JOINERS_3, " , so ", " so ")  # between an aside (or a hedge) and an instruction
LEAD_INS_3 = (*LEAD_INS_2, "in this question , ", "between the {m} and the {o} , ", "between the {o} and the {m} , ",
              "there is an inconsistency : ", "the {t} and the {v} may disagree . ", "someone wrote the {o} . ")
ELLIPSES = ("not the {o}", "not from the {o}", "not what the {o} says")  # after a clause that follows {m}
ELLIPSES_M = ("only the {m}", "the {m} is right", "the {m} is correct", "use the {m}")  # after one rejecting {o}
# composed4: hedges, clauses that decide nothing about a modality (either one), and "that" pointing back at a modality
HEDGES = ("may be right or wrong", "may be wrong or right", "may or may not be right", "may or may not be correct",
          "may or may not be wrong", "may be correct or wrong", "may or may not show the answer",
          "may or may not show the right answer")
TAIL_JOINERS = (" ; ", " , ", " . ", " , so ", " ; so ")  # composed5 on: before what follows a question's answer
INTROS = ("someone wrote the {x}", "you have the {x}", "there is the {x}", "there is what the {x} says",
          "the {x} shows an answer")


def _object(rng: random.Random, slot: str, lvl: int = 0) -> str:
    return rng.choice((f"the {slot}", f"the {slot}", f"what the {slot} shows", f"what the {slot} says",
                       f"what you see in the {slot}", f"only the {slot}",
                       *((f"the {slot} only", f"the answer in the {slot}") if lvl >= 2 else ())))


def _subject(rng: random.Random, slot: str, lvl: int = 0) -> str:
    return rng.choice((f"the {slot}", f"the {slot}", f"what the {slot} says", f"what the {slot} shows",
                       f"the answer in the {slot}", *((f"what you see in the {slot}",) if lvl else ()),
                       *((f"only the {slot}",) if lvl >= 2 else ())))


def _statement(rng: random.Random, slot: str, right: bool, lvl: int = 0) -> str:
    """A statement that `slot` is right (or wrong): a subject naming it and a predicate, or the answer's place
    (composed2 on: more places; composed3: a verbless label, "the X : wrong", and more verbs after "what you
    should")."""
    g, verb = rng.choice(GOOD), rng.choice(("use", "trust", "follow", *(VERB_OBJECTS if lvl >= 2 else ())))
    if lvl >= 2 and rng.random() < 0.1:
        return f"the {slot} : " + rng.choice((g, f"the {g} answer", "the answer") if right else
                                             ("wrong", f"not {g}", "not the answer"))
    if rng.random() < 0.2:
        places = ((f"the {g} answer is in the {slot}", f"the answer is in the {slot}",
                   f"the {g} answer comes from the {slot}", f"the answer comes from the {slot}") if right else
                  (f"the {g} answer is not in the {slot}", f"the answer is not in the {slot}",
                   f"the answer is not what the {slot} says", f"the {g} answer is not what the {slot} shows"))
        if lvl:
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
    return f"{_subject(rng, slot, lvl)} {predicate}"


def _follows(rng: random.Random, slot: str, verbal: bool = False, lvl: int = 0) -> str:
    """A clause that follows `slot`: a verb of following, or (unless `verbal`) a statement that it is right."""
    if verbal or rng.random() < 0.5:
        verbs = FOLLOW_VERBS + (VERB_PHRASES if lvl >= 2 else ())
        return _purpose(rng, f"{rng.choice(FOLLOW_LEADS)}{rng.choice(verbs)} {_object(rng, slot, lvl)}", lvl)
    return _statement(rng, slot, True, lvl)


def _purpose(rng: random.Random, clause: str, lvl: int) -> str:
    """composed2 on: now and then a verb clause ends with its purpose ("... to answer this question")."""
    return clause + rng.choice(PURPOSES) if lvl and rng.random() < 0.15 else clause


def _rejects(rng: random.Random, slot: str, lvl: int = 0) -> str:
    """A clause that rejects `slot`: a negated verb of following, `ignore`, or a statement that it is wrong."""
    r = rng.random()
    if r < 0.3:
        verbs = FOLLOW_VERBS + (VERB_PHRASES if lvl >= 2 else ())
        return _purpose(rng, f"{rng.choice(REJECT_LEADS)}{_unonly(rng, verbs, lvl)} {_rejected(rng, slot, lvl)}", lvl)
    if r < 0.4:
        return f"{rng.choice(('', 'you should ', 'you must '))}ignore {_rejected(rng, slot, lvl)}"
    return _statement(rng, slot, False, lvl)


def _unonly(rng: random.Random, verbs: tuple[str, ...], lvl: int) -> str:
    """A verb to negate: composed3 leaves out "only" ("do not only use the X" would mean "use it too")."""
    return rng.choice(tuple(v for v in verbs if "only" not in v) if lvl >= 2 else verbs)


def _rejected(rng: random.Random, slot: str, lvl: int) -> str:
    """The object of a rejecting clause: composed3 redraws "only the X" / "the X only" (see _unonly)."""
    obj = _object(rng, slot, lvl)
    while lvl >= 2 and "only" in obj:
        obj = _object(rng, slot, lvl)
    return obj


def _elliptical(rng: random.Random, lvl: int = 0) -> str:
    """A statement about one modality, then the other named with the predicate left out (its polarity reversed)."""
    g, j = rng.choice(GOOD), rng.choice((" , ", " ; ", " and ", *((" . ",) if lvl >= 2 else ())))
    m, o = _subject(rng, "{m}", lvl), _subject(rng, "{o}", lvl)
    return rng.choice((f"{m} is {g}{j}{o} is not", f"{o} is not {g}{j}{m} is", f"{o} is wrong{j}{m} is not",
                       f"{m} shows the answer{j}{o} does not", f"{o} does not show the answer{j}{m} does",
                       f"{m} , not {o} , is {g}", f"{o} , not {m} , is wrong", f"{m} is {g} , not {o}",
                       f"{o} is wrong , not {m}", f"{m} and not {o} is {g}"))


def _both(rng: random.Random, conjunction: str) -> str:
    """"the X and the Y" (or "or"), the two modalities in either order (composed3)."""
    a, b = rng.sample(("{m}", "{o}"), 2)
    return f"the {a} {conjunction} the {b}"


def _question(rng: random.Random) -> str:
    """composed3: a question naming both modalities, answered with the one to follow (or the wrong one)."""
    good = rng.random() < 0.7
    ask = rng.choice((f"which is {rng.choice(GOOD)}", "which should you use", "which should you trust",
                      "which should you follow", "which shows the answer") if good else
                     ("which is wrong", f"which is not {rng.choice(GOOD)}", "which should you ignore"))
    both = _both(rng, "or")
    said = "{m}" if good else "{o}"
    return rng.choice((f"{ask} , {both} ? the {said}", f"{ask} : {both} ? the {said}", f"{ask} ? the {said}",
                       f"{ask} , {both} ? {_follows(rng, '{m}', lvl=2) if good else _rejects(rng, '{o}', 2)}"))


def _aside(rng: random.Random) -> str:
    """composed3: a clause that is no instruction (who wrote a modality, that the two disagree)."""
    return rng.choice(("someone wrote the {o}", "someone wrote the {m}", "someone wrote the {t}",
                       "there is an inconsistency", f"there is an inconsistency between {_both(rng, 'and')}",
                       f"{_both(rng, 'and')} disagree", f"you have {_both(rng, 'and')}",
                       "the {o} and the {m} may disagree", "there is a question"))


def _instruction(rng: random.Random, lvl: int) -> str:
    """composed4: one instruction of the earlier clauses (follow {m}, reject {o}, both, an elliptical pair)."""
    r = rng.random()
    if r < 0.3:
        return _follows(rng, "{m}", lvl=lvl)
    if r < 0.6:
        return _rejects(rng, "{o}", lvl)
    if r < 0.85:
        return f"{_follows(rng, '{m}', lvl=lvl)}{rng.choice(JOINERS)}{_rejects(rng, '{o}', lvl)}"
    return _elliptical(rng, lvl)


def _hedged(rng: random.Random, lvl: int) -> str:
    """composed4: a hedge about either modality ("the {o} may be right or wrong") before or after an instruction;
    the hedge decides nothing, the instruction does."""
    slot = rng.choice(("{o}", "{o}", "{m}"))
    hedge = f"{_subject(rng, slot, 1)} {rng.choice(HEDGES)}"  # no "only the X" before a hedge
    j = rng.choice(ASIDE_JOINERS)
    said = _instruction(rng, lvl)
    return f"{hedge}{j}{said}" if rng.random() < 0.7 else f"{said}{rng.choice((*JOINERS, *JOINERS_3))}{hedge}"


def _pointed(rng: random.Random, lvl: int) -> str:
    """composed4: a modality named without a verdict, then "that" judged ("someone wrote the {o} ; that is wrong"),
    now and then followed by a clause about the other modality."""
    rejected = rng.random() < 0.65
    intro = rng.choice(INTROS).format(x="{o}" if rejected else "{m}")
    g, verb = rng.choice(GOOD), rng.choice(("use", "trust", "follow", "rely on", "go with", "answer from"))
    that = rng.choice(("that is wrong", f"that is not {g}", "that may be wrong", "that is not the answer",
                       f"{rng.choice(REJECT_LEADS)}{verb} that", "ignore that", f"that is not what you should {verb}")
                      if rejected else
                      (f"that is {g}", f"{rng.choice(FOLLOW_LEADS)}{verb} that", "that is the answer",
                       f"that shows the {g} answer", f"that is what you should {verb}"))
    body = f"{intro}{rng.choice((' ; ', ' , ', ' . ', ' : ', ' , so '))}{that}"
    if rng.random() < 0.6:
        other = (_follows(rng, "{m}", lvl=lvl) if rejected else
                 rng.choice((_rejects(rng, "{o}", lvl), *ELLIPSES)))
        body += f"{rng.choice((' , so ', ' ; ', ' . ', ' , '))}{other}"
    return body


def _yes_no(rng: random.Random, lvl: int) -> str:
    """composed5: a yes/no question about one modality, answered with the polarity the instruction needs ("should
    you use the {o} ? you should not", "is the {m} right ? the {m} is"), now and then followed by an instruction
    about the other modality or the same verb for it ("the {m} is"). The vocabulary has no "yes" or "no": the answer
    repeats the question's verb, or says "never" or "not the X"."""
    about_m = rng.random() < 0.5
    x = "{m}" if about_m else "{o}"
    g = rng.choice(GOOD)
    form = rng.randrange(5)
    # each form's `echo`: its verb for the other modality ("the {m} is" after "is the {o} right ? not the {o}")
    if form == 0:  # a modal verb of following
        modal, verb = rng.choice(("should", "must")), rng.choice(FOLLOW_VERBS[:10])
        ask = f"{modal} you {verb} {_rejected(rng, x, lvl)}"
        said = (rng.choice((f"you {modal}", f"you {modal} {verb} the {x}", f"only the {x}")) if about_m else
                rng.choice((f"you {modal} not", "never", f"you should never {verb} the {x}", f"not the {x}")))
        echo = (f"{verb} the {{m}}",) if not about_m else ()
    elif form in (1, 2):  # whether it is right (1) or wrong (2)
        right = form == 1
        word = g if right else "wrong"
        ask = f"is {_subject(rng, x, 1)} {word}"
        said = rng.choice(((f"the {x} is", f"the {x} is {word}", f"that is {word}") if about_m == right else
                           (f"the {x} is not", f"the {x} is not {word}", "never", f"not the {x}")))
        echo = (("the {o} is not",) if about_m else ("the {m} is",)) if right else \
            (("the {o} is",) if about_m else ("the {m} is not",))
    elif form == 3:  # whether it shows the answer
        ask = (f"does {rng.choice((f'the {x}', f'what the {x} says', f'what you see in the {x}'))} show the "
               f"{rng.choice((f'{g} ', ''))}answer")
        said = f"the {x} does" if about_m else rng.choice((f"the {x} does not", "never", f"not the {x}"))
        echo = ("the {m} does",) if not about_m else ("the {o} does not",)
    else:  # whether the answer is in it
        ask = f"is the {rng.choice((f'{g} ', ''))}answer in the {x}"
        said = rng.choice(((f"the answer is in the {x}", f"in the {x}") if about_m else
                           (f"the answer is not in the {x}", f"not in the {x}", "never")))
        echo = ("not in the {o}",) if about_m else ("in the {m}",)
    body = f"{ask} ? {said}"
    if rng.random() < 0.6:
        other = (rng.choice((_rejects(rng, "{o}", lvl), *ELLIPSES, *echo)) if about_m else
                 rng.choice((_follows(rng, "{m}", lvl=lvl), *ELLIPSES_M, *echo)))
        body += f"{rng.choice(TAIL_JOINERS)}{other}"
    return body


def _which(rng: random.Random, lvl: int) -> str:
    """composed6: a question naming both modalities whose polarity (which is right / which is wrong) is drawn
    independently of its verb, answered with the modality it asks for: half the answers name the rejected modality
    ("which should you not use , the {m} or the {o} ? the {o}"), some with a negation ("which is right ? not the
    {o}"); now and then followed by an instruction of the opposite polarity."""
    good, g = rng.random() < 0.5, rng.choice(GOOD)
    verb = rng.choice(FOLLOW_VERBS[:10])
    copula, shows = rng.random() < 0.4, rng.random() < 0.3
    of = rng.random() < 0.3  # "which of the {m} and the {o} ...", no choice named after it
    who = f"which of {_both(rng, 'and')}" if of else "which"
    if copula:
        word = rng.choice((g, g, f"the {g} answer", "what you should use") if good else
                          ("wrong", "wrong", f"not {g}", "the wrong answer", "not what you should use"))
        ask = f"{who} is {word}"
    elif shows:
        ask = who + rng.choice((" shows the answer", f" shows the {g} answer") if good else
                               (" does not show the answer", " shows the wrong answer",
                                f" does not show the {g} answer"))
    else:
        act = (rng.choice((verb, f"{verb} to answer")) if good else
               rng.choice((f"not {verb}", f"never {verb}", "ignore")))
        ask = f"{who} {rng.choice(('should', 'must'))} you {act}"
    said, other = ("{m}", "{o}") if good else ("{o}", "{m}")
    answers = [f"the {said}", f"the {said}", f"not the {other}"]
    if copula:
        answers += [f"the {said} is", f"the {said} is {word}"]
    frames = ((f"{ask} ? ",) if of else
              (f"{ask} , {_both(rng, 'or')} ? ", f"{ask} : {_both(rng, 'or')} ? ", f"{ask} ? ",
               f"{_both(rng, 'or')} : {ask} ? ", f"between {_both(rng, 'and')} , {ask} ? "))
    body = rng.choice(frames) + rng.choice(answers)
    if rng.random() < 0.5:
        tail = (rng.choice((_rejects(rng, "{o}", lvl), *ELLIPSES)) if good else
                rng.choice((_follows(rng, "{m}", lvl=lvl), *ELLIPSES_M)))
        body += f"{rng.choice(TAIL_JOINERS)}{tail}"
    return body


def _judged(rng: random.Random, lvl: int) -> str:
    """composed6: a yes/no question about one modality (is it right or wrong, does it show the right or the wrong
    answer, should you use or ignore it) answered for it and then, most of the time, for the other modality with the
    opposite polarity ("is the {m} wrong ? the {m} is not ; the {o} is")."""
    x, y = rng.sample(("{m}", "{o}"), 2)
    bad = rng.random() < 0.5  # the question asks whether x is wrong (to be ignored) rather than right (to be used)
    yes = (x == "{m}") != bad  # what the answer says of x
    g, form = rng.choice(GOOD), rng.randrange(3)
    if form == 2:  # should you use / ignore it: the answer's verb is the question's modal
        modal, verb = rng.choice(("should", "must")), rng.choice(FOLLOW_VERBS[:10])
        act = "ignore" if bad else verb
        said = rng.choice((f"you {modal}", f"you {modal} {act} the {x}") if yes else
                          (f"you {modal} not", "never", f"not the {x}"))
        if rng.random() < 0.8:
            said += rng.choice((" ; ", " , ", " . ", " , so ")) + (f"do not {act} the {y}" if yes else
                                                                 f"{act} the {y}")
        return f"{modal} you {act} the {x} ? {said}"
    word = "wrong" if bad else g
    if form == 0:
        ask, aux = f"is {_subject(rng, x, 1)} {word}", "is"
    else:
        ask, aux = f"does {rng.choice((f'the {x}', f'what the {x} says'))} show the {word} answer", "does"

    def say(z: str, on: bool) -> str:
        return f"the {z} {aux}" if on else rng.choice((f"the {z} {aux} not", f"not the {z}"))

    body = f"{ask} ? {say(x, yes)}"
    if rng.random() < 0.8:
        body += f"{rng.choice((' ; ', ' , ', ' . ', ' and '))}{say(y, not yes)}"
    return body


def _asked(rng: random.Random, lvl: int) -> str:
    """composed6: one or two questions without the modalities named ("what should you ignore ? the {o}"), each
    answered with the modality it asks for; two ask opposite things."""
    g, verb = rng.choice(GOOD), rng.choice(FOLLOW_VERBS[:10])
    pos = (f"what should you {verb}", f"what is {g}", f"what shows the {g} answer", "what should you answer from")
    neg = ("what should you ignore", "what is wrong", f"what should you not {verb}", "what shows the wrong answer",
           f"what is not {g}")
    parts = [(rng.choice(pos), "{m}"), (rng.choice(neg), "{o}")]
    rng.shuffle(parts)
    if rng.random() < 0.4:
        parts = parts[:1]
    return rng.choice((" . ", " ; ", " ! ")).join(f"{q} ? the {a}" for q, a in parts)


KINDS = (0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5)  # 1: one rejecting clause alone, the hardest to read, drawn most
KINDS_2 = (*KINDS, 6, 6)  # composed2: 6, the contrast fronted ("rather than the {o} , use the {m}")
KINDS_3 = (*KINDS_2, 7, 7, 8, 8, 8, 9, 9)  # composed3: 7 a question and its answer, 8 an aside, 9 two sentences
KINDS_4 = (*KINDS_3, 10, 10, 10, 11, 11, 11)  # composed4: 10 a hedge beside an instruction, 11 "that" pointing back
KINDS_5 = (*KINDS_4, 12, 12, 12, 12)  # composed5: 12 a yes/no question about one modality and its answer
# composed6: 13 a question whose polarity is drawn apart from its verb, 14 a yes/no question answered for both
# modalities, 15 questions without the modalities named
KINDS_6 = (*KINDS_5, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 15, 15)


def compose(rng: random.Random, pool: str = "composed") -> str:
    """One sentence of a composed pool's clause grammar (slots {m}, {o}, and {t} / {v} in a lead-in). composed2 adds
    neutral lead-ins in either order, fronted contrasts, purpose tails, "what you see in the X" as a subject and
    statements of where the answer is; composed3 adds questions with their answer, asides that are no instruction,
    two sentences, "!" , ":" and more verbs; composed4 adds hedges beside an instruction and "that" pointing back at
    a modality; composed5 adds yes/no questions about one modality with their answer; composed6 adds questions
    whose answer names the rejected modality as often as the followed one; each earlier pool draws as it always
    did."""
    lvl = GRAMMARS.index(pool)
    kind = rng.choice((KINDS, KINDS_2, KINDS_3, KINDS_4, KINDS_5, KINDS_6)[lvl])
    if kind == 0:
        body = _follows(rng, "{m}", lvl=lvl)
    elif kind == 1:
        body = _rejects(rng, "{o}", lvl)
    elif kind == 2:
        tail = rng.choice((" , not ", " and not ", " rather than ", " instead of ", " , and not "))
        # composed2 drew this kind with composed's clauses; composed3 with its own
        body = f"{_follows(rng, '{m}', verbal=True, lvl=lvl if lvl >= 2 else 0)}{tail}{_rejected(rng, '{o}', lvl)}"
    elif kind == 3:
        joiners = JOINERS + (JOINERS_3 if lvl >= 2 else ())
        body = f"{_follows(rng, '{m}', lvl=lvl)}{rng.choice(joiners)}{_rejects(rng, '{o}', lvl)}"
    elif kind == 4:
        joiners = (*JOINERS, " , so ", " so ", *(JOINERS_3 if lvl >= 2 else ()))
        body = f"{_rejects(rng, '{o}', lvl)}{rng.choice(joiners)}{_follows(rng, '{m}', lvl=lvl)}"
    elif kind == 5:
        body = _elliptical(rng, lvl)
    elif kind == 6:
        front = rng.choice(("rather than ", "instead of ", "not "))
        body = f"{front}{_rejected(rng, '{o}', lvl)} , {_follows(rng, '{m}', verbal=True, lvl=lvl)}"
    elif kind == 7:
        body = _question(rng)
    elif kind == 8:
        said = rng.choice((_follows(rng, "{m}", lvl=lvl), _rejects(rng, "{o}", lvl), _elliptical(rng, lvl)))
        j = rng.choice(ASIDE_JOINERS)
        body = f"{_aside(rng)}{j}{said}" if rng.random() < 0.75 else f"{said}{rng.choice(JOINERS_3)}{_aside(rng)}"
    elif kind == 9:
        first, second = _follows(rng, "{m}", lvl=lvl), rng.choice((_rejects(rng, "{o}", lvl), *ELLIPSES))
        if rng.random() < 0.5:
            first, second = _rejects(rng, "{o}", lvl), rng.choice((_follows(rng, "{m}", lvl=lvl), *ELLIPSES_M))
        body = f"{first}{rng.choice((' . ', ' ! '))}{second}"
    elif kind == 10:
        body = _hedged(rng, lvl)
    elif kind == 11:
        body = _pointed(rng, lvl)
    elif kind == 12:
        body = _yes_no(rng, lvl)
    elif kind == 13:
        body = _which(rng, lvl)
    elif kind == 14:
        body = _judged(rng, lvl)
    else:
        body = _asked(rng, lvl)
    if rng.random() < (0.15 if lvl == 0 else 0.25):
        body = rng.choice((LEAD_INS, LEAD_INS_2)[lvl] if lvl < 2 else LEAD_INS_3) + body
    words = body.split(" ")
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words) + 1), rng.choice(FILLERS))
    end = " !" if lvl >= 2 and rng.random() < 0.2 else " ."
    return " ".join(words) + end
