"""Recipe + samples -> rows: one encoded prompt per (sample, task), with its token ids of interest."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from tqdm.auto import tqdm

from ..adapters.base import Encoded
from ..data.prompt_text import MC2_INSTRUCTIONS
from ..data.sample import COMPETITOR, FOLLOWED, ConflictSample, Task
from ..dictionary.entities import EntityIds, UnusableSample, answer_token, entity_ids
from ..errors import UserError
from ..models.loading import ModelBundle
from .encoding import encode
from .prompts import Prompt, PromptStyle, build_prompt

log = logging.getLogger("anchorlab")


@dataclass(frozen=True)
class Row:
    sample: ConflictSample
    task: Task
    prompt: Prompt
    encoded: Encoded
    entities: EntityIds
    answer_ids: dict[str, int]  # modality -> first token the model would emit for that answer

    @property
    def followed(self) -> str:
        return FOLLOWED[self.task]

    @property
    def competitor(self) -> str:
        return COMPETITOR[self.task]


def prompt_style(prompt_spec) -> PromptStyle:
    instructions = {**MC2_INSTRUCTIONS, **(prompt_spec.instructions or {})}
    return PromptStyle(
        instructions=tuple(sorted(instructions.items())),
        instruction_position=prompt_spec.instruction_position or PromptStyle.instruction_position,
        context_prefix=PromptStyle.context_prefix if prompt_spec.context_prefix is None else prompt_spec.context_prefix,
        option_prompt=getattr(prompt_spec, "option_prompt", PromptStyle.option_prompt),
    )


def compile_rows(
    bundle: ModelBundle, samples: list[ConflictSample], tasks: list[Task], style: PromptStyle,
    on_unusable: str = "error",
) -> list[Row]:
    """`on_unusable="skip"` leaves out (with one warning) samples this tokenizer cannot score:
    both answers starting with the same token, or an answer with no usable dictionary token."""
    rows, skipped, dropped_forms = [], [], 0
    tok = bundle.tokenizer
    for sample in tqdm(samples, desc="encoding prompts", unit="sample", leave=False):
        try:
            ents = entity_ids(tok, sample.forms("vision"), sample.forms("text"), sample.id, warn=on_unusable != "skip")
            sample_rows = []
            for task in tasks:
                prompt = build_prompt(sample, task, style)
                enc = encode(bundle, prompt)
                answers = {m: answer_token(tok, enc.rendered, sample.answer(m)) for m in ("vision", "text")}
                if answers["vision"] == answers["text"]:
                    raise UnusableSample(
                        f"sample {sample.id!r}: both answers start with the same token "
                        f"({tok.convert_ids_to_tokens(answers['vision'])!r}); the decision pair is undefined"
                    )
                sample_rows.append(Row(sample, task, prompt, enc, ents, answers))
        except UnusableSample as exc:
            if on_unusable != "skip":
                raise
            skipped.append((sample.id, str(exc)))
            continue
        dropped_forms += len(ents.dropped)
        rows.extend(sample_rows)
    if dropped_forms:
        log.warning(
            "%d dictionary form(s) dropped: their first token is shared with the competing answer", dropped_forms
        )
    if skipped:
        log.warning("%d of %d samples left out (this tokenizer cannot tell their answers apart), e.g. %s",
                    len(skipped), len(samples), skipped[0][1])
    if not rows:
        raise UserError("no sample is usable with this tokenizer (see the warnings above)")
    return rows
