"""Data sources named by `data.source` in a recipe: toy (synthetic), jsonl (your own), mc2."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..errors import UserError
from .records import load_images, outside, select, to_samples
from .sample import ConflictSample

log = logging.getLogger("anchorlab")
TOY_DEFAULT_N = 64
TOY_MAX_N = 20_000  # the toy source draws at most this many samples (each carries its image)
FILE_SOURCES = ("jsonl", "mc2")
# organism: toy:anchored's held-out prompts; organism-heldout: the organism family's held-out prompts
GENERATED_SOURCES = ("toy", "organism", "organism-heldout")


def read_records(source: str, path, image_root=None):
    """Text records of a file-backed source (no image is opened): also what `dict build` reads."""
    if source == "jsonl":
        from . import jsonl

        return jsonl.read(Path(path), Path(image_root) if image_root else None), jsonl.LAYOUT
    if source == "mc2":
        from . import mc2

        return mc2.read(Path(path), Path(image_root) if image_root else None), mc2.LAYOUT
    raise UserError(f"data.source: unknown source {source!r}; known: {', '.join(GENERATED_SOURCES + FILE_SOURCES)}")


IMAGE_FIELDS = {"jsonl": "image", "mc2": "image_id"}


def check_inside(records, root: Path, source: str) -> None:
    """Image paths stay in the data folder unless data.allow_outside_paths says otherwise: a downloaded
    dataset must not read any file of the machine."""
    leaving = outside(records, root)
    if leaving:
        record, path = leaving[0]
        more = f" (and {len(leaving) - 1} more sample(s))" if len(leaving) > 1 else ""
        raise UserError(f"{record.where}: field '{IMAGE_FIELDS[source]}': {path} is outside the data folder {root}"
                        f"{more}; set data.allow_outside_paths: true to allow it")


def load_dataset(data_spec, seed: int) -> tuple[list[ConflictSample], dict]:
    """Samples for a recipe's `data` section, and what to record about them in result attrs."""
    seed = data_spec.seed if data_spec.seed is not None else seed
    info: dict = {"data_source": data_spec.source}
    if data_spec.source in GENERATED_SOURCES:
        from . import organism, organism_family, toy

        n = data_spec.n_samples or TOY_DEFAULT_N
        if n > TOY_MAX_N:
            raise UserError(
                f"data.n_samples: the {data_spec.source} source generates at most {TOY_MAX_N} samples, not {n}"
            )
        generate = {"toy": toy, "organism": organism, "organism-heldout": organism_family}[data_spec.source]
        samples = generate.generate_samples(n, seed=seed)
    elif data_spec.source in FILE_SOURCES:
        from .dictionary_file import dictionary_for

        root = Path(data_spec.image_root) if data_spec.image_root else None
        if root is not None and not root.is_dir():
            raise UserError(f"data.image_root: {root}: {'not a folder' if root.exists() else 'not found'}")
        records, layout = read_records(data_spec.source, data_spec.path, data_spec.image_root)
        if not data_spec.allow_outside_paths:
            check_inside(records, root or Path(data_spec.path).parent, data_spec.source)
        records = select(records, data_spec.categories, None, seed)
        pairs, skipped = load_images(records, data_spec.missing_images, seed, data_spec.n_samples, root, layout)
        dict_path, forms = dictionary_for(data_spec.path, data_spec.dictionary)
        samples = to_samples(pairs, forms)
        info.update(data_path=str(data_spec.path), data_image_root=str(root or Path(data_spec.path).parent),
                    data_missing_images=data_spec.missing_images, data_images_skipped=skipped,
                    data_dictionary=str(dict_path) if dict_path else "none (answers alone)",
                    data_categories=",".join(data_spec.categories or []) or "all")
        if dict_path is None:
            log.warning("no entity dictionary for %s: each answer is its only surface form "
                        "(build one with: anchorlab dict build %s)", data_spec.path, data_spec.path)
    else:
        raise UserError(f"data.source: unknown source {data_spec.source!r}; known: "
                        f"{', '.join(GENERATED_SOURCES + FILE_SOURCES)}")
    prompt = data_spec.prompt
    samples, applied = apply_prompt_fields(samples, prompt)
    info.update(data_prompt_format=prompt.format, data_n_base_samples=len(samples),
                data_prompt_from_recipe=", ".join(applied) or "none (each sample's own, else MC²'s)")
    if prompt.format == "two_option":
        from .prompt_text import two_option_samples

        samples = two_option_samples(samples, prompt.option_order)
        info.update(data_option_order=prompt.option_order,
                    data_answer_tokens="option letters: y_p/y_c and E_f/E_c are the first tokens of 'A'/'B'")
    else:
        info["data_answer_tokens"] = "first token of each answer; E from the entity dictionary"
    return samples, info


def apply_prompt_fields(samples: list[ConflictSample], prompt) -> tuple[list[ConflictSample], list[str]]:
    """A data.prompt field set in the recipe (instructions per task, instruction_position, context_prefix)
    replaces every sample's own value, so the generated sources, which choose them per sample, honour it.
    -> (samples, the data.prompt fields applied)."""
    fields = {}
    for task in sorted(prompt.instructions or {}):
        fields[f"instruction_{task}"] = f"data.prompt.instructions.{task}"
    if prompt.instruction_position is not None:
        fields["instruction_position"] = "data.prompt.instruction_position"
    if prompt.context_prefix is not None:
        fields["context_prefix"] = "data.prompt.context_prefix"
    return [dataclasses.replace(s, **dict.fromkeys(fields)) for s in samples], list(fields.values())
