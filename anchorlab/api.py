"""The Python entry point: the same as `anchorlab run`, returning the xarray datasets."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from .recipe import load_recipe


def run(
    recipe: str | Path, out: str | Path | None = None, overrides: list[str] = (), resume: bool = False,
    force: bool = False, remote: bool | str = False,
) -> dict[str, xr.Dataset]:
    """`remote=True` runs on NDIF (host NDIF_HOST, key NDIF_API_KEY) as `backend: ndif` would;
    `remote="local"` is nnsight's offline simulation of that (serialized as for the server, run here)."""
    from .executor import run_recipe

    overrides = list(overrides) + (["backend=ndif"] if remote else [])
    parsed, text = load_recipe(recipe, overrides)
    return run_recipe(parsed, text, out, overrides, resume=resume, force=force, simulate_remote=remote == "local")
