"""Fingerprint every shipped recipe's results, to prove a refactor left them bit-identical.

    python scripts/check_identical.py record BEFORE.json   # on the old tree
    python scripts/check_identical.py compare BEFORE.json  # on the new tree: exit 1 on any difference
                                                           # (arrays the new tree adds are listed, not failed)

Each recipe runs from the repository root, small (--set overrides below), into a scratch folder;
every data variable and coordinate of every .nc file is hashed from its raw bytes (attrs such as
timestamps and commits are left out: they are meant to change).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
# recipe -> overrides that keep it small; every shipped recipe that runs on this machine
RECIPES = {
    "quickstart": ["data.n_samples=16"],
    "knockout": ["data.n_samples=8"],
    "path_blocking": ["data.n_samples=8"],
    "attribution": ["data.n_samples=8"],
    "heads_block": ["data.n_samples=16"],
    "heads_amplify": [],
    "jsonl_signal": [],
    "paper": [],
}


def fingerprint(folder: Path) -> dict[str, str]:
    out = {}
    for nc in sorted(folder.rglob("*.nc")):
        with xr.open_dataset(nc) as ds:
            for name in sorted(list(ds.data_vars) + list(ds.coords)):
                values = np.asarray(ds[name].values)
                data = values.astype(str).tobytes() if values.dtype.kind in "OUS" else values.tobytes()
                key = f"{nc.relative_to(folder)}:{name}"
                out[key] = hashlib.sha256(data + str(values.shape).encode()).hexdigest()[:16]
    return out


def run_all() -> dict[str, dict[str, str]]:
    prints = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, sets in RECIPES.items():
            out = Path(tmp) / name
            cmd = [sys.executable, "-m", "anchorlab", "run", f"recipes/{name}.yaml", "--out", str(out)]
            for s in sets:
                cmd += ["--set", s]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode:
                prints[name] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            else:
                prints[name] = fingerprint(out)
            print(f"{name}: {len(prints[name])} arrays", flush=True)
    return prints


if __name__ == "__main__":
    mode, path = sys.argv[1], Path(sys.argv[2])
    now = run_all()
    if mode == "record":
        path.write_text(json.dumps(now, indent=1, sort_keys=True))
        sys.exit(0)
    before = json.loads(path.read_text())
    diffs = sorted(f"{r}:{k}" for r in before for k in before[r] if before[r][k] != now.get(r, {}).get(k))
    added = sorted(f"{r}:{k}" for r in now for k in now[r] if k not in before.get(r, {}))
    for d in diffs:
        print("differs:", d)
    for a in added:
        print("new (not in the old results):", a)
    total = sum(len(v) for v in before.values())
    print(f"{total - len(diffs)} of {total} arrays bit-identical over {len(before)} recipes; {len(added)} new arrays")
    sys.exit(1 if diffs else 0)
