"""Same recipe, same seed, same machine -> bit-identical results, seed and versions recorded."""
import pytest
import xarray as xr
import yaml

import anchorlab
from anchorlab.run.executor import WORK_ATTRS

pytestmark = pytest.mark.slow  # two full runs
TIME_ATTRS = {"started", "finished", *WORK_ATTRS}


def test_two_runs_are_bit_identical(tmp_path, random_toy_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "det",
                "model": {"id": str(random_toy_path)},
                "data": {"source": "toy", "n_samples": 4, "filter": "all"},
                "analyses": [
                    {"kind": "signal", "k": 2},
                    {"kind": "knockout", "pathways": ["vision->last", "context->instruction"]},
                ],
                "batch_size": 3,
                "seed": 11,
            }
        )
    )
    first = anchorlab.run(recipe, out=tmp_path / "a")
    second = anchorlab.run(recipe, out=tmp_path / "b")
    for name in ("signal", "knockout"):
        a, b = first[name], second[name]
        xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
        assert {k: v for k, v in a.attrs.items() if k not in TIME_ATTRS} == {
            k: v for k, v in b.attrs.items() if k not in TIME_ATTRS}
        assert a.attrs["seed"] == 11 and a.attrs["version_torch"] and a.attrs["version_transformers"]
        on_disk = xr.load_dataset(tmp_path / "a" / f"{name}.nc")
        xr.testing.assert_identical(on_disk.drop_attrs(), a.drop_attrs())
