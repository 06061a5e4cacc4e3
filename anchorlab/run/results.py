"""Labelled results on disk: provenance attrs (docs/method.md §5) and atomic netCDF writes."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from ..errors import UserError
from ..models.loading import model_files
from ..recipe import Recipe, sha256
from .files import atomic_write
from .sweeps import real_cells

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


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, cached by (path, size, mtime) so a 15 GB checkpoint is read once."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_file = Path(os.environ.get("ANCHORLAB_CACHE") or Path.home() / ".cache" / "anchorlab") / "sha256.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, json.JSONDecodeError):
        cache = {}
    if key not in cache:
        with open(path, "rb") as fh:
            cache[key] = hashlib.file_digest(fh, "sha256").hexdigest()
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only cache only costs re-hashing
    return cache[key]


def samples_sha256(samples) -> str:
    """One hash of the samples as the run sees them: ids, texts, answers, forms and image pixels."""
    h = hashlib.sha256()
    for s in samples:
        fields = {k: v for k, v in vars(s).items() if k != "image"}
        h.update(json.dumps(fields, sort_keys=True, default=str).encode())
        if s.image is not None:
            h.update(str(s.image.size).encode() + np.asarray(s.image.convert("RGB")).tobytes())
    return h.hexdigest()


def input_hashes(recipe: Recipe, samples, data_attrs: dict, facts) -> dict[str, str]:
    """What a resumed run must find unchanged, by name: the data as loaded (texts and images), the
    data file, dictionary and reused labels, and the weights, config and tokenizer files (or the hub revision)."""
    out = {"data_samples": samples_sha256(samples)}
    d = recipe.data
    if d.path:
        out["data_file"] = file_sha256(Path(d.path))
    dictionary = data_attrs.get("data_dictionary", "")
    if dictionary and Path(dictionary).is_file():
        out["data_dictionary"] = file_sha256(Path(dictionary))
    if d.labels:
        labels = Path(d.labels) / "labels.nc" if Path(d.labels).is_dir() else Path(d.labels)
        if labels.is_file():
            out["data_labels"] = file_sha256(labels)
    for f in facts.weight_files:
        out[f"weights:{f.name}"] = file_sha256(f)
    if facts.weight_files:  # a local folder: hashed now; a hub id's snapshot is hashed in the result attrs
        out.update({f"model_file:{f.name}": file_sha256(f) for f in model_files(facts.path)})
    else:
        out["weights_revision"] = recipe.model.revision or "unpinned (hub default branch)"
    return out


@functools.lru_cache(maxsize=1)
def anchorlab_commit() -> str:
    """The git commit anchorlab runs from (with `+dirty` for uncommitted changes), or 'not a checkout'."""
    root = Path(__file__).resolve().parents[2]  # anchorlab/run/results.py -> the checkout
    if not (root / ".git").exists():
        return "not a checkout"
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) if head else "unknown"


def provenance(recipe: Recipe, recipe_text: str, overrides, bundle, backend: str, started: str,
               inputs: dict[str, str] | None = None) -> dict:
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
        "device": str(bundle.device) if bundle.has_weights else "ndif server (client holds no weights)",
        "started": started,
        "finished": now(),
        "anchorlab_commit": anchorlab_commit(),
    }
    files = model_files(bundle.path, bundle.revision)
    if files:
        attrs["model_files_dir"] = str(files[0].parent)
    attrs.update({f"sha256_model_file_{f.name}": file_sha256(f) for f in files})
    d = recipe.data
    if d.path:  # data_path (as the recipe gives it) comes with the data attrs; this is where it was
        attrs["data_path_absolute"] = str(Path(d.path).resolve())
        attrs["data_image_root_absolute"] = str(Path(d.image_root or Path(d.path).parent).resolve())
    attrs.update({f"sha256_{k.replace(':', '_')}": v for k, v in (inputs or {}).items()})
    attrs.update({f"version_{k}": v for k, v in package_versions().items()})
    return attrs


def check_finite(ds: xr.Dataset, name: str) -> None:
    """A NaN or inf in a result is a failed computation, never a value to save silently; only a
    ragged sweep's padding (sweeps.stack, marked by a mask) may be NaN."""
    for var, arr in ds.data_vars.items():
        if arr.dtype.kind != "f":
            continue
        bad_cells = ~np.isfinite(arr)
        mask = real_cells(ds, var)
        if mask is not None:
            bad_cells = bad_cells & mask
        if bad_cells.any():
            bad = int(bad_cells.sum())
            raise UserError(f"result {name}: variable {var!r} has {bad} NaN/inf value(s); nothing was written")


ESCAPED = "escaped"  # variable attr: its strings hold control characters as \\xNN and \\ as \\\\


def escape_text(text: str) -> str:
    """Generated text, storable in netCDF (h5netcdf strings cannot hold NUL): backslash doubled,
    every control character but newline and tab as \\xNN. `unescape_text` inverts it exactly."""
    out = text.replace("\\", "\\\\")
    return "".join(f"\\x{ord(c):02x}" if (ord(c) < 32 and c not in "\n\t") or ord(c) == 127 else c for c in out)


def unescape_text(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 2] == "\\":
            out.append("\\")
            i += 2
        elif text[i] == "\\" and text[i + 1 : i + 2] == "x":
            out.append(chr(int(text[i + 2 : i + 4], 16)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _needs_escape(text: str) -> bool:
    return "\\" in text or any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in text)


def escape_strings(ds: xr.Dataset) -> xr.Dataset:
    """String variables that need it are escaped (and marked with the `escaped` attr); others untouched."""
    for name, var in ds.data_vars.items():
        if var.dtype.kind in "OU" and any(_needs_escape(str(v)) for v in np.ravel(var.values)):
            escaped = np.vectorize(lambda v: escape_text(str(v)), otypes=[object])(var.values)
            ds[name] = var.copy(data=escaped)
            ds[name].attrs[ESCAPED] = "control characters as \\xNN, backslash doubled (results.unescape_text)"
    return ds


def write_dataset(ds: xr.Dataset, path: Path) -> Path:
    """Write via a temporary file and rename, so a reader never sees half a result. The netCDF is
    built in memory first: a full disk then fails in a plain file write (one line, no temporary file
    left), never inside HDF5. Strings are escaped on a copy: the caller's dataset is left as it is."""
    check_finite(ds, path.name)
    data = escape_strings(ds.copy()).to_netcdf(engine="h5netcdf")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, bytes(data))
    return path
