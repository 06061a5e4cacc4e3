"""A circuit spec (organisms/specs/*.json): which heads an organism of the family is trained to route the
instruction's decision through, at the role `positions` (default `last`).

- `heads`: a chain, one head per layer: each carries the instruction's decision alone (its interchange from
  the instruction-swapped twin flips the answer), reading it from the one before.
- `train`: overrides of family.TRAIN; `interchange_from: "auto"` starts the interchange rows once strict
  resampling is learnt (the circuit already carries the task), which avoids the saddle where the circuit
  carries nothing and the clean and interchange rows cancel.
- `stages`: more training with a fresh optimizer and a fresh pool of training prompts.
- `backup_pair`: two heads of one layer, redundant: only their joint interchange flips the answer.
- `planted: false` (and no heads): the unplanted control, trained on the task loss alone.
- `init`: the shipped toy (or folder) whose weights training starts from (default: random from the seed).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

Head = tuple[int, int]


@dataclass(frozen=True)
class CircuitSpec:
    name: str
    heads: tuple[Head, ...] = ()
    backup_pair: tuple[Head, ...] = ()
    planted: bool = True
    seed: int = 0
    steps: int = 1500
    init: str | None = None  # None: the LM random from the seed; else a shipped toy (organism-control) or a folder
    about: str = ""
    train: dict = field(default_factory=dict)  # overrides of family.TRAIN (groups_per_step, lr, ...)
    positions: str = "last"  # the role at which the circuit's heads act (interchange and ground truth)
    # more training after the first `steps`: each {"steps": N, "train": {...}}, a fresh optimizer and a fresh pool
    # of training prompts, interchange rows from its first step
    stages: tuple = ()

    @property
    def circuit_heads(self) -> tuple[Head, ...]:
        return self.heads + self.backup_pair

    @property
    def losses(self) -> tuple[str, ...]:
        return ("task", "interchange", "strict_single", "strict_role") if self.planted else ("task",)

    def nodes(self) -> list[tuple[tuple[Head, ...], bool]]:
        """The high-level model's interchanges -> whether each flips the answer: every chain head alone, each
        member of the backup pair alone (no), the pair jointly, every circuit head together."""
        out = [((h,), True) for h in self.heads]
        if self.backup_pair:
            out += [((h,), False) for h in self.backup_pair] + [(self.backup_pair, True)]
        if len(self.circuit_heads) > 1:
            out.append((self.circuit_heads, True))
        return out


def load_spec(path: str | Path, n_layers: int, n_heads: int) -> CircuitSpec:
    """Read and check a spec; every error names the file and the field."""
    path = Path(path)
    raw = json.loads(path.read_text())
    known = set(CircuitSpec.__dataclass_fields__)
    if set(raw) - known:
        raise ValueError(f"{path}: unknown field(s) {sorted(set(raw) - known)}; known: {sorted(known)}")
    spec = CircuitSpec(**{**raw, **{k: tuple(map(tuple, raw.get(k, ()))) for k in ("heads", "backup_pair")},
                          "stages": tuple(raw.get("stages", ()))})
    for k, stage in enumerate(spec.stages):
        if not isinstance(stage, dict) or not isinstance(stage.get("steps"), int) or set(stage) - {"steps", "train"}:
            raise ValueError(f"{path}: stages.{k}: expected {{\"steps\": N, \"train\": {{...}}}}, got {stage!r}")
    for name in ("heads", "backup_pair"):
        for layer, head in getattr(spec, name):
            # the last layer reads the decision out at `last`: a circuit head there could not reach it
            if not (0 <= layer < n_layers - 1 and 0 <= head < n_heads):
                raise ValueError(f"{path}: {name}: head ({layer}, {head}) is outside layers 0-{n_layers - 2} x heads "
                                 f"0-{n_heads - 1}")
    layers = [layer for layer, _ in spec.heads]
    if len(set(layers)) != len(layers):
        raise ValueError(f"{path}: heads: a chain has one head per layer, got layers {layers}")
    if spec.backup_pair and (len(spec.backup_pair) != 2 or len({layer for layer, _ in spec.backup_pair}) != 1
                             or len(set(spec.backup_pair)) != 2):
        raise ValueError(f"{path}: backup_pair: two different heads of one layer, got {spec.backup_pair}")
    if set(spec.heads) & set(spec.backup_pair):
        raise ValueError(f"{path}: backup_pair: shares a head with heads")
    if spec.planted != bool(spec.circuit_heads):
        raise ValueError(f"{path}: planted: {spec.planted} but {len(spec.circuit_heads)} circuit heads")
    return spec
