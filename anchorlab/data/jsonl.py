"""The `jsonl` source: a hand-written conflict dataset, one JSON object per line, plus an image folder.

The format is the JSON Schema shipped beside this module (`conflict_sample.schema.json`); every
problem is reported with the file, the line number and the field, so a user can fix it directly.
"""
from __future__ import annotations

import difflib
import json
from functools import cache
from pathlib import Path

from ..errors import UserError, read_file
from .records import Record, clean

SCHEMA_PATH = Path(__file__).with_name("conflict_sample.schema.json")
SHOW_LINES = 5


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@cache
def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


def _field(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path


def describe(error) -> str:
    """One jsonschema error as `field 'x': what is wrong`."""
    where = _field(error)
    kind, props = error.validator, schema()["properties"]
    if kind == "required":
        missing = error.message.split("'")[1]
        name = f"{where}.{missing}" if where else missing
        return f"field '{name}': missing (required)"
    if kind == "additionalProperties":
        allowed = list((props if not where else props[where]["properties"]).keys())
        extras = [p for p in error.instance if p not in allowed]
        parts = []
        for p in extras:
            close = difflib.get_close_matches(p, allowed, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            parts.append(f"field '{f'{where}.{p}' if where else p}': unknown field{hint}")
        return "; ".join(parts) + f"; allowed: {', '.join(allowed)}"
    if kind == "type":
        return f"field '{where}': expected {error.validator_value}, got {json.dumps(error.instance)}"
    if kind == "pattern" and where == "id":
        return f"field 'id': {json.dumps(error.instance)} is empty, starts with a space or contains '#'"
    if kind in ("pattern", "minLength"):
        return f"field '{where}': empty"
    return f"field '{where or '(line)'}': {error.message}"


def parse_line(text: str, where: str) -> dict:
    """One line -> validated object, or a UserError naming `where` and the field."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise UserError(f'{where}: expected a JSON object {{"id": ..., "image": ..., ...}}, got {type(obj).__name__}')
    errors = sorted(_validator().iter_errors(obj), key=lambda e: (list(e.absolute_path), e.validator))
    if errors:
        raise UserError(f"{where}: " + "; ".join(dict.fromkeys(describe(e) for e in errors)))
    if clean(obj["answer_vision"]).lower() == clean(obj["answer_text"]).lower():
        raise UserError(f"{where}: fields 'answer_vision' and 'answer_text' are the same ({obj['answer_text']!r}): "
                        "a conflict sample needs two different answers")
    return obj


def read(path: Path, image_root: Path | None = None) -> list[Record]:
    """All records of a JSONL file; images relative to `image_root` (default: the file's folder)."""
    path = Path(path)
    text = read_file(path, "data.path")
    if _json_list(text):
        raise UserError(f"data.path: {path}: one JSON list (MC²'s evaluate_final.json layout), not one object per "
                        "line: use source: mc2 (with data.image_root)")
    lines = text.splitlines()
    root = Path(image_root) if image_root else path.parent
    records, problems, seen = [], [], {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{path} line {number}"
        try:
            obj = parse_line(text, where)
        except UserError as exc:
            problems.append((number, str(exc)))
            continue
        if obj["id"] in seen:
            problems.append((number, f"{where}: field 'id': {obj['id']!r} already used on line {seen[obj['id']]}"))
            continue
        seen[obj["id"]] = number
        image = Path(obj["image"])
        records.append(Record(
            id=obj["id"], question=obj["question"].strip(), context=obj["context"].strip(),
            answer_vision=clean(obj["answer_vision"]), answer_text=clean(obj["answer_text"]),
            images=(image if image.is_absolute() else root / image,), where=where,
            category=clean(obj["task"]) if "task" in obj else None,
            options={k: clean(v) for k, v in obj["options"].items()} if "options" in obj else None,
            extra={"line": number},
        ))
    if problems:
        more = [n for n, _ in problems[1:]]
        tail = (f" (and {len(more)} more line(s) with problems: {', '.join(map(str, more[:SHOW_LINES]))}"
                f"{' ...' if len(more) > SHOW_LINES else ''})") if more else ""
        raise UserError(problems[0][1] + tail)
    if not records:
        raise UserError(f"{path}: no samples (the file is empty)")
    return records


def _json_list(text: str) -> bool:
    if not text.lstrip().startswith("["):
        return False
    try:
        return isinstance(json.loads(text), list)
    except json.JSONDecodeError:
        return False


def write(path: Path, samples: list[dict]) -> Path:
    """Write dicts as JSONL (one sorted-key object per line), validating each first."""
    path = Path(path)
    lines = []
    for i, obj in enumerate(samples, start=1):
        text = json.dumps(obj, ensure_ascii=False, sort_keys=True)
        parse_line(text, f"sample {i}")
        lines.append(text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


LAYOUT = "the 'image' path of each line"
