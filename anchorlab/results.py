"""Labelled results on disk: provenance attrs (SPEC §5) and atomic netCDF writes."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from .errors import UserError

from .recipe import Recipe, sha256

PACKAGES = ("anchorlab", "nnsight", "transformers", "torch", "xarray", "numpy")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(recipe: Recipe, recipe_text: str, overrides, bundle, backend: str, started: str) -> dict:
    cfg = bundle.model.config
    attrs = {
        "recipe": recipe_text,
        "recipe_sha256": sha256(recipe_text),
        "recipe_resolved": yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False),
        "overrides": "\n".join(overrides),
        "model_id": bundle.model_id,
        "model_path": str(bundle.path),
        "model_revision": bundle.revision or getattr(cfg, "_commit_hash", None) or "local",
        "model_family": bundle.adapter.family,
        "model_dtype": recipe.model.dtype,
        "attn_implementation": recipe.model.attn_implementation,
        "attn_implementation_used": str(getattr(bundle.lm_config, "_attn_implementation", None)
                                        or recipe.model.attn_implementation),
        "seed": recipe.seed,
        "backend": backend,
        "device": str(bundle.device),
        "started": started,
        "finished": now(),
    }
    attrs.update({f"version_{k}": v for k, v in package_versions().items()})
    return attrs


def check_finite(ds: xr.Dataset, name: str) -> None:
    """A NaN or inf in a result is a failed computation, never a value to save silently."""
    for var, arr in ds.data_vars.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr.values).all():
            bad = int((~np.isfinite(arr.values)).sum())
            raise UserError(f"result {name}: variable {var!r} has {bad} NaN/inf value(s); nothing was written")


def write_dataset(ds: xr.Dataset, path: Path) -> Path:
    """Write via a temporary file and rename, so a reader never sees half a result."""
    check_finite(ds, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    ds.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, path)
    return path
