"""What file-backed sources share: text records, selection, image look-up, dictionary forms.

A source (jsonl.py, mc2.py) only parses its file into `Record`s: text plus where the image may
be. Everything else (categories, n_samples, missing images, the entity dictionary) happens here
once, so every source behaves the same way.
"""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import UserError
from .sample import ConflictSample

log = logging.getLogger("anchorlab")
SHOW = 5  # ids listed in messages about many samples


@dataclass(frozen=True)
class Record:
    """One sample as read from a file, before its image is opened."""

    id: str
    question: str
    context: str
    answer_vision: str
    answer_text: str
    images: tuple[Path, ...]  # candidate files, first existing one wins
    where: str  # "FILE line N" / "FILE item N", for messages
    category: str | None = None
    options: dict[str, str] | None = None  # two-option texts per modality
    extra: dict = field(default_factory=dict, compare=False)


def clean(text: str) -> str:
    """Answers and other short strings: surrounding and repeated whitespace removed (MC² has ' fox ')."""
    return " ".join(str(text).split())


def select(records: list[Record], categories: list[str] | None, n: int | None, seed: int) -> list[Record]:
    """Records of the given categories; `n` of them drawn with `seed`, kept in file order."""
    if categories:
        known = sorted({r.category for r in records if r.category})
        unknown = [c for c in categories if c not in known]
        if unknown:
            raise UserError(
                f"data.categories: {unknown} not in the data; it has: {', '.join(known) or 'no categories'}"
            )
        records = [r for r in records if r.category in set(categories)]
    if n is not None and n > len(records):
        where = f" of categories {categories}" if categories else ""
        raise UserError(f"data.n_samples: {n} asked for, but the data holds {len(records)} samples{where}; "
                        f"set n_samples to at most {len(records)} (or leave it out for all)")
    if n is not None and n < len(records):
        keep = sorted(random.Random(f"anchorlab-data-{seed}").sample(range(len(records)), n))
        records = [records[i] for i in keep]
    return records


def find_image(record: Record) -> Path | None:
    """The first candidate that is a file; None when none exists. A folder where the image should be is
    an error, not a missing image."""
    found = next((p for p in record.images if p.is_file()), None)
    folder = next((p for p in record.images if p.is_dir()), None) if found is None else None
    if folder is not None:
        raise UserError(f"{record.where} (sample {record.id!r}): image {folder}: is a directory, not an image file")
    return found


def outside(records: list[Record], root: Path) -> list[tuple[Record, Path]]:
    """(record, candidate) pairs whose image path leaves `root` (through '..' or an absolute path),
    judged on the paths as written: the user's own symlinks are followed as usual."""
    base = os.path.abspath(root)
    out = []
    for r in records:
        for path in r.images:
            full = os.path.abspath(os.path.join(base, path))
            if os.path.commonpath([base, full]) != base:
                out.append((r, path))
                break
    return out


def split_missing(records: list[Record]) -> tuple[list[tuple[Record, Path]], list[Record]]:
    found, missing = [], []
    for r in records:
        path = find_image(r)
        if path is None:
            missing.append(r)
        else:
            found.append((r, path))
    return found, missing


def missing_message(missing: list[Record], total: int, root: Path | None, layouts: str) -> str:
    ids = ", ".join(r.extra.get("image_id", r.id) for r in missing[:SHOW])
    where = f" under {root}" if root else ""
    return (f"{len(missing)} of {total} images not found{where} (looked for {layouts}); first: {ids}"
            f"{' ...' if len(missing) > SHOW else ''}. Set data.missing_images: skip to leave those samples out")


def open_image(path: Path, record: Record) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"{record.where} (sample {record.id!r}): cannot read image {path}: {exc}") from None


def load_images(records: list[Record], missing_images: str, seed: int, n: int | None, root: Path | None,
                layouts: str) -> tuple[list[tuple[Record, Image.Image]], int]:
    """Open the images of `records` (already filtered by category, not yet by n).

    `missing_images: error`: draw n first, then every drawn sample must have its image.
    `skip`: leave out samples without an image first, then draw n from the rest (so n are kept
    whenever enough exist). Returns (record, image) pairs and how many were skipped."""
    if missing_images == "error":
        records = select(records, None, n, seed)
        found, missing = split_missing(records)
        if missing:
            raise UserError(missing_message(missing, len(records), root, layouts))
        skipped = 0
    else:
        found, missing = split_missing(records)
        if missing:
            log.warning(missing_message(missing, len(records), root, layouts).split(". Set")[0] + "; skipped")
        if not found:
            raise UserError(f"no sample has its image{f' under {root}' if root else ''}; nothing to run")
        if n is not None and n > len(found):
            log.warning("data.n_samples: %d asked for, %d samples have their image; using those", n, len(found))
        kept = {id(r) for r in select([r for r, _ in found], None, min(n, len(found)) if n else n, seed)}
        found = [(r, p) for r, p in found if id(r) in kept]
        skipped = len(missing)
    return [(r, open_image(p, r)) for r, p in found], skipped


def to_samples(pairs: list[tuple[Record, Image.Image]], forms: dict[str, list[str]]) -> list[ConflictSample]:
    """ConflictSamples with their dictionary forms (the answer alone where the dictionary has none)."""
    lowered = {k.lower(): v for k, v in forms.items()}

    def lookup(answer: str) -> tuple[str, ...]:
        return tuple(forms.get(answer) or lowered.get(answer.lower()) or ())

    out = []
    for r, image in pairs:
        extra = dict(r.extra)
        if r.options:
            extra["option_texts"] = dict(r.options)
        out.append(ConflictSample(
            id=r.id, question=r.question, context=r.context, answer_vision=r.answer_vision,
            answer_text=r.answer_text, image=image, forms_vision=lookup(r.answer_vision),
            forms_text=lookup(r.answer_text), category=r.category, extra=extra,
        ))
    if forms:
        absent = sorted({a for r, _ in pairs for a in (r.answer_vision, r.answer_text) if not lookup(a)})
        if absent:
            log.warning("dictionary has no entry for %d answer(s) (they use the answer alone): %s%s", len(absent),
                        ", ".join(map(repr, absent[:SHOW])), " ..." if len(absent) > SHOW else "")
    return out
