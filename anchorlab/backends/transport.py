"""How an NDIF request travels: nnsight's RemoteBackend with byte counts and transient-error
classification, and a stricter `remote="local"` simulation for the offline tests.

nnsight's own simulation hides local modules by removing them from `sys.modules`/`sys.path`, but an
editable install (`pip install -e .`) finds anchorlab again through its import hook, so a trace
that forgot to ship anchorlab would still pass. `SimulatedTransport` also blocks those imports."""
from __future__ import annotations

import importlib
import io
import linecache
import pickle
import sys
import types

from nnsight.intervention.backends.display import StatusDisplay
from nnsight.intervention.backends.local import LocalSimulationBackend
from nnsight.intervention.backends.remote import RemoteBackend, RemoteError

# what a request must never need on the server: anchorlab itself and the client-only libraries
CLIENT_ONLY = frozenset({"anchorlab", "xarray", "h5netcdf", "h5py", "matplotlib", "nltk", "pandas", "jsonschema",
                         "hypothesis"})


class TransientError(RuntimeError):
    """A failure worth retrying: the request may not have reached the server, or it lost it."""


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures and 5xx/429 answers are retried; a job that ran and raised is not."""
    if isinstance(exc, (TransientError, ConnectionError, TimeoutError)):
        return True
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        import websocket

        return isinstance(exc, websocket.WebSocketException)
    except ImportError:  # pragma: no cover
        return False


class CountingRemote(RemoteBackend):
    """nnsight's blocking RemoteBackend, counting bytes sent/received and classifying HTTP errors."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent = self.received = 0
        self.display = StatusDisplay(enabled=False, verbose=False)  # anchorlab logs one line per request

    def _post(self, request, blob):
        self.sent += len(blob) + len(request.metadata())
        try:
            return super()._post(request, blob)
        except RemoteError as exc:
            cause = exc.__cause__
            status = getattr(getattr(cause, "response", None), "status_code", None)
            if status is None or status >= 500 or status == 429:
                raise TransientError(str(exc)) from exc
            raise

    def finalize(self, content: bytes):
        self.received += len(content)
        return super().finalize(content)


class _BlockClientOnly:
    """A meta-path finder refusing what the server could not import."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in CLIENT_ONLY:
            raise ModuleNotFoundError(f"No module named {name!r} (not importable on an NDIF server)")
        return None


def _client_class(module: str, qualname: str) -> type:
    target = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


class _ResultPickler(pickle.Pickler):
    """A class that arrived by value (anchorlab's, e.g. a result dataclass) goes back as a pointer to
    the client's own class, as NDIF's result pickler does; plain pickle refuses the twin."""

    def reducer_override(self, obj):
        if isinstance(obj, type) and obj.__module__.partition(".")[0] in CLIENT_ONLY:
            return _client_class, (obj.__module__, obj.__qualname__)
        return NotImplemented


_RESULT_PICKLE = types.SimpleNamespace(Pickler=_ResultPickler, __name__="anchorlab_result_pickle")


class SimulatedTransport(LocalSimulationBackend):
    """nnsight's `remote="local"`, run the way NDIF's model actor runs a request: serialized exactly as
    for the server (compressed, to count bytes), deserialized with local modules hidden and client-only
    imports blocked against `server`'s modules (the client's own model may be weightless, on the meta
    device), executed, its saved values sent back as bytes and pushed into the caller's frame."""

    def __init__(self, server):
        super().__init__(server)
        self.sent = self.received = 0

    def __call__(self, tracer) -> None:
        from nnsight.ndif import pull_env
        from nnsight.schema.request import RequestModel

        pull_env()
        blob = RequestModel.serialize(tracer, compress=True)
        self.sent = len(blob)
        persistent = self.model._remoteable_persistent_objects()
        filename = tracer.info.frame.f_code.co_filename
        saved_line = linecache.cache.get(filename)
        hidden = self._hide_local_modules()
        blocker = _BlockClientOnly()
        sys.meta_path.insert(0, blocker)
        try:
            restored = RequestModel.deserialize(blob, persistent, compress=True)
        finally:
            sys.meta_path.remove(blocker)
            self._restore(hidden)
            if saved_line is not None:
                linecache.cache[filename] = saved_line
            else:
                linecache.cache.pop(filename, None)
        self._push(tracer, self._respond(self._execute(restored)))

    @staticmethod
    def _execute(restored) -> dict:
        """The server's half: run the restored block in a trace scope, collect what it saved."""
        from nnsight.tracing.tracer import _saves, dec, inc

        inc()
        try:
            restored.execute(restored.info.code)
            saves = _saves()
            return {name: value for name, value in restored.info.frame.f_locals.items() if id(value) in saves}
        finally:
            dec()

    def _respond(self, saved: dict) -> dict:
        """The saved values through the bytes NDIF would send (torch.save, zstd), counted."""
        import torch
        import zstandard

        buffer = io.BytesIO()
        torch.save(saved, buffer, pickle_module=_RESULT_PICKLE)
        content = zstandard.ZstdCompressor(level=3).compress(buffer.getvalue())
        self.received = len(content)
        return torch.load(io.BytesIO(zstandard.ZstdDecompressor().decompress(content)), map_location="cpu",
                          weights_only=False)

    @staticmethod
    def _push(tracer, result: dict) -> None:
        """As nnsight's RemoteBackend does with a blocking request's result."""
        from nnsight.tracing.tracer import save
        from nnsight.tracing.util import push

        for value in result.values():
            save(value)
        push(tracer.info.frame, result)
