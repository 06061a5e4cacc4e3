"""Checks made before any forward pass (issue 25), each against an independent computation: the engine's
own knockout masks, Φ's site positions, window_layers by brute force, files written by hand."""
from __future__ import annotations

import http.server
import itertools
import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from anchorlab.analyses.attribution import AttributionSpec
from anchorlab.analyses.head_interventions import HeadsSpec
from anchorlab.analyses.knockout import KnockoutSpec, window_note
from anchorlab.data.records import Record, outside
from anchorlab.data.toy import generate_samples
from anchorlab.engines.knockout import role_mask
from anchorlab.errors import UserError, read_file
from anchorlab.interventions.knockout import knocked_edges, window_layers
from anchorlab.models import loading
from anchorlab.models.loading import HubUnreachable, ModelLoadError, hub_access, load_model, resolve_model_path
from anchorlab.recipe import DataSpec, RecipeError, parse_recipe
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import compile_rows
from anchorlab.rows.layout import site_positions
from anchorlab.rows.prompts import PromptStyle
from anchorlab.rows.roles import ROLES


@pytest.fixture(scope="module")
def toy_rows():
    """toy:arbiter's prompts (weightless model), the instruction in each of its three places."""
    bundle = load_model("toy:arbiter", weights=False)
    drawn = generate_samples(3, seed=0)
    samples = [replace(s, instruction_position=p)
               for s, p in zip(drawn, ("before_context", "after_context", "after_question"))]
    rows = compile_rows(bundle, samples, ["vf", "tf"], PromptStyle())
    return rows, collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)


def test_read_file_names_every_problem(tmp_path):
    with pytest.raises(UserError, match=rf"^data.path: {tmp_path}/none.json: not found$"):
        read_file(tmp_path / "none.json", "data.path", "json")
    with pytest.raises(UserError, match=rf"^x: {tmp_path}: is a directory, not a file$"):
        read_file(tmp_path, "x")
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9")
    with pytest.raises(UserError, match=r"latin.txt: not UTF-8 text \(unexpected end of data at byte 3\)"):
        read_file(tmp_path / "latin.txt", "f")
    (tmp_path / "a.json").write_text('{"a": 1,\n "b": }')
    with pytest.raises(UserError, match=r"a.json: not valid JSON \(Expecting value at line 2, column 7\)"):
        read_file(tmp_path / "a.json", "f", "json")
    (tmp_path / "a.yaml").write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(UserError, match=r"a.yaml: not valid YAML \(.* at line 2, column 2\)"):
        read_file(tmp_path / "a.yaml", "f", "yaml")
    (tmp_path / "d.yaml").write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(UserError, match=r"d.yaml: line 3: key 'a' given twice \(first on line 1\)$"):
        read_file(tmp_path / "d.yaml", "f", "yaml")
    (tmp_path / "l.json").write_text("[1, 2]")
    with pytest.raises(UserError, match=r"l.json: expected a circuit mapping, got a list$"):
        read_file(tmp_path / "l.json", "f", "json", expect=dict, shape="a circuit mapping")
    assert read_file(tmp_path / "l.json", "f", "json", expect=list) == [1, 2]
    xr.Dataset({"v": ("x", np.arange(500.0))}).to_netcdf(tmp_path / "r.nc", engine="h5netcdf")
    assert read_file(tmp_path / "r.nc", fmt="netcdf")["v"].values.sum() == sum(range(500))
    data = (tmp_path / "r.nc").read_bytes()
    (tmp_path / "r.nc").write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError, match=r"r.nc: not a readable netCDF file, truncated or of another format"):
        read_file(tmp_path / "r.nc", "heads_from", "netcdf")


def test_pathways_without_an_edge_are_exactly_those_the_engine_would_not_knock(toy_rows):
    """check_rows refuses src->dst iff the engine's own mask (knocked_edges of role_mask) is empty in every prompt."""
    rows, batch = toy_rows
    empty, kept = [], []
    for src, dst in itertools.product(ROLES, ROLES):
        p = f"{src}->{dst}"
        problems = KnockoutSpec(pathways=[p]).check_rows(rows, "analyses[knockout]")
        knocked = knocked_edges(role_mask(batch, rows, src, p), role_mask(batch, rows, dst, p))
        assert bool(problems) == (not knocked.any()), (p, problems)
        (empty if problems else kept).append(p)
        if problems:
            assert problems == [f"analyses[knockout].pathways: '{p}' removes no attention edge: under the causal mask "
                                f"a '{dst}' query reads only keys at or before it, and no '{dst}' position comes at or "
                                f"after a '{src}' position in any prompt (NSSD would be 0 everywhere)"]
    assert "last->vision" in empty and "vision->last" in kept and "vision->vision" in kept


def test_k_beyond_a_role_is_refused_at_its_largest_count(toy_rows):
    rows, batch = toy_rows
    for role in ("vision", "context", "instruction", "query", "last"):
        most = int(site_positions(batch, rows, role)[1].sum(-1).max())  # Φ's valid positions per prompt
        assert AttributionSpec(positions=role, k=most).check_rows(rows, "a") == []
        assert AttributionSpec(positions=role, k=most + 1).check_rows(rows, "a") == [
            f"a.k: {most + 1} is more than the {most} position(s) role '{role}' has in any prompt (Φ would average "
            f"all of them); set k to at most {most}"]


def test_window_note_follows_the_windows():
    for n_layers, width in itertools.product(range(1, 7), range(1, 16)):
        centres = list(range(n_layers))
        note = window_note(width, n_layers, centres)
        spans = {tuple(window_layers(c, width, n_layers)) for c in centres}
        assert (note is None) == (width <= n_layers), (n_layers, width)
        if note is not None:
            assert ("every centre knocks out the same layers" in note) == (len(spans) == 1), (n_layers, width, note)
            assert f"window {width} is wider than the model's {n_layers} layers" in note


def rankings(path: Path, layers=4, heads=8, tasks=("vf", "tf"), kind="attribution", ranked=True) -> str:
    rank = np.arange(len(tasks) * layers * heads).reshape(len(tasks), layers, heads) % (layers * heads) + 1
    data = {"head_rank": (("task", "layer", "head"), rank)} if ranked else {"x": ("task", np.zeros(len(tasks)))}
    xr.Dataset(data, coords={"task": list(tasks), "layer": range(layers), "head": range(heads)},
               attrs={"analysis": kind}).to_netcdf(path, engine="h5netcdf")
    return str(path)


def test_heads_from_is_read_before_compute(tmp_path, toy_rows):
    rows, _ = toy_rows
    spec = lambda path: HeadsSpec(kind="heads_block", heads_from=path)  # noqa: E731
    good = rankings(tmp_path / "good.nc")
    assert spec(good).check_model(4, 8, "w") == [] and spec(good).check_rows(rows, "w") == []
    other = rankings(tmp_path / "other.nc", 2, 4)
    assert spec(other).check_model(4, 8, "w") == [f"w.heads_from: {other} ranks 2 layers × 4 heads, this model has "
                                                  "4 × 8"]
    labels = rankings(tmp_path / "labels.nc", kind="labels")
    assert spec(labels).check_model(4, 8, "w") == [f"w.heads_from: {labels} is not an attribution result (its "
                                                   "analysis is labels)"]
    bare = rankings(tmp_path / "bare.nc", ranked=False)
    assert "has no head rankings" in spec(bare).check_model(4, 8, "w")[0]
    vf = rankings(tmp_path / "vf.nc", tasks=("vf",))
    assert spec(vf).check_rows(rows, "w") == [f"w.heads_from: {vf} has no rankings for task(s) tf (it has vf)"]
    assert spec(str(tmp_path / "missing.nc")).check_model(4, 8, "w") == []  # the executor names a missing file


def test_image_paths_outside_the_data_folder(tmp_path):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "link").symlink_to(tmp_path / "secret")

    def record(image):
        return Record("s", "q", "c", "a", "b", (root / image,), "f line 1")

    inside = [record("img/a.png"), record("img/../img/a.png"), record(str(root / "img" / "b.png")),
              record("link/x.png")]  # the user's own symlink is the user's layout
    leaving = [
        record("../secret/x.png"),
        record("img/../../x.png"),
        record(str(tmp_path / "x.png")),
        record("/etc/passwd"),
    ]
    assert outside(inside, root) == []
    assert [r for r, _ in outside(leaving, root)] == leaving
    described = DataSpec.model_fields["allow_outside_paths"]
    assert described.default is False and "'../'" in described.description


def test_model_ids_are_paths_or_hub_ids(tmp_path):
    assert resolve_model_path("org/name") == "org/name" and resolve_model_path("gpt2") == "gpt2"
    (tmp_path / "f.txt").write_text("x")
    for bad, said in ((str(tmp_path / "none"), f"{tmp_path}/none: not found"), ("a/b/c", "a/b/c: not found"),
                      ("../up", "../up: not found"), (str(tmp_path / "f.txt"), "is a file, not a model folder")):
        with pytest.raises(ModelLoadError, match=f"model.id '{bad}': .*{said}"):
            resolve_model_path(bad)


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_hub_access_decides_in_one_probe(tmp_path, monkeypatch):
    from huggingface_hub import constants

    server = http.server.HTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    try:
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert hub_access("org/model", None) == {}  # reachable: transformers goes ahead as usual
        monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
        with pytest.raises(HubUnreachable, match="not in the Hugging Face cache"):
            hub_access("org/model", None)
        snapshot = tmp_path / "models--org--model" / "snapshots" / "abc"
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text(json.dumps({"model_type": "llava"}))
        (tmp_path / "models--org--model" / "refs").mkdir()
        (tmp_path / "models--org--model" / "refs" / "main").write_text("abc")
        assert hub_access("org/model", None) == {"local_files_only": True}  # cached: the copy, no waiting
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        assert hub_access("org/model", None) == {}
        with pytest.raises(HubUnreachable, match="HF_HUB_OFFLINE is set"):
            hub_access("org/other", None)
    finally:
        server.shutdown()
        server.server_close()
    assert loading.HUB_PROBE_SECONDS <= 5


@pytest.mark.parametrize("patch, line", [
    ({"batch_size": [1]}, "invalid recipe: batch_size: give a number of prompts >= 1 or 'auto' (got [1])"),
    ({"batch_size": 0}, "invalid recipe: batch_size: give a number of prompts >= 1 or 'auto' (got 0)"),
    ({"memory_budget": "0GiB"}, "invalid recipe: memory_budget: give bytes (> 0) or a size such as 512MiB, 2GiB, "
                                "1.5GB (got '0GiB')"),
    ({"seed": -5}, "invalid recipe: seed: Input should be greater than or equal to 0 (got -5)"),
    ({"data": {"prompt": {"instructions": {"tf": ""}}}},
     "invalid recipe: data.prompt.instructions.tf: empty: write the instruction, or leave this task out for the "
     "MC² authors' string (got '')"),
])
def test_one_problem_is_one_line(patch, line):
    with pytest.raises(RecipeError) as err:
        parse_recipe({"model": {"id": "toy:arbiter"}, "analyses": [{"kind": "signal"}], **patch})
    assert str(err.value) == line
    assert parse_recipe({"model": {"id": "toy:arbiter"}, "analyses": [{"kind": "signal"}],
                         "memory_budget": "2GiB"}).memory_budget == "2GiB"
