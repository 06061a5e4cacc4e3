"""Where traces run: `local` wraps the loaded model in nnsight; `ndif` sends the same traces to NDIF.

Both offer `trace(inputs, fn, *args)` (one forward, `fn(envoy, *args)` inside) and `run(fn, *args)`
(`fn(session, *args)` calling `session.trace(...)` several times: one request on NDIF)."""
from __future__ import annotations

from ..adapters.paths import envoy_at
from .local import LocalBackend


def make_backend(kind: str, bundle, simulate: bool = False, **ndif_options):
    """`local` or `ndif` (host from NDIF_HOST, key from NDIF_API_KEY; `bundle` weightless); `simulate`
    runs NDIF requests through nnsight's remote="local" against `server=` (a bundle with weights)."""
    if kind == "local":
        return LocalBackend(bundle)
    if kind == "ndif":
        from .ndif import NdifBackend

        return NdifBackend(bundle, simulate=simulate, **ndif_options)
    raise ValueError(f"unknown backend {kind!r} (local, ndif)")


__all__ = ["LocalBackend", "envoy_at", "make_backend"]
