"""Answer entity dictionary -> vocabulary ids for one tokenizer (docs/method.md §1)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import UserError

log = logging.getLogger("anchorlab")


class UnusableSample(UserError):
    """This tokenizer cannot score the sample (no usable token, or both answers share one)."""


def first_token_ids(tokenizer, form: str) -> list[int]:
    """First token of the form, written bare and with a leading space, deduplicated in that order."""
    out: list[int] = []
    for text in (form, " " + form):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if ids and ids[0] not in out and ids[0] != tokenizer.unk_token_id:
            out.append(ids[0])
    return out


@dataclass(frozen=True)
class EntityIds:
    vision: tuple[int, ...]
    text: tuple[int, ...]
    dropped: tuple[str, ...]  # forms whose first token both answers share

    def of(self, modality: str) -> tuple[int, ...]:
        return self.vision if modality == "vision" else self.text


@dataclass(frozen=True)
class FormSplit:
    """Which forms of each answer are usable in one tokenizer, and the ids they reach."""

    forms: dict[str, list[str]]  # modality -> usable forms, in dictionary order
    ids: dict[str, list[int]]  # modality -> their first-token ids, deduplicated
    dropped: list[str]  # forms whose first token the other answer also reaches


def split_forms(tokenizer, forms_vision, forms_text, first_ids=None) -> FormSplit:
    """The rule of docs/method.md §1 without raising: a form whose first token the other answer also reaches
    cannot tell the modalities apart and is dropped; a form with no known token is unusable.
    `first_ids(form)` may be a memoised `first_token_ids` (dict build maps thousands of forms)."""
    first_ids = first_ids or (lambda form: first_token_ids(tokenizer, form))
    per_form = {m: {f: first_ids(f) for f in forms} for m, forms in (("vision", forms_vision), ("text", forms_text))}
    reach = {m: {i for ids in per_form[m].values() for i in ids} for m in per_form}
    shared = reach["vision"] & reach["text"]
    kept_forms: dict[str, list[str]] = {"vision": [], "text": []}
    kept: dict[str, list[int]] = {"vision": [], "text": []}
    dropped: list[str] = []
    for m in ("vision", "text"):
        for form, ids in per_form[m].items():
            if any(i in shared for i in ids):
                dropped.append(form)
                continue
            if ids:
                kept_forms[m].append(form)
            kept[m].extend(i for i in ids if i not in kept[m])
    return FormSplit(kept_forms, kept, dropped)


def entity_ids(tokenizer, forms_vision, forms_text, sample_id: str = "?", warn: bool = True) -> EntityIds:
    """Map both answers' forms to first-token ids; a form whose first token the other answer also
    reaches is dropped (with a warning), since it cannot tell the modalities apart."""
    split = split_forms(tokenizer, forms_vision, forms_text)
    per_form = {"vision": list(forms_vision), "text": list(forms_text)}
    kept, dropped = split.ids, split.dropped
    if dropped and warn:
        log.warning("sample %s: dropped forms sharing a first token with the other answer: %s", sample_id, dropped)
    for m in ("vision", "text"):
        if not kept[m]:
            raise UnusableSample(
                f"sample {sample_id!r}: the {m} answer has no usable token in this tokenizer's vocabulary "
                f"(forms {list(per_form[m])}, dropped {dropped})"
            )
    return EntityIds(tuple(kept["vision"]), tuple(kept["text"]), tuple(dropped))


def answer_token(tokenizer, rendered: str, answer: str) -> int:
    """The token the model emits first for `answer` after this prompt: the bare form when the
    prompt ends in whitespace (ChatML's "assistant\n"), else the form with a leading space
    (LLaVA's "ASSISTANT:"), as chat models are trained to answer."""
    text = answer if rendered[-1:].isspace() else " " + answer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UserError(f"answer {answer!r} tokenizes to nothing")
    return int(ids[0])
