"""The `mc2` source: MC²'s evaluate_final.json (text side) + the user's own COCO 2014 images.

MC² ships no images (they are COCO 2014 photos); `data.image_root` points at the user's folder.
Both COCO layouts are accepted: `COCO_val2014_<id>.jpg` / `COCO_train2014_<id>.jpg` (as in the
official zips, also inside val2014/ or train2014/ subfolders) and plain `<id>.jpg`.
Sample ids are `mc2-<index in the file, 4 digits>`: (image id, task) is not unique in MC².
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError, parse_text, read_file
from .records import Record, clean

FIELDS = ("image_id", "task", "question", "context", "answer_vision", "answer_text")
SUBFOLDERS = ("", "val2014", "train2014")
LAYOUT = "COCO_val2014_<id>.jpg, COCO_train2014_<id>.jpg or <id>.jpg, also in val2014/ and train2014/"


def image_candidates(root: Path, image_id: str) -> tuple[Path, ...]:
    padded = image_id.zfill(12) if image_id.isdigit() else image_id
    names = (f"COCO_val2014_{padded}.jpg", f"COCO_train2014_{padded}.jpg", f"{padded}.jpg")
    if image_id.isdigit() and str(int(image_id)) != padded:
        names += (f"{int(image_id)}.jpg",)
    return tuple(root / sub / name for sub in SUBFOLDERS for name in names)


def read(path: Path, image_root: Path | None) -> list[Record]:
    path = Path(path)
    text = read_file(path, "data.path")
    where = f"data.path: {path}"
    if _json_lines(text):
        raise UserError(f"{where}: one JSON object per line (JSON Lines), not MC²'s list of samples: use source: jsonl")
    items = parse_text(text, "json", where)
    if not isinstance(items, list):
        hint = " (one sample per line is source: jsonl)" if isinstance(items, dict) else ""
        raise UserError(f"{where}: expected MC²'s list of samples (evaluate_final.json), got a "
                        f"{type(items).__name__}{hint}")
    width = max(4, len(str(len(items) - 1)))
    records = []
    for index, item in enumerate(items):
        where = f"{path} item {index}"
        if not isinstance(item, dict):
            raise UserError(f"{where}: expected an object with fields {', '.join(FIELDS)}")
        for name in FIELDS:
            value = item.get(name)
            if not isinstance(value, (str, int)) or not str(value).strip():
                raise UserError(f"{where}: field '{name}': {'missing' if value is None else 'empty or not text'}")
        image_id = str(item["image_id"]).strip()
        if any(sep in image_id for sep in ("/", "\\")) or image_id in (".", ".."):
            raise UserError(f"{where}: field 'image_id': {image_id!r} is not an image id (it names a path)")
        records.append(Record(
            id=f"mc2-{index:0{width}d}", question=str(item["question"]).strip(), context=str(item["context"]).strip(),
            answer_vision=clean(item["answer_vision"]), answer_text=clean(item["answer_text"]),
            images=image_candidates(Path(image_root), image_id) if image_root else (), where=where,
            category=clean(item["task"]), extra={"image_id": image_id, "index": index},
        ))
    return records


def _json_lines(text: str) -> bool:
    """Several lines, the first of them a whole JSON object: a JSONL file given as mc2."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(lines[0]), dict)
    except json.JSONDecodeError:
        return False
