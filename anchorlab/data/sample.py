"""The conflict sample (docs/method.md §1) and the two tasks every sample yields."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

Task = Literal["vf", "tf"]
TASKS: tuple[Task, ...] = ("vf", "tf")
FOLLOWED = {"vf": "vision", "tf": "text"}
COMPETITOR = {"vf": "text", "tf": "vision"}
InstructionPosition = Literal["before_context", "after_context", "after_question"]


@dataclass(frozen=True)
class ConflictSample:
    """⟨Q, C_v, C_t, I_v, I_t, E⟩; instructions, position and context prefix left None take the recipe's."""

    id: str
    question: str
    context: str
    answer_vision: str
    answer_text: str
    image: Image.Image | None = None
    forms_vision: tuple[str, ...] = ()
    forms_text: tuple[str, ...] = ()
    instruction_vf: str | None = None
    instruction_tf: str | None = None
    instruction_position: InstructionPosition | None = None
    category: str | None = None
    context_prefix: str | None = None  # the text before the context ("Text context: "); "" for none
    extra: dict = field(default_factory=dict, compare=False)

    def forms(self, modality: str) -> tuple[str, ...]:
        """Surface forms of the answer a modality supports; the answer itself always comes first."""
        answer, forms = (
            (self.answer_vision, self.forms_vision) if modality == "vision" else (self.answer_text, self.forms_text)
        )
        return (answer, *[f for f in forms if f != answer])

    def answer(self, modality: str) -> str:
        return self.answer_vision if modality == "vision" else self.answer_text
