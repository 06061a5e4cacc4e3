"""A run's output folder as a resumable store: finished chunks are written atomically as they
complete, so a run killed at any point loses nothing already computed."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .errors import UserError

STATE = "run.json"
CHUNKS = ".chunks"


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _flatten(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        out = {}
        for i, v in enumerate(node):
            out.update(_flatten(v, f"{prefix}.{i}"))
        return out
    return {prefix: node}


def recipe_difference(old: dict, new: dict) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


class RunStore:
    def __init__(self, out: Path, resolved_recipe: dict, resume: bool = False, force: bool = False):
        self.out = Path(out)
        self.state_path = self.out / STATE
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else None
        ignore_output = {k: v for k, v in resolved_recipe.items() if k != "output"}
        if state is not None and not force:
            if state.get("status") == "complete" and not resume:
                raise UserError(f"{self.out} already holds a finished run; pass --force to overwrite it or --out elsewhere")
            if not resume:
                raise UserError(f"{self.out} holds an unfinished run; pass --resume to continue it or --force to start over")
            diff = recipe_difference({k: v for k, v in state["recipe"].items() if k != "output"}, ignore_output)
            if diff:
                raise UserError(f"--resume refused: the recipe changed since {self.out} was started: " + "; ".join(diff))
        if force and self.out.exists():
            shutil.rmtree(self.out / CHUNKS, ignore_errors=True)
            state = None
        self.out.mkdir(parents=True, exist_ok=True)
        self.state = state if (state and resume) else {"recipe": resolved_recipe, "status": "running", "finished": []}
        self.state["status"] = "running"
        self._write_state()

    def _write_state(self) -> None:
        _atomic_write(self.state_path, lambda fh: fh.write(json.dumps(self.state, indent=2).encode()))

    def _chunk_path(self, name: str, index: int) -> Path:
        return self.out / CHUNKS / name / f"{index:06d}.npz"

    def load_chunk(self, name: str, index: int) -> dict[str, np.ndarray] | None:
        path = self._chunk_path(name, index)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def save_chunk(self, name: str, index: int, arrays: dict[str, np.ndarray]) -> None:
        path = self._chunk_path(name, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda fh: np.savez(fh, **arrays))

    def is_finished(self, name: str) -> bool:
        return name in self.state["finished"]

    def mark_finished(self, name: str) -> None:
        self.state["finished"].append(name)
        self._write_state()

    def complete(self) -> None:
        self.state["status"] = "complete"
        self._write_state()
        shutil.rmtree(self.out / CHUNKS, ignore_errors=True)
