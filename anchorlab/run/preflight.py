"""The checks that need the encoded prompts (token roles) but no weights: a run makes them before it
loads the weights or creates its folder, and `anchorlab validate` makes them too, so the two agree."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..analyses import Context
from ..engines.autobatch import parse_bytes
from ..errors import UserError
from ..labels import store as labels_store
from ..models.loading import load_model
from ..recipe import result_names
from ..rows.compiler import compile_rows, prompt_style
from .plan import make_plan
from .sweeps import expand


def prompt_rows(recipe, samples) -> list:
    """The run's rows, encoded with the model's tokenizer and processor on a weightless model (the
    same ids and roles as with weights), after every analysis has checked them."""
    m = recipe.model
    # the attention implementation does not change ids or roles (and flash-attn need not be installed here)
    bundle = load_model(m.id, m.dtype, "cpu", "sdpa", m.revision, weights=False)
    rows = compile_rows(bundle, samples, recipe.data.tasks, prompt_style(recipe.data.prompt), on_unusable="skip")
    check_prompts(recipe, rows)
    check_budget(recipe, bundle, rows)
    d = recipe.data
    if d.labels and (d.filter != "all" or any(a.selection() not in ("data", "all") for a in recipe.analyses)):
        labels_store.reuse(d.labels, recipe, rows)  # the stored labels fit this model, rule, prompt and data
    return rows


def check_prompts(recipe, rows) -> None:
    """Every analysis (every swept combination) against the prompts' token roles, all problems at once."""
    names = result_names([a.model_dump(mode="json") for a in recipe.analyses])
    problems: list[str] = []
    for i, (spec, name) in enumerate(zip(recipe.analyses, names)):
        for _, sub in expand(spec, f"analyses.{i}"):
            problems += [p for p in sub.check_rows(rows, f"analyses[{name}]") if p not in problems]
    if problems:
        raise UserError("; ".join(problems))


def check_budget(recipe, bundle, rows) -> None:
    """`batch_size: auto` under a set memory_budget: the run's plan is made now, on the weightless model, so
    the labels and every analysis are found to fit a batch (or not) before any compute, not when the run
    reaches that analysis after computing the earlier ones."""
    if recipe.batch_size != "auto" or recipe.memory_budget is None:
        return
    ctx = Context(bundle=bundle, backend=None, seed=recipe.seed, style=prompt_style(recipe.data.prompt))
    make_plan(recipe, bundle, rows, ctx, parse_bytes(recipe.memory_budget))


def check_writable(out: Path) -> None:
    """The run folder could be created and written, found without creating it (for `validate`): a
    folder made and removed in its nearest existing parent."""
    base = Path(os.path.abspath(out))
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise UserError(f"output: cannot write to {out} ({base} is a file)")
    try:
        os.rmdir(tempfile.mkdtemp(dir=base, prefix=".anchorlab-write-check-"))
    except OSError as exc:
        raise UserError(f"output: cannot write to {out} ({exc.strerror or exc})") from None
