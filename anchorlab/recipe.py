"""Recipe schema: YAML -> validated, defaults from docs/method.md, errors that name the field path."""
from __future__ import annotations

import copy
import difflib
import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from .analyses import ANALYSES, AnalysisSpec
from .analyses.base import distinct
from .data.sources import GENERATED_SOURCES
from .engines.autobatch import parse_bytes
from .errors import UserError, parse_text, read_file
from .run.sweeps import expand


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("empty: write the instruction, or leave this task out for the MC² authors' string")
    return text


class Strict(BaseModel):
    """No unknown keys, and no coercion: a quoted "16" is not taken for 16, so an accepted recipe holds what the
    run uses (a float field still takes an integer)."""
    model_config = ConfigDict(extra="forbid", strict=True)


class ModelSpec(Strict):
    id: str = Field(description="hub id, local folder, or a shipped toy as toy:NAME")
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = "cpu"  # cpu, cuda, cuda:N, mps, or auto (a GPU when there is one)
    # flash_attention_2: knockout and path blocking switch the model to sdpa (attrs: attn_implementation_used)
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] = "sdpa"
    revision: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value):
        if not value.strip():
            raise ValueError("empty: give a hub id, a local folder or toy:NAME")
        return value


class PromptSpec(Strict):
    format: Literal["open", "two_option"] = "open"  # two_option: MC²'s "A. .. B. .." with letter answers
    option_order: Literal["both", "vision_first", "text_first"] = "both"  # ids <id>#vA / <id>#tA
    # None: each sample's own (the generated sources choose them per sample), else MC²'s after_context /
    # "Text context: " / the MC² authors' strings; a value set here replaces every sample's (data/sources.py)
    instruction_position: Literal["before_context", "after_context", "after_question"] | None = None
    instructions: dict[Literal["vf", "tf"], Annotated[str, AfterValidator(_not_blank)]] | None = Field(
        None, description="instruction text per task, replacing every sample's; a task left out takes the "
        "sample's own, else the MC² authors' string")
    context_prefix: str | None = None
    option_prompt: str = "Answer the question by selecting the correct answer A or B."


class DataSpec(Strict):
    # organism: toy:anchored's data (MC² layout); organism-heldout: the organism family's held-out prompts
    source: Literal["toy", "organism", "organism-heldout", "jsonl", "mc2"] = "toy"
    path: str | None = None  # jsonl file / MC²'s evaluate_final.json
    image_root: str | None = None  # mc2: your COCO 2014 folder; jsonl: default the file's folder
    missing_images: Literal["error", "skip"] = "error"
    categories: list[str] | None = None  # keep these categories (MC² task / JSONL "task") only
    n_samples: int | None = Field(None, ge=1)  # None: all (toy: 64); else a seeded draw, in file order
    tasks: Annotated[list[Literal["vf", "tf"]], AfterValidator(distinct)] = Field(
        default_factory=lambda: ["vf", "tf"], min_length=1)
    dictionary: str | None = None  # None: <dataset>.dictionary.json beside the dataset, if present
    filter: Literal["all", "follows", "fails"] = "all"
    filter_rule: Literal["generation", "first_token"] = "generation"
    max_new_tokens: int = Field(16, ge=1)  # generation rule: greedy tokens per answer
    labels: str | None = None  # labels.nc (or its run folder) of an earlier run: reused, not recomputed
    seed: int | None = Field(None, ge=0, description="None: the recipe's seed")
    allow_outside_paths: bool = Field(
        False, description="image paths may leave the data folder (image_root, default the data file's folder) "
        "through '../' or an absolute path; off by default, so a downloaded dataset cannot point at any file")
    prompt: PromptSpec = Field(default_factory=PromptSpec)

    @model_validator(mode="after")
    def _source_needs(self):
        if self.source not in GENERATED_SOURCES and not self.path:
            raise ValueError(f"data.path: required when data.source is {self.source!r}")
        if self.source == "mc2" and not self.image_root:
            raise ValueError("data.image_root: required when data.source is 'mc2' (your COCO 2014 image folder)")
        if self.source in GENERATED_SOURCES and (self.path or self.image_root or self.categories):
            raise ValueError(f"data.path: the {self.source} source is generated; path, image_root and categories "
                             "are for jsonl/mc2")
        return self


class VerifySpec(Strict):
    """Recovery scoring after the run (`anchorlab verify`), for a model whose circuit is known."""
    circuit: str | None = None  # circuit.json; None: beside the model (toy:NAME -> its shipped folder)
    # a companion recipe (path relative to this recipe) run into OUT/<its name>: its heads_amplify is scored too
    amplify: str | None = None
    # more models, each with its own circuit.json: the recipe runs on each into OUT/<model>, each is
    # verified, and OUT/method_table.md compares every method's recovery across the model and these
    family: list[str] | None = None


class Recipe(Strict):
    name: str = "run"
    model: ModelSpec
    data: DataSpec = Field(default_factory=DataSpec)
    analyses: list[SerializeAsAny[AnalysisSpec]] = Field(min_length=1)
    backend: Literal["local", "ndif"] = "local"  # ndif: NDIF_HOST / NDIF_API_KEY (README "Running on NDIF")
    # auto: prompts per batch (and knockout variants / head settings per pass) from the memory model
    batch_size: int | str = Field(8, description="prompts per batch, or auto (see memory_budget)")
    memory_budget: str | int | None = Field(None, description="batch_size auto: bytes a batch may add beyond the "
                                            "weights (512MiB, 2GiB, ...); default 90% of free device memory")
    seed: int = Field(0, ge=0, description="seeds the data draw, the bootstrap and the random head sets")
    output: str | None = None  # None: outputs/<name>
    verify: VerifySpec | None = None  # score the run against a known circuit (verify.json + a summary.md section)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, value):
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("give a number of prompts >= 1 or 'auto'")

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _memory_budget(cls, value):
        """Checked here, not when the run first sizes a batch."""
        if value is None:
            return value
        try:
            ok = not isinstance(value, bool) and isinstance(value, (int, str)) and parse_bytes(value) >= 1
        except (ValueError, OverflowError):  # parse_bytes' UserError is a ValueError
            ok = False
        if not ok:
            raise ValueError("give bytes (> 0) or a size such as 512MiB, 2GiB, 1.5GB")
        return value

    @property
    def output_dir(self) -> Path:
        return Path(self.output or f"outputs/{self.name}")


class RecipeError(UserError):
    """A recipe problem, already phrased for the user (field path + what is wrong)."""


def load_recipe(path: str | Path, overrides: list[str] = ()) -> tuple[Recipe, str]:
    """Read, apply `--set a.b=value` overrides, validate. Returns the recipe and its source text."""
    text = read_file(path, "recipe")
    data = parse_text(text, "yaml", f"recipe: {path}")
    if not isinstance(data, dict):
        raise RecipeError(f"recipe: {path}: a recipe is a mapping with keys model, data, analyses, ...")
    return parse_recipe(apply_overrides(data, overrides)), text


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RecipeError(f"--set {item!r}: expected FIELD.PATH=VALUE, e.g. --set data.n_samples=16")
        node: Any = data
        parts = key.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise RecipeError(f"--set {key}: {'.'.join(parts[:i]) or 'recipe'} has no item {part}")
                if last:
                    node[int(part)] = _value(raw)
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = _value(raw)
                else:
                    node = node.setdefault(part, {})
            else:
                raise RecipeError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping or list")
    return data


def _value(raw: str):
    """`--set` values are YAML (numbers, lists, booleans); anything YAML cannot read stays a string."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_recipe(data: dict) -> Recipe:
    errors: list[str] = []
    raw_analyses = data.get("analyses")
    analyses: list[AnalysisSpec] = []
    if isinstance(raw_analyses, list):
        for i, item in enumerate(raw_analyses):
            analyses.extend(_parse_analysis(item, f"analyses.{i}", errors))
    top = {k: v for k, v in data.items() if k != "analyses"}
    if isinstance(raw_analyses, list):
        # with errors in the analyses, validate the rest against a stand-in list (no second, false error)
        top["analyses"] = analyses or ([AnalysisSpec(kind="placeholder")] if errors else [])
    elif "analyses" in data:
        top["analyses"] = raw_analyses
    try:
        recipe = Recipe.model_validate(top)
    except ValidationError as exc:
        errors = _describe(exc, Recipe, "") + errors
        recipe = None
    if recipe is not None and not errors:
        errors = _name_clashes(recipe.model_dump(mode="json")["analyses"])
    if len(errors) == 1:
        raise RecipeError(f"invalid recipe: {errors[0]}")
    if errors:
        raise RecipeError("invalid recipe:\n" + "\n".join(f"  - {e}" for e in errors))
    return recipe


def result_names(analyses: list[dict]) -> list[str]:
    """Each analysis's result name: its `name`, else its kind (with the index when a kind repeats)."""
    unnamed = [a["kind"] for a in analyses if not a.get("name")]
    return [a.get("name") or (a["kind"] if unnamed.count(a["kind"]) == 1 else f"{a['kind']}_{i}")
            for i, a in enumerate(analyses)]


def _name_clashes(analyses: list[dict]) -> list[str]:
    """Two analyses writing one result file: the second would be taken for finished and never run."""
    names = result_names(analyses)
    return [f"analyses.{j}.name: {name!r} is also the result name of analyses.{names.index(name)} ({name}.nc); "
            "give each analysis its own name" for j, name in enumerate(names) if name in names[:j]]


def _parse_analysis(item: Any, where: str, errors: list[str]) -> list[AnalysisSpec]:
    if not isinstance(item, dict) or "kind" not in item:
        errors.append(f"{where}: each analysis is a mapping with a 'kind' ({', '.join(ANALYSES)})")
        return []
    kind = item["kind"]
    spec_cls = ANALYSES.get(kind) if isinstance(kind, str) else None
    if spec_cls is None:
        errors.append(
            f"{where}.kind: unknown analysis {kind!r}{_suggest(kind, ANALYSES)}; known: {', '.join(ANALYSES)}"
        )
        return []
    try:
        spec = spec_cls.model_validate(item)
    except ValidationError as exc:
        errors.extend(_describe(exc, spec_cls, where))
        return []
    try:
        expand(spec, where)  # every swept combination must be a valid spec too
    except UserError as exc:
        errors.append(str(exc))
        return []
    return [spec]


# the tags pydantic puts in an error's location for each branch of a union (`int | str` -> 'int', 'str'); no
# recipe field is named like one
UNION_TAG = re.compile(r"(int|str|float|bool|bytes|none|constrained-\w+|[a-z-]+\[.*\]|[A-Z]\w*)")


def _describe(exc: ValidationError, model: type[BaseModel], prefix: str) -> list[str]:
    """One line per field: union branches (`batch_size.int`, `batch_size.str`) merge into one message."""
    by_path: dict[str, list[dict]] = {}
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and UNION_TAG.fullmatch(p))]
        loc = [str(p) if re.fullmatch(r"[\w-]+", str(p)) else repr(str(p)) for p in loc]
        by_path.setdefault(".".join(([prefix] if prefix else []) + loc), []).append({**err, "loc_names": loc})
    out = []
    for path, errs in by_path.items():
        err = errs[0]
        msgs = list(dict.fromkeys(re.sub(r" or instance of \w+| after validation", "",
                                         e["msg"].removeprefix("Value error, ")) for e in errs))
        if err["type"] == "extra_forbidden":
            siblings = _fields_at(model, err["loc"][:-1])
            name = err["loc_names"][-1]
            out.append(f"{path}: unknown field{_suggest(name, siblings)}; allowed here: {', '.join(siblings)}")
        elif len(msgs) == 1 and msgs[0].startswith(path + "."):
            out.append(msgs[0])  # a cross-field check naming its own field
        else:
            msg = msgs[0] if len(msgs) == 1 else "expected " + " or ".join(
                m.removeprefix("Input should be ") for m in msgs)
            got = err.get("input")
            shown = "" if isinstance(got, dict) or err["type"] == "missing" or "(got " in msg else f" (got {got!r})"
            out.append(f"{path}: {msg}{shown}")
    return out


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
    return list(model.model_fields)


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
