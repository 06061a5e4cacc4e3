"""`anchorlab provenance RESULT.nc`: what produced a result, read back from the attrs results.provenance
wrote (model and the hashes of its files, data, recipe, package versions, times)."""
from __future__ import annotations

from pathlib import Path

import xarray as xr
import yaml

from ..errors import UserError

# hash attrs (sha256_<key>) shown under the data, by what they hash
DATA_HASHES = {"data_samples": "samples as loaded", "data_file": "data file", "data_dictionary": "dictionary",
               "data_labels": "reused labels"}


def _hashes(attrs: dict, prefixes: tuple[str, ...], names: dict | None = None) -> list[str]:
    """`  name  sha256 HEX` for each sha256_<prefix><name> attr, aligned."""
    shown = {}
    for prefix in prefixes:
        shown.update({k: (names or {}).get(k.removeprefix("sha256_"), k.removeprefix(f"sha256_{prefix}"))
                      for k in attrs if k.startswith(f"sha256_{prefix}") and k != "sha256_weights_revision"})
    width = max((len(v) for v in shown.values()), default=0)
    return [f"  {v:{width}s}  sha256 {attrs[k]}" for k, v in shown.items()]


def describe(ds: xr.Dataset, path: Path) -> list[str]:
    a = dict(ds.attrs)
    if "model_id" not in a or "recipe_sha256" not in a:
        raise UserError(f"{path}: no provenance attrs (model_id, recipe_sha256): not a result anchorlab wrote")
    try:
        name = (yaml.safe_load(a.get("recipe_resolved", "")) or {}).get("name", "unnamed")
    except yaml.YAMLError:
        name = "unreadable"
    get = lambda key: a.get(key, "not recorded")  # noqa: E731 - results from older versions lack some attrs
    lines = [f"{path}: {a.get('analysis', 'labels' if 'label' in ds else 'result')}"
             + (f" (sweep of {a['ablation']})" if "ablation" in a else ""),
             f"recipe: {name}, sha256 {a['recipe_sha256']}" + (f"; overrides: {a['overrides']}" if a.get("overrides")
                                                               else ""),
             f"model: {a['model_id']} ({get('model_family')} family, revision {get('model_revision')}, "
             f"{get('model_dtype')}, attention {get('attn_implementation_used')})",
             f"  path {get('model_path')}" + (f", files from {a['model_files_dir']}" if "model_files_dir" in a else "")]
    lines += _hashes(a, ("weights_", "model_file_"))
    if "sha256_weights_revision" in a:
        lines.append(f"  hub revision pinned: {a['sha256_weights_revision']}")
    lines.append(f"data: {get('data_source')} source"
                 + (f", path {a['data_path']} (absolute {get('data_path_absolute')})" if "data_path" in a else "")
                 + (f", dictionary {a['data_dictionary']}" if "data_dictionary" in a else ""))
    lines += _hashes(a, ("data_",), DATA_HASHES)
    lines += [f"run: backend {get('backend')} on {get('device')}, seed {get('seed')}, rows {get('rows')}, "
              f"filter {get('data_filter')}",
              f"times: started {get('started')}, finished {get('finished')}",
              f"anchorlab commit {get('anchorlab_commit')}; versions: "
              + ", ".join(f"{k.removeprefix('version_')} {v}" for k, v in a.items() if k.startswith("version_"))]
    return lines
