"""NDIF backend, offline: every request serialized exactly as for a server, with anchorlab hidden
(nnsight's remote="local"), must give the local numbers. The real server: scripts/ndif/integration.py."""
import http.server
import json
import logging
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_support import MULTIMODAL_PATHWAYS, TEXT_PATHWAYS, sample

import anchorlab
from anchorlab.backends import LocalBackend
from anchorlab.backends.ndif import NdifBackend, model_key, preflight, task_for
from anchorlab.backends.transport import TransientError, is_transient
from anchorlab.engines.knockout import KnockoutEngine
from anchorlab.errors import UserError
from anchorlab.interventions.knockout import parse_pathway
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import compile_rows
from anchorlab.rows.prompts import PromptStyle

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SMALL = ["data.n_samples=4", "data.filter=all", "batch_size=4"]
# every analysis kind, from its shipped recipe (attribution: its own recipe once it ships one)
CASES = {
    "signal": ("quickstart.yaml", []),
    "knockout": ("knockout.yaml", ["analyses.0.layers=[0,2]"]),
    "knockout_naive": ("knockout.yaml", ["analyses.0.layers=[1]", "analyses.0.engine=naive",
                                         "analyses.0.pathways=[vision->last,context->instruction]"]),
    "path_blocking": ("path_blocking.yaml", ["analyses.0.max_new_tokens=3"]),
    "attribution": ("attribution.yaml", []) if (RECIPES / "attribution.yaml").is_file()
    else ("quickstart.yaml", ["analyses.0.kind=attribution"]),
    "heads_block": ("heads_block.yaml", ["analyses.1.n_heads=[1,2]", "analyses.1.seeds=2", "analyses.1.rows=all",
                                         "analyses.1.max_new_tokens=2"]),
    "heads_amplify": ("heads_amplify.yaml", ["analyses.1.n_heads=[2]", "analyses.1.alphas=[1,4]", "analyses.1.seeds=2",
                                             "analyses.1.rows=all", "analyses.1.rule=first_token"]),
}


def assert_same(local, remote, atol=1e-6):
    assert set(local) == set(remote)
    for name, ds in local.items():
        other = remote[name]
        assert set(ds.data_vars) == set(other.data_vars), name
        for var in ds.data_vars:
            a, b = ds[var].values, other[var].values
            if a.dtype.kind == "f":
                np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=f"{name}.{var}")
            else:
                assert (a == b).all(), f"{name}.{var}"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_simulated_remote_equals_local(case, random_toy_path, tmp_path, one_thread):
    recipe, extra = CASES[case]
    sets = [f"model.id={random_toy_path}", *SMALL, *extra]
    local = anchorlab.run(RECIPES / recipe, out=tmp_path / "local", overrides=sets)
    remote = anchorlab.run(RECIPES / recipe, out=tmp_path / "remote", overrides=sets, remote="local")
    assert_same(local, remote)
    for ds in remote.values():
        assert ds.attrs["backend"] == "ndif" and ds.attrs["ndif_host"] == "simulated"
        assert ds.attrs["ndif_requests"] >= 1 and ds.attrs["ndif_bytes_received"] > 0
    for ds in local.values():
        assert ds.attrs["backend"] == "local"


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl", "qwen2"])
def test_knockout_sweep_one_request_small_result(tiny, family, one_thread):
    """Fast sweep through the simulated server == local; one request per sweep; ≤ 16 B per variant."""
    bundle = tiny(family, "eager")
    samples = [replace(sample(i % 2 == 0), id=f"s{i}") for i in range(6)]
    rows = compile_rows(bundle, samples, ["vf", "tf"], PromptStyle())
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    names = MULTIMODAL_PATHWAYS if bundle.adapter.is_multimodal else TEXT_PATHWAYS
    pathways = [(p, *parse_pathway(p)) for p in names]
    centres = list(range(bundle.n_layers))
    local = KnockoutEngine(bundle, LocalBackend(bundle)).sweep(batch, rows, pathways, centres, 3)
    client = weightless(bundle)
    backend = NdifBackend(client, simulate=True, server=bundle)
    remote = KnockoutEngine(client, backend).sweep(batch, rows, pathways, centres, 3)
    torch.testing.assert_close(remote.logits, local.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(remote.clean, local.clean, rtol=0, atol=1e-6)
    assert len(backend.requests) == 1
    variants = len(rows) * len(pathways) * len(centres)
    assert remote.logits.element_size() * 2 == 8  # two fp32 decision logits per variant
    assert backend.requests[0].received / variants <= 16, backend.requests[0]


def weightless(bundle):
    """The NDIF client's twin of a loaded bundle: the same architecture on the meta device."""
    from anchorlab.models.loading import load_model

    return load_model(bundle.path, weights=False)


def test_weightless_client_reads_no_weight_file(random_toy_path, tmp_path):
    """The NDIF client's model: config, tokenizer and processor; the weight files are never opened
    (here they are garbage), and every weight a trace needs is a name."""
    import shutil

    from anchorlab.adapters.paths import WeightRef
    from anchorlab.models.loading import load_model

    folder = tmp_path / "no-weights"
    shutil.copytree(random_toy_path, folder)
    (folder / "model.safetensors").write_bytes(b"not a checkpoint")
    client = load_model(str(folder), weights=False)
    assert not client.has_weights and client.device == torch.device("cpu")
    assert all(p.is_meta for p in client.model.parameters())
    lens = client.lens
    assert isinstance(lens.unembed, WeightRef) and isinstance(lens.norm.weight, WeightRef)
    rows = lens.rows(torch.tensor([[3, 4]]))
    assert rows.name == lens.unembed.name and rows.index.tolist() == [[3, 4]]
    server = load_model(str(random_toy_path))
    # read on the server: exactly the rows a loaded model's lens gives
    torch.testing.assert_close(rows.read(server.model), server.lens.rows(torch.tensor([[3, 4]])), rtol=0, atol=0)


def test_weight_read_on_the_client_is_refused(random_toy_path):
    from anchorlab.models.loading import load_model

    client, server = load_model(str(random_toy_path), weights=False), load_model(str(random_toy_path))
    backend = NdifBackend(client, simulate=True, server=server)
    ids = torch.tensor([[1, 5, 6, 7]])
    meta_rows = client.model.get_output_embeddings().weight[ids]  # what a careless trace argument would be
    with pytest.raises(ValueError, match="_rows_at_last.*meta tensor.*weightless client"):
        backend.trace({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, _rows_at_last, meta_rows)
    out = backend.trace({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, _rows_at_last,
                        client.lens.rows(ids))
    torch.testing.assert_close(out, server.lens.rows(ids), rtol=0, atol=0)  # read from the server's weights


def _rows_at_last(envoy, rows):
    return rows + 0 * envoy.output.logits[:, -1:, :1]


def test_api_key_never_written_or_logged(random_toy_path, tmp_path, monkeypatch, caplog):
    secret = "ndif-secret-0f9e8d7c"
    monkeypatch.setenv("NDIF_API_KEY", secret)
    with caplog.at_level(logging.DEBUG):
        results = anchorlab.run(RECIPES / "quickstart.yaml", out=tmp_path / "run", remote="local",
                                overrides=[f"model.id={random_toy_path}", *SMALL])
    assert secret not in caplog.text
    assert all(secret not in str(v) for ds in results.values() for v in ds.attrs.values())
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


class _Status(http.server.BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_ndif():
    """A loopback HTTP server answering /status with `_Status.body`."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_preflight_names_the_missing_model(random_toy_path, fake_ndif, monkeypatch):
    other = 'nnsight.modeling.transformers.TransformersModel:{"repo_id": "org/other"}'
    _Status.body = json.dumps({"deployments": {
        "a1:ModelActor:" + other: {"application_state": "RUNNING"},
    }}).encode()
    with pytest.raises(UserError, match=r"does not serve model .*not deployed.*org/other.*model key"):
        preflight(str(random_toy_path), host=fake_ndif)
    from anchorlab.models.loading import load_model

    key = model_key(str(random_toy_path), None, task_for(load_model(str(random_toy_path)).adapter))
    _Status.body = json.dumps({"deployments": {"b2:ModelActor:" + key: {"application_state": "RUNNING"}}}).encode()
    assert preflight(str(random_toy_path), host=fake_ndif) == key
    # the run itself fails before loading the model when the host does not serve it
    monkeypatch.setenv("NDIF_HOST", fake_ndif)
    _Status.body = b'{"deployments": {}}'
    with pytest.raises(UserError, match="does not serve model"):
        anchorlab.run(RECIPES / "quickstart.yaml", overrides=[f"model.id={random_toy_path}"], remote=True,
                      out=str(Path(random_toy_path).parent / "never"))


def test_preflight_unreachable_host(random_toy_path, monkeypatch):
    with pytest.raises(UserError, match="cannot reach NDIF at http://127.0.0.1:9"):
        preflight(str(random_toy_path), host="http://127.0.0.1:9")
    monkeypatch.setenv("NDIF_HOST", "api.ndif.us")
    with pytest.raises(UserError, match="NDIF_HOST='api.ndif.us': expected a URL"):
        preflight(str(random_toy_path))


def test_transient_failures_retried_then_reported(random_toy_path, monkeypatch):
    from anchorlab.models.loading import load_model

    backend = NdifBackend(load_model(str(random_toy_path), weights=False), simulate=True, retries=2, backoff=0.0,
                          server=load_model(str(random_toy_path)))
    real = backend._request
    calls = []

    def flaky(fn, args):
        calls.append(1)
        if len(calls) <= 2:
            raise ConnectionResetError("connection dropped")
        return real(fn, args)

    monkeypatch.setattr(backend, "_request", flaky)
    ids = torch.tensor([[1, 5, 6, 7]])
    out = backend.trace({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, _last_hidden)
    assert out.shape[0] == 1 and backend.requests[-1].attempts == 3
    calls.clear()
    monkeypatch.setattr(backend, "_request", lambda fn, args: (_ for _ in ()).throw(TransientError("503")))
    with pytest.raises(UserError, match="failed 3 times.*--resume"):
        backend.trace({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, _last_hidden)
    monkeypatch.setattr(backend, "_request", lambda fn, args: (_ for _ in ()).throw(ValueError("user code")))
    with pytest.raises(ValueError, match="user code"):  # a job that ran and raised is not retried
        backend.trace({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, _last_hidden)


def _last_hidden(envoy):
    return envoy.output.logits[:, -1, :4]


def test_error_classification_and_import_blocking():
    import httpx

    assert is_transient(ConnectionRefusedError()) and is_transient(httpx.ConnectError("x"))
    assert is_transient(TransientError("503")) and not is_transient(ValueError("bad"))
    from anchorlab.backends.transport import _BlockClientOnly

    with pytest.raises(ModuleNotFoundError, match="not importable on an NDIF server"):
        _BlockClientOnly().find_spec("anchorlab.method.lens")
    assert _BlockClientOnly().find_spec("torch.nn") is None


def test_every_analysis_kind_has_a_remote_case():
    from anchorlab.analyses import REGISTRY

    covered = {"signal", "knockout", "path_blocking", "attribution", "heads_block", "heads_amplify"}
    assert covered <= {c.split("_naive")[0] for c in CASES} | {"heads_block", "heads_amplify"}
    covered.add("head_patching")  # tests/e2e/test_head_patching_run.py::test_simulated_remote_equals_local
    assert set(REGISTRY) <= covered, f"add a remote='local' case for {set(REGISTRY) - covered}"


class _Sent(Exception):
    pass


class _SerializeOnly:
    """Stands in for the network: serializes the request exactly as for NDIF, records its size, stops."""

    sizes: list = []

    def __init__(self, *args, **kwargs):
        self.sent = self.received = 0

    def __call__(self, tracer):
        from nnsight.schema.request import RequestModel

        self.sizes.append(len(RequestModel.serialize(tracer, compress=True)))
        raise _Sent


@pytest.mark.slow
def test_full_depth_7b_client_builds_requests_without_weights(tmp_path, monkeypatch):
    """The client NDIF exists for: Qwen2.5-VL-7B at full depth (28 layers, width 3584, vocab 152k) from
    its config alone. Attribution (W_O of all 28 layers, 720 MB in bf16 by value) and a knockout sweep
    serialize to kilobytes: every weight is a name."""
    import anchorlab.backends.ndif as ndif
    from anchorlab.analyses import REGISTRY
    from anchorlab.analyses.base import Context
    from anchorlab.models.loading import load_model
    from anchorlab.models.shapes import build_shape

    folder = build_shape("qwen2.5-vl-7b", tmp_path / "qwen7b", config_only=True)
    client = load_model(str(folder), dtype="bfloat16", weights=False)
    assert client.n_layers == 28 and all(p.is_meta for p in client.model.parameters())
    monkeypatch.setattr(ndif, "CountingRemote", _SerializeOnly)
    backend = NdifBackend(client, host="http://127.0.0.1:9", check=False, retries=0)
    rows = compile_rows(
        client, [sample(True, size=(56, 56)), sample(False, size=(56, 56))], ["vf", "tf"], PromptStyle()
    )
    batch = collate([r.encoded for r in rows], client.adapter, client.pad_token_id)
    ctx = Context(bundle=client, backend=backend, seed=0)
    _SerializeOnly.sizes = []
    for kind, extra in (("attribution", {"heads": True}), ("knockout", {"layers": [0, 13, 27]})):
        spec = REGISTRY[kind].spec_cls(kind=kind, **extra)
        with pytest.raises(_Sent):
            REGISTRY[kind](spec, ctx).run_batch(batch, rows)
    assert len(_SerializeOnly.sizes) == 2
    assert max(_SerializeOnly.sizes) < 2**20, _SerializeOnly.sizes  # < 1 MiB each
