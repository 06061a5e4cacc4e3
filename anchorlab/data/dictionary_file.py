"""The entity dictionary file format (docs/method.md §1): read a dictionary JSON, find the one beside a dataset.

Building one (WordNet candidates, verifiers, coverage) is `anchorlab.dictionary`'s job; data sources
only read them, so this stage imports nothing later.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError, read_file

FORMAT = 1


SUFFIX = ".dictionary.json"


def default_path(dataset: str | Path) -> Path:
    """The dictionary that belongs to a dataset: `<name>.dictionary.json` beside it."""
    dataset = Path(dataset)
    return dataset.with_name(dataset.stem + SUFFIX)


def load(path: str | Path) -> dict[str, list[str]]:
    """answer -> forms from a dictionary file: anchorlab's format or a plain {answer: [forms]} mapping."""
    path = Path(path)
    data = read_file(path, "data.dictionary", "json")
    forms = data.get("forms") if isinstance(data, dict) and "anchorlab_dictionary" in data else data
    if not isinstance(forms, dict):
        raise UserError(f"{path}: expected {{\"forms\": {{answer: [forms]}}}} or a mapping answer -> [forms]")
    for answer, value in forms.items():
        if not isinstance(value, list) or not all(isinstance(f, str) and f.strip() for f in value):
            raise UserError(f"{path}: entry {answer!r}: expected a list of non-empty strings")
    return {" ".join(k.split()): v for k, v in forms.items()}


def dictionary_for(dataset: str | Path, explicit: str | None) -> tuple[Path | None, dict[str, list[str]]]:
    """A recipe's dictionary: `data.dictionary`, else the one beside the dataset if there is one."""
    if explicit:
        if not Path(explicit).is_file():
            raise UserError(f"data.dictionary: no file {explicit} (build one with: anchorlab dict build {dataset})")
        return Path(explicit), load(explicit)
    path = default_path(dataset)
    return (path, load(path)) if path.is_file() else (None, {})
