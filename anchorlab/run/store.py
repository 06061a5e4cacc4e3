"""A run's output folder as a resumable store: finished chunks are written atomically as they
complete, so a run killed at any point loses nothing already computed.

`run.json` keeps the resolved recipe, the hashes of the run's inputs, what is finished, and a
manifest of every file anchorlab wrote there (so `--force` removes exactly those, nothing else).
A folder whose run stored nothing (it failed before its first chunk) is simply reused.
In a data-parallel run (torchrun) rank 0 opens the store and alone writes run.json; the other ranks
`attach` to it and write only their chunks, each one file written once, so no file has two writers.
One run writes a folder at a time: the store holds an OS lock on `run.lock` for the whole run (files.py).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..recipe import result_names
from .files import RunLock, atomic_write

STATE = "run.json"
CHUNKS = ".chunks"


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
    return [
        f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


# what each input hash (results.input_hashes) comes from, as the recipe names it
INPUT_FIELDS = {"data_file": "data.path", "data_dictionary": "data.dictionary", "data_labels": "data.labels",
                "weights_revision": "model.revision"}


def _shown(value) -> str:
    return "unset" if value is None else value if isinstance(value, str) else json.dumps(value)


def input_changes(state: dict, recipe: dict, inputs: dict[str, str]) -> list[str]:
    """Why a resumed run's inputs differ from the stored run's, in recipe fields: "data.n_samples
    changed: 16 -> 32" when the recipe says so, else which file changed on disk."""
    old = state.get("inputs", {})
    keys = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
    if not any(k.startswith("model_file:") for k in old):  # started by an anchorlab that did not hash them
        keys = [k for k in keys if not k.startswith("model_file:")]
    if not keys:
        return []
    a, b = _flatten(state.get("recipe", {})), _flatten(recipe)
    fields = {k: f"{k} changed: {_shown(a.get(k))} -> {_shown(b.get(k))}" for k in sorted(set(a) | set(b))
              if a.get(k) != b.get(k) and (k.split(".")[0] in ("data", "model") or k == "seed")}
    lines = []
    for key in keys:
        if key == "data_samples":
            named = [line for k, line in fields.items() if k.startswith("data.") or k == "seed"]
            if not named and "data_file" not in keys:
                named = ["data: the samples as loaded changed (the data file's contents or its images)"]
        elif key.startswith(("weights:", "model_file:")):
            name = key.split(":", 1)[1]
            named = ([fields["model.id"]] if "model.id" in fields
                     else [f"model.id: {name} in {b.get('model.id')} changed on disk"])
        else:
            field = INPUT_FIELDS.get(key, key)
            where = b.get(field)
            named = ([fields[field]] if field in fields else [f"{field}: {where} changed on disk"] if where
                     else [f"{field}: its file changed on disk (or was added or removed)"])
        lines += [line for line in named if line not in lines]
    return lines


class RunStore:
    primary = True  # False: a data-parallel rank other than 0, which never writes run.json
    lock: RunLock | None = None  # rank 0's (or the only process's) hold on the folder

    def __init__(self, out: Path, resolved_recipe: dict, inputs: dict[str, str] | None = None,
                 resume: bool = False, force: bool = False, world_size: int = 1):
        self.out = Path(out)
        self.state_path = self.out / STATE
        self.out.mkdir(parents=True, exist_ok=True)
        self.lock = RunLock(self.out)  # before reading anything: a second run is refused here, --resume included
        try:
            self._open(resolved_recipe, inputs or {}, resume, force, world_size)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, resolved_recipe: dict, inputs: dict[str, str], resume: bool, force: bool, world_size: int):
        state = self._read_state()
        if state is not None and not force and state.get("status") != "complete" and not self._stored(state):
            state = None  # the last run failed before storing anything: start afresh in the same folder
        if state is not None and force:
            self._remove_written(state)
            state = None
        if state is not None:
            if state.get("status") == "complete" and not resume:
                raise UserError(
                    f"{self.out} already holds a finished run; pass --force to overwrite it or --out elsewhere"
                )
            if not resume:
                raise UserError(
                    f"{self.out} holds an unfinished run; pass --resume to continue it or --force to start over"
                )
            self._check_resume(state, resolved_recipe, inputs)
            state["recipe"] = resolved_recipe  # accepted changes only touch analyses that stored nothing
        self.state = state or {"recipe": resolved_recipe, "finished": [], "written": []}
        self.state.update(status="running", inputs=inputs, world_size=world_size)
        self._write_state()

    @classmethod
    def attach(cls, out: Path) -> "RunStore":
        """The store rank 0 has just opened, for the other ranks of a data-parallel run: its state as
        rank 0 wrote it (what is finished), chunks to read and write, run.json left to rank 0."""
        store = cls.__new__(cls)
        store.out, store.primary = Path(out), False
        store.state_path = store.out / STATE
        store.state = store._read_state()
        if store.state is None:
            raise UserError(f"{store.state_path}, which rank 0 has just written, is not here: the run folder must "
                            "be on a filesystem that every node of a multi-node run shares")
        return store

    # -- opening --------------------------------------------------------------------------------
    def _read_state(self) -> dict | None:
        if not self.state_path.exists():
            return None
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{self.state_path}: unreadable run state ({exc}); pass --force to start over") from None

    def _stored(self, state: dict, name: str | None = None) -> bool:
        """Whether anything is stored: for one result name (its chunks, its sweep parts), or at all."""
        if name is None:
            chunks = self.out / CHUNKS
            return bool(state.get("finished")) or (chunks.is_dir() and any(chunks.rglob("*.npz")))
        if name in state.get("finished", []):
            return True
        return any((self.out / CHUNKS).glob(f"{name}/*.npz")) or any((self.out / CHUNKS).glob(f"{name}@*/*.npz"))

    def _check_resume(self, state: dict, recipe: dict, inputs: dict[str, str]) -> None:
        changed = input_changes(state, recipe, inputs)
        if changed:
            raise UserError(f"--resume refused: the run's inputs changed since {self.out} was started: "
                            f"{'; '.join(changed)}; pass --force to start over")
        old, new = state["recipe"], recipe
        old_names = result_names(old.get("analyses", []))
        touched = []
        for line in recipe_difference({k: v for k, v in old.items() if k != "output"},
                                      {k: v for k, v in new.items() if k != "output"}):
            key = line.split(":", 1)[0]
            parts = key.split(".")
            if parts[0] == "analyses" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(old_names):
                name = old_names[int(parts[1])]
                if self._stored(state, name):
                    touched.append(f"{line} (analysis {name!r} has stored results)")
            elif self._stored(state):
                touched.append(line)
        if touched:
            raise UserError(f"--resume refused: the recipe changed since {self.out} was started, in what is already "
                            f"stored: " + "; ".join(touched))

    def _remove_written(self, state: dict) -> None:
        """--force: remove what anchorlab wrote here before (the manifest), nothing else."""
        for rel in state.get("written", []):
            path = self.out / rel
            if path.is_file():
                path.unlink()
        shutil.rmtree(self.out / CHUNKS, ignore_errors=True)
        figures = self.out / "figures"
        if figures.is_dir() and not any(figures.iterdir()):
            figures.rmdir()
        self.state_path.unlink(missing_ok=True)

    # -- writing --------------------------------------------------------------------------------
    def _write_state(self) -> None:
        if self.primary:
            atomic_write(self.state_path, lambda fh: fh.write(json.dumps(self.state, indent=2).encode()))

    def record(self, *paths: Path) -> None:
        """Add files anchorlab wrote in the run folder to the manifest."""
        written = self.state.setdefault("written", [])
        for path in paths:
            rel = str(Path(path).resolve().relative_to(self.out.resolve()))
            if rel not in written:
                written.append(rel)
        self._write_state()

    def _chunk_path(self, name: str, index: int, size: int) -> Path:
        """Batch `index` of result `name`; `size` (prompts per batch) is part of the key, so a run
        resumed with another batch size (e.g. `auto` on other devices) never reads another batching's chunk."""
        return self.out / CHUNKS / name / f"{index:06d}-b{size}.npz"

    def has_chunk(self, name: str, index: int, size: int) -> bool:
        return self._chunk_path(name, index, size).exists()

    def load_chunk(self, name: str, index: int, size: int) -> dict[str, np.ndarray] | None:
        path = self._chunk_path(name, index, size)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def save_chunk(self, name: str, index: int, arrays: dict[str, np.ndarray], size: int) -> None:
        path = self._chunk_path(name, index, size)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: np.savez(fh, **arrays))

    def is_finished(self, name: str) -> bool:
        return name in self.state["finished"]

    def mark_finished(self, name: str) -> None:
        self.state["finished"].append(name)
        self._write_state()

    def stop(self, why: str) -> None:
        """The run ended early ("failed" or "interrupted"): what is stored stays for --resume. A run.json
        that cannot be written now (a full disk) keeps its last state, which --resume reads as well."""
        self.state["status"] = why
        try:
            self._write_state()
        except UserError:
            pass  # the error that stopped the run is the one to report
        finally:
            self._release()

    def complete(self) -> None:
        try:
            self.state["status"] = "complete"
            self._write_state()
            if self.primary:
                shutil.rmtree(self.out / CHUNKS, ignore_errors=True)
        finally:
            self._release()

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()
