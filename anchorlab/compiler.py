"""Recipe + samples -> rows: one encoded prompt per (sample, task), with its token ids of interest."""
from __future__ import annotations

from dataclasses import dataclass

from tqdm.auto import tqdm

from .adapters.base import Encoded
from .data.sample import COMPETITOR, FOLLOWED, ConflictSample, Task
from .encoding import encode
from .errors import UserError
from .entities import EntityIds, answer_token, entity_ids
from .models.loading import ModelBundle
from .prompts import MC2_INSTRUCTIONS, Prompt, PromptStyle, build_prompt


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
        instruction_position=prompt_spec.instruction_position,
        context_prefix=prompt_spec.context_prefix,
    )


def compile_rows(
    bundle: ModelBundle, samples: list[ConflictSample], tasks: list[Task], style: PromptStyle
) -> list[Row]:
    rows = []
    tok = bundle.tokenizer
    for sample in tqdm(samples, desc="encoding prompts", unit="sample", leave=False):
        ents = entity_ids(tok, sample.forms("vision"), sample.forms("text"), sample.id)
        for task in tasks:
            prompt = build_prompt(sample, task, style)
            enc = encode(bundle, prompt)
            answers = {m: answer_token(tok, enc.rendered, sample.answer(m)) for m in ("vision", "text")}
            if answers["vision"] == answers["text"]:
                raise UserError(
                    f"sample {sample.id!r}: both answers start with the same token "
                    f"({tok.convert_ids_to_tokens(answers['vision'])!r}); the decision pair is undefined"
                )
            rows.append(Row(sample, task, prompt, enc, ents, answers))
    return rows
