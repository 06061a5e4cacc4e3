"""Head patching sweeps: the two decision-token logits at `last` after each (layer, head)'s o_proj input,
at the patched positions, takes its value from the instruction-swapped twin (interventions/head_patch.py).

Both engines read the twin's head values from one clean pass of the twin batch. `naive`: one full
forward of the batch per head (the reference). `fast`: a patch at layer l changes nothing before the
first patched position p0 nor anything below layer l, so one clean pass keeps the prefix's KV cache
and every layer's output from p0 on, and each pass recomputes only positions p0.. of layers l..L-1,
starting from the clean output of layer l-1 (lower layers skipped with nnsight's `skip`); the heads
of one layer are stacked as extra rows of one pass, `heads_per_pass` at a time. With `approximation`,
one more forward and backward of the batch gives attribution patching (method/head_contribution.py).

Decoder cells (layer × position × row) count what each pass computes, padding included; the
backward of attribution patching counts as one more pass over every cell.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..adapters.paths import envoy_at
from ..interventions.head_patch import patch_entries, patch_heads
from ..method.head_contribution import attribution_patching
from ..rows.batching import no_logits
from ..rows.layout import decision_rows
from . import memory
from .prefix import clean_capture, final_logits, model_paths, placeholder, stack_rows, suffix_inputs


@dataclass
class PatchRun:
    logits: torch.Tensor  # [B, L, H, 2] (followed, competitor) logits with head (l, h) patched
    clean: torch.Tensor  # [B, 2] without intervention
    approx: torch.Tensor | None  # [B, L, H] attribution patching's estimate of the margin change
    cells: int  # decoder (layer × position) cells computed, padding included


def plan_passes(n_layers: int, n_heads: int, per_pass: int) -> list[tuple[int, tuple[int, ...]]]:
    """The fast engine's passes: (layer, heads) with the heads of one layer, per_pass at a time (a pass
    never mixes layers: a lower head's row would make the others recompute layers they do not change)."""
    return [(layer, tuple(range(h, min(h + per_pass, n_heads))))
            for layer in range(n_layers) for h in range(0, n_heads, per_pass)]


def passes_and_cells(mode: str, n_layers: int, n_heads: int, per_pass: int, b: int, s: int, s_twin: int, p0: int,
                     approximation: bool) -> tuple[int, int]:
    """(forward passes, decoder cells) one batch costs: what the engine counts, from shapes alone."""
    passes, cells = 2, n_layers * (s + s_twin) * b  # the twin's pass and the clean pass
    if mode == "naive":
        passes, cells = passes + n_layers * n_heads, cells + n_layers * n_heads * n_layers * s * b
    else:
        plan = plan_passes(n_layers, n_heads, per_pass)
        passes += len(plan)
        cells += sum((n_layers - layer) * (s - p0) * len(heads) * b for layer, heads in plan)
    if approximation:
        passes, cells = passes + 1, cells + 2 * n_layers * s * b
    return passes, cells


def peak_bytes(m: memory.Dims, mode: str, b: int, s: int, s_twin: int, p0: int, width: int, per_pass: int,
               approximation: bool, patches: int = 0) -> int:
    """Peak bytes beyond the weights (engines/memory.py's terms). Throughout: the twin's head values
    [L, B, P, d]. Fast adds the clean pass's KV cache, embeddings and layer outputs from p0, plus the
    largest suffix pass (per_pass copies, every layer recomputed, the stacked prefix cache). The
    backward of attribution patching keeps a training forward's activations: ~(6d + 4I) per cell."""
    twin = m.n_layers * b * width * m.d * m.e
    passes = [memory.forward_bytes(m, b, max(s, s_twin), 0, patches, cache=mode == "fast")]
    if mode == "fast":
        stored = memory.kv_bytes(m, b, s, m.n_layers) + b * s * m.d * m.e + m.n_layers * b * (s - p0) * m.d * m.e
        passes.append(stored + memory.pass_bytes(m, b, s, p0, min(per_pass, m.heads), 0, 0))
    if approximation:
        passes.append(m.n_layers * b * s * (6 * m.d + 4 * m.inter) * m.e + memory.vision_bytes(m, patches))
    return twin + max(passes)


class HeadPatchEngine:
    def __init__(self, bundle, backend, mode: str = "fast", heads_per_pass: int = 16):
        self.bundle, self.backend, self.mode, self.per_pass = bundle, backend, mode, heads_per_pass
        self.paths = model_paths(bundle.adapter)

    def run(self, batch, twin_batch, rows, dst: torch.Tensor, src: torch.Tensor, valid: torch.Tensor,
            approximation: bool = False) -> PatchRun:
        """dst / src [B, P]: the row positions patched and the twin positions read (valid [B, P]);
        one backend request per batch (on NDIF the twin's values and the KV cache stay on the server)."""
        b = self.bundle
        dev = b.device
        dec_w = b.lens.rows(decision_rows(rows))
        out = self.backend.run(patch_sweep, self.mode, dict(batch.inputs), dict(twin_batch.inputs), self.paths,
                               b.adapter.is_multimodal, b.lm_config, b.n_layers, b.n_heads, b.head_dim, self.per_pass,
                               dst.to(dev), src.to(dev), valid.to(dev), dec_w, approximation)
        return PatchRun(*out)


def twin_capture(envoy, paths, n_layers, src):
    """Every layer's o_proj input at the twin positions: [L, B, P, H*hd]."""
    layers = envoy_at(envoy, paths["layers"])
    b = torch.arange(src.shape[0], device=src.device)[:, None]
    return torch.stack([envoy_at(layers[j], paths["o_proj"]).input[b, src] for j in range(n_layers)])


def patched_capture(envoy, paths, layer, skip, entries, head_dim, dec_w):
    """Layers below `layer` skipped with `skip` as their outputs (none: all run), the entries (None: none)
    patched into `layer`'s o_proj input; the decision logits."""
    layers = envoy_at(envoy, paths["layers"])
    for j, hidden in enumerate(skip):
        layers[j].skip(hidden)
    if entries is not None:
        patch_heads(envoy_at(layers[layer], paths["o_proj"]), *entries, head_dim)
    return final_logits(envoy, paths["norm"], paths["unembed"], dec_w, True)


def gradient_capture(envoy, paths, n_layers, dst, dec_w):
    """o_proj's input of every layer at dst and the margin's gradient there: [L, B, P, H*hd] each. A
    model whose weights need no gradient gets layer 0's input as a leaf that does; every later input
    then depends on it, so each gradient is the margin's total derivative through all that follows."""
    layers = envoy_at(envoy, paths["layers"])
    zs = []
    for j in range(n_layers):
        o_proj = envoy_at(layers[j], paths["o_proj"])
        z = o_proj.input
        if not z.requires_grad:
            z = z.detach().requires_grad_(True)
            o_proj.input = z
        zs.append(z)
    logits = final_logits(envoy, paths["norm"], paths["unembed"], dec_w, True)
    grads = torch.autograd.grad((logits[:, 0] - logits[:, 1]).sum(), zs)
    b = torch.arange(dst.shape[0], device=dst.device)[:, None]
    return torch.stack([z.detach()[b, dst] for z in zs]), torch.stack([g[b, dst] for g in grads])


def patch_sweep(t, mode, inputs, twin_inputs, paths, multimodal, lm_config, n_layers, n_heads, head_dim, per_pass,
                dst, src, valid, dec_w, approximation):
    """`t`: a backend or an NDIF session. Returns (logits [B, L, H, 2], clean [B, 2], approx [B, L, H] | None,
    cells)."""
    b, s = inputs["attention_mask"].shape
    s_twin = twin_inputs["attention_mask"].shape[1]
    z_twin = t.trace(no_logits(twin_inputs), twin_capture, paths, n_layers, src)
    p0 = int(dst[valid].min())
    out = torch.empty((b, n_layers, n_heads, 2))
    if mode == "naive":
        clean = t.trace(no_logits(inputs), patched_capture, paths, 0, [], None, head_dim, dec_w)
        for layer in range(n_layers):
            for head in range(n_heads):
                entries = entries_of(z_twin[layer], dst, valid, [head], 0, n_heads)
                out[:, layer, head] = t.trace(no_logits(inputs), patched_capture, paths, layer, [], entries, head_dim,
                                              dec_w).cpu()
    else:
        key_mask = inputs["attention_mask"]
        keep = list(range(n_layers - 1))
        embeds, positions, hidden, clean, cache = t.trace(no_logits(dict(inputs, use_cache=True)), clean_capture,
                                                          paths, multimodal, p0, n_layers, dec_w, keep)
        for layer, heads in plan_passes(n_layers, n_heads, per_pass):
            g = len(heads)
            pass_inputs = suffix_inputs(embeds, positions, key_mask, cache, p0, g, lm_config, layer)
            skip = []
            if layer > 0:
                below = stack_rows(hidden[layer - 1], g)  # what layer `layer` reads
                skip = [placeholder(below, below.shape)] * (layer - 1) + [below]  # lower outputs: nobody reads them
            entries = entries_of(z_twin[layer], dst, valid, list(heads), p0, n_heads)
            res = t.trace(pass_inputs, patched_capture, paths, layer, skip, entries, head_dim, stack_rows(dec_w, g))
            out[:, layer, list(heads)] = res.view(g, b, 2).transpose(0, 1).cpu()
    approx = None
    if approximation:
        z_clean, grad = t.grad_trace(no_logits(inputs), gradient_capture, paths, n_layers, dst, dec_w)
        approx = attribution_patching(z_twin, z_clean, grad, valid, n_heads).cpu()
    _, cells = passes_and_cells(mode, n_layers, n_heads, per_pass, b, s, s_twin, p0, approximation)
    return out, clean.cpu(), approx, cells


def entries_of(z_twin_layer, dst, valid, heads: list[int], offset: int, n_heads: int):
    return patch_entries(z_twin_layer, dst, valid, torch.tensor(heads, dtype=torch.long, device=dst.device), offset,
                         n_heads)
