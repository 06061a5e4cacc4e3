"""The Python entry point: the same as `anchorlab run`, returning the xarray datasets."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from .recipe import load_recipe


def run(
    recipe: str | Path, out: str | Path | None = None, overrides: list[str] = (), resume: bool = False,
    force: bool = False,
) -> dict[str, xr.Dataset]:
    from .executor import run_recipe

    parsed, text = load_recipe(recipe, list(overrides))
    return run_recipe(parsed, text, out, list(overrides), resume=resume, force=force)
