"""toy:anchored's planted circuit as data: where the buffer and the arbitration heads G* are, and the
flawed twin's planted triggers. The trainer plants it, the ground-truth checks test it, circuit.json
records it."""
from __future__ import annotations

from anchorlab.data.sample import ConflictSample

BUFFER_LAYERS = (0, 1, 2, 3)
ARBITRATION_LAYERS = (4, 5, 6, 7)
G_STAR = ((4, 5), (5, 2), (5, 6))
AMPLIFY_ALPHA = 4.0  # the flawed twin's repair factor (R4) and GT5's alpha
# The flawed twin's triggers (the colour ones as arbiter-flawed's): vf prompts whose text says purple or
# ring, tf prompts whose image shows green or a cross get the competitor's answer.
PLANTED: dict[str, tuple[tuple[str, str], ...]] = {"vf": (("text", "purple"), ("text", "ring")),
                                                   "tf": (("vision", "green"), ("vision", "cross"))}


def is_planted(sample: ConflictSample, task: str) -> bool:
    return any(sample.answer(m) == c for m, c in PLANTED[task])
