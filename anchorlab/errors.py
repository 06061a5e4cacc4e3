"""Errors a user can act on: the CLI prints their message as one line, without a traceback. Also the one
place that reads a user's file (recipe, data, dictionary, labels, rankings, circuit), so that every file
problem reads the same way: `FIELD: PATH: what is wrong`."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any


class UserError(ValueError):
    """Bad input (recipe, data, model folder); the message names what is wrong and where."""


FORMATS = ("text", "json", "yaml", "netcdf")
KINDS = {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number"}


def read_file(path: str | Path, field: str = "", fmt: str = "text", expect: type | None = None,
              shape: str = "") -> Any:
    """The contents of a user's file: text, parsed JSON or YAML (a key given twice is refused), or an
    xarray Dataset (netcdf, loaded). Any problem is one UserError `FIELD: PATH: ...` (not found, a
    directory, unreadable, not UTF-8, not valid JSON/YAML/netCDF, or not `expect`, described as `shape`)."""
    path = Path(path)
    where = f"{field}: {path}" if field else str(path)
    if fmt not in FORMATS:
        raise ValueError(f"read_file: unknown format {fmt!r}")
    if path.is_dir():
        raise UserError(f"{where}: is a directory, not a file")
    if not path.exists():
        raise UserError(f"{where}: not found")
    if fmt == "netcdf":
        return _netcdf(path, where)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    data = text if fmt == "text" else parse_text(text, fmt, where)
    if expect is not None and not isinstance(data, expect):
        got = "nothing" if data is None else KINDS.get(type(data), f"a {type(data).__name__}")
        raise UserError(f"{where}: expected {shape or KINDS.get(expect, expect.__name__)}, got {got}")
    return data


def parse_text(text: str, fmt: str, where: str) -> Any:
    """JSON or YAML text -> data; a syntax error is one UserError naming `where`, the line and the column."""
    if fmt == "json":
        import json

        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    import yaml

    loader = _unique_key_loader()
    try:
        return yaml.load(text, Loader=loader)
    except loader.DuplicateKey as exc:
        raise UserError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{where}: not valid YAML ({' '.join(str(problem).split())}{at})") from None


def _netcdf(path: Path, where: str):
    import xarray as xr

    try:
        return xr.load_dataset(path, engine="h5netcdf")
    except OSError as exc:
        if exc.errno is not None:  # the file system's refusal, not the format's
            raise UserError(f"{where}: cannot read it ({exc.strerror or exc})") from None
        raise UserError(f"{where}: not a readable netCDF file, truncated or of another format ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - h5py / xarray raise many types for a damaged file
        raise UserError(f"{where}: not a readable netCDF file, truncated or of another format "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None


@functools.cache
def _unique_key_loader():
    """yaml's SafeLoader, refusing a key given twice in one mapping (plain YAML keeps the last silently)."""
    import yaml

    class DuplicateKey(yaml.YAMLError):
        pass

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise DuplicateKey(f"line {key_node.start_mark.line + 1}: key {key!r} given twice "
                                       f"(first on line {seen[key] + 1})")
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    UniqueKeyLoader.DuplicateKey = DuplicateKey
    return UniqueKeyLoader
