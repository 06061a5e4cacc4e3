"""Every shipped recipe runs as shipped, from the repository root, made small only through `--set`.

mc2_signal.yaml is the one recipe that needs what no test machine has (Qwen2.5-VL-7B from the hub and
the COCO 2014 images): it runs with those two swapped for a tiny Qwen2.5-VL checkpoint of the real class
and stand-in images, everything else as shipped."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from anchorlab.models.tiny import tiny_model_path

pytestmark = pytest.mark.slow  # every shipped recipe, each in a subprocess
ROOT = Path(__file__).resolve().parents[2]
SHARED_MC2 = ROOT.parent / "shared" / "data" / "mc2" / "evaluate_final.json"
RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
# what keeps each recipe small (the recipes' own defaults are study-sized)
SMALL = {"paper": ["data.n_samples=16"], "heads_block": ["data.n_samples=12"], "heads_amplify": ["data.n_samples=24"],
         "anchored": ["data.n_samples=8", "analyses.4.seeds=2"], "quickstart": ["data.n_samples=8"],
         "anchored-flawed": ["data.n_samples=24", "analyses.1.seeds=2"], "head_patching": ["data.n_samples=8"],
         "family": ["data.n_samples=8", "analyses.3.seeds=2"]}


def run(recipe: str, out: Path, sets: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "anchorlab", "run", f"recipes/{recipe}.yaml", "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r != "mc2_signal"])
def test_shipped_recipe_runs_as_shipped(tmp_path, recipe):
    sets = SMALL.get(recipe, ["data.n_samples=8"] if "source: toy" in (ROOT / "recipes" / f"{recipe}.yaml").read_text()
                     else [])
    done = run(recipe, tmp_path / recipe, sets)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert list((tmp_path / recipe).glob("*.nc")), "no result written"


@pytest.mark.skipif(not SHARED_MC2.is_file(), reason="MC² text data not present")
def test_mc2_recipe_with_a_tiny_model_and_standin_images(tmp_path):
    images = tmp_path / "coco"
    made = subprocess.run([sys.executable, "-m", "anchorlab", "data", "standins", str(SHARED_MC2), "--out", str(images),
                           "--categories", "color"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    done = run(
        "mc2_signal",
        tmp_path / "mc2",
        [
            f"model.id={tiny_model_path('qwen2_5_vl')}",
            f"data.image_root={images}",
            "data.categories=[color]",
            "data.n_samples=4",
            "model.dtype=float32",
            "data.filter=all",
        ],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "mc2" / "signal.nc").is_file()
