"""What runs inside an nnsight session, locally or on an NDIF server.

An NDIF server cannot import anchorlab: this module (like every anchorlab function a trace calls) is
shipped by value with each request (`nnsight.register`), so it may only use torch, nnsight and
anchorlab code shipped the same way. A `Session` is what a backend's `run(fn, *args)` hands to `fn`: its
`trace(inputs, capture, *args)` runs one forward with `capture(envoy, *args)` inside, and values
returned by one trace (a KV cache, hidden states) feed the next without leaving the machine that holds the model.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import nnsight
import torch

from ..adapters.paths import WeightRef


def _packed(obj) -> bool:
    """A small dataclass of trace arguments (e.g. method.lens.FinalNorm): its tensors are mapped too.
    A ModelBundle (it has a `model`) is not: bundle_stand_in handles it."""
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type) and not hasattr(obj, "model")


def _map_fields(obj, fn):
    return dataclasses.replace(obj, **{f.name: fn(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init})


def map_tensors(obj, fn):
    """Apply fn to every tensor in nested lists / tuples / dicts / argument dataclasses (other
    objects pass through)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if _packed(obj):
        return _map_fields(obj, lambda v: map_tensors(v, fn))
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    return obj


class ModuleRef:
    """Stands for the whole model in a ModelBundle sent along (see `bundle_stand_in`)."""


def bundle_stand_in(bundle):
    """A ModelBundle for the server: the model itself resolved there (a ModuleRef until then), the
    tokenizer reduced to its special token ids, no processors. Its properties (layers, n_layers,
    head_dim, lm_config, device, ...) then read the server's model."""
    tok = bundle.tokenizer
    ids = SimpleNamespace(
        eos_token_id=getattr(tok, "eos_token_id", None), pad_token_id=getattr(tok, "pad_token_id", None)
    )
    return dataclasses.replace(bundle, model=ModuleRef(), tokenizer=ids, processor=None, image_processor=None)


def resolve_params(obj, module):
    """Replace every WeightRef / ModuleRef in nested args by the named weight (its rows) / the model."""
    if isinstance(obj, WeightRef):
        return obj.read(module)
    if isinstance(getattr(obj, "model", None), ModuleRef):
        return dataclasses.replace(obj, model=module)
    if _packed(obj):
        return _map_fields(obj, lambda v: resolve_params(v, module))
    if isinstance(obj, (list, tuple)):
        return type(obj)(resolve_params(v, module) for v in obj)
    if isinstance(obj, dict):
        return {k: resolve_params(v, module) for k, v in obj.items()}
    return obj


def to_cpu(obj):
    return map_tensors(obj, lambda t: t.detach().cpu())


class Session:
    """Traces against one model inside one request (see the module docstring)."""

    def __init__(self, envoy):
        self.envoy = envoy
        self.device = next(envoy._module.parameters()).device

    def prepare(self, args):
        """Client-side args as this machine needs them: parameters resolved, tensors on the model's device."""
        args = resolve_params(args, self.envoy._module)
        return map_tensors(args, lambda t: t.to(self.device))

    def run(self, fn, *args):
        """Already inside a request: a nested `run` is a call (as LocalBackend.run)."""
        return fn(self, *args)

    def trace(self, inputs, capture, *args):
        envoy = self.envoy
        inputs = self.prepare(dict(inputs))
        args = self.prepare(args)
        with envoy.trace(**inputs):
            result = nnsight.save(capture(envoy, *args))
        return result

    def grad_trace(self, inputs, capture, *args):
        """As `trace`, with autograd on (capture may call torch.autograd.grad)."""
        return with_grad(self.trace, inputs, capture, *args)


def with_grad(trace, inputs, capture, *args):
    """`trace(inputs, capture, *args)` with autograd on, also inside a caller's inference_mode (a
    request body, a benchmark). Inference tensors among the inputs and args are cloned into normal
    ones first: autograd may have to save them for the backward."""
    def normal(t):
        return t.clone() if t.is_inference() else t

    with torch.inference_mode(False), torch.enable_grad():
        return trace(map_tensors(dict(inputs), normal), capture, *map_tensors(args, normal))


def run_in_session(envoy, fn, args):
    """The body of one request: fn(Session, *args), its result detached and moved to CPU."""
    session = Session(envoy)
    return to_cpu(fn(session, *session.prepare(args)))


def one_trace(session, inputs, capture, *args):
    """`run` a single trace: the request body of `backend.trace`."""
    return session.trace(inputs, capture, *args)
