"""Result files: ragged sweeps are padded (never refused after compute), the writer leaves the caller's
dataset alone, and a truncated .nc is one line naming it in `plot` and `provenance`."""
from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from anchorlab.cli import main
from anchorlab.errors import UserError
from anchorlab.run.results import check_finite, write_dataset
from anchorlab.run.sweeps import stack


def attribution_like(n_shared: int, g: int, seed: int) -> xr.Dataset:
    """What an attribution reduce returns, in miniature: shared heads (int ids, ragged), a top-G list
    (float scores, ragged when top_g is swept) and a per-layer curve (not ragged)."""
    rng = np.random.default_rng(seed)
    ds = xr.Dataset(coords={"layer": [0, 1, 2], "shared": np.arange(n_shared), "rank": np.arange(1, g + 1)},
                    attrs={"analysis": "attribution", "n_shared": n_shared, "top_g": g})
    ds["curve"] = ("layer", rng.normal(size=3))
    ds["shared_layer"] = ("shared", rng.integers(0, 3, n_shared).astype(np.int64))
    ds["shared_head"] = ("shared", rng.integers(0, 4, n_shared).astype(np.int64))
    ds["top_score"] = ("rank", rng.normal(size=g))
    return ds


@pytest.mark.parametrize("sizes", [[(2, 3), (3, 3)], [(0, 2), (2, 3)], [(0, 2), (0, 2)], [(3, 1), (0, 4)]])
def test_ragged_sweep_is_padded_and_written(tmp_path, sizes):
    parts = [({"k": k}, attribution_like(n, g, k)) for k, (n, g) in enumerate(sizes, start=1)]
    out = stack(parts)
    check_finite(out, "sweep")  # padding passes the finiteness check
    back = xr.load_dataset(write_dataset(out, tmp_path / "sweep.nc"))
    width = max(n for n, _ in sizes)
    assert back.sizes["shared"] == width and back["shared_layer"].dtype.kind == "i"
    for (combo, part) in parts:
        one = back.sel(combo)
        n, g = part.sizes["shared"], part.sizes["rank"]
        np.testing.assert_array_equal(one["curve"].values, part["curve"].values)
        if "shared_valid" in back:  # ragged: the real entries first, -1 after, the mask says which
            np.testing.assert_array_equal(one["shared_valid"].values, np.arange(width) < n)
            assert (one["shared_layer"].values[n:] == -1).all()
        np.testing.assert_array_equal(one["shared_layer"].values[:n], part["shared_layer"].values)
        np.testing.assert_array_equal(one["shared_head"].values[:n], part["shared_head"].values)
        np.testing.assert_array_equal(one["top_score"].values[:g], part["top_score"].values)
        assert np.isnan(one["top_score"].values[g:]).all()
    if len({n for n, _ in sizes}) > 1:
        assert back.attrs["n_shared"] == "; ".join(f"k={k}: {n}" for k, (n, _) in enumerate(sizes, start=1))
        assert back["shared_layer"].attrs["padding"].startswith("-1 where shared_valid is false")
    else:
        assert back.attrs["n_shared"] == sizes[0][0]


def test_padding_never_hides_a_real_nan():
    out = stack([({"k": 1}, attribution_like(1, 2, 0)), ({"k": 2}, attribution_like(1, 4, 1))])
    out["top_score"][0, 1] = np.nan  # a real entry of k=1 (its top-G has 2 entries)
    with pytest.raises(UserError, match=r"variable 'top_score' has 1 NaN/inf value\(s\); nothing was written"):
        check_finite(out, "sweep")


def test_the_writer_leaves_the_callers_dataset_alone(tmp_path):
    raw = ["answer\x00with NUL", "esc \x1b[31m red", "back\\slash"]
    ds = xr.Dataset({"answer": ("sample", np.array(raw, dtype=object))})
    write_dataset(ds, tmp_path / "labels.nc")
    assert list(ds["answer"].values) == raw and "escaped" not in ds["answer"].attrs  # in memory: raw
    with xr.open_dataset(tmp_path / "labels.nc") as back:  # on disk: escaped, and marked
        assert [str(v) for v in back["answer"].values] == ["answer\\x00with NUL", "esc \\x1b[31m red",
                                                           "back\\\\slash"]
        assert "escaped" in back["answer"].attrs


def test_a_truncated_result_is_one_line_in_plot_and_provenance(tmp_path):
    path = write_dataset(
        xr.Dataset({"x": ("a", np.arange(50.0))}, attrs={"analysis": "signal"}), tmp_path / "signal.nc"
    )
    path.write_bytes(path.read_bytes()[:200])
    line = rf"error: {re.escape(str(path))}: not a readable netCDF file, truncated or of another format \([^\n]+\)\n"
    for args in (["plot", str(tmp_path)], ["provenance", str(path)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and re.fullmatch(line, result.output), result.output


def test_model_files_of_a_hub_id_come_from_its_cached_snapshot(tmp_path, monkeypatch):
    """A hub id's config and tokenizer files are hashed from the local snapshot its revision resolves to."""
    from huggingface_hub import constants

    from anchorlab.models.loading import model_files

    repo = tmp_path / "models--org--vlm"
    for rev, text in (("abc123", "{}"), ("def456", "{\"old\": 1}")):
        snapshot = repo / "snapshots" / rev
        snapshot.mkdir(parents=True)
        for name in ("config.json", "tokenizer.json", "chat_template.jinja"):
            (snapshot / name).write_text(text)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    names = ["config.json", "tokenizer.json", "chat_template.jinja"]
    assert model_files("org/vlm") == [repo / "snapshots" / "abc123" / n for n in names]
    assert model_files("org/vlm", "def456") == [repo / "snapshots" / "def456" / n for n in names]
    assert model_files("org/not-cached") == []
