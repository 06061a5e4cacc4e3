"""Knockout sweeps: the two decision-token logits at `last` for every (pathway, centre layer).

`naive`: one full forward per variant (the reference). `fast`: a knockout cannot change positions
before the first knocked query nor any layer below its window, so one clean pass keeps the KV cache
of that prefix and the clean hidden states, and each pass over a group of variants recomputes only
the suffix positions, from the group's lowest window layer up (lower layers are skipped with their
clean outputs). Variants are batched as extra rows, each row with its own mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..adapters.paths import envoy_at
from ..errors import UserError
from ..interventions.knockout import (
    apply_knockout,
    base_allowed,
    check_no_empty_rows,
    first_affected,
    knocked_edges,
    parse_pathway,
    window_layers,
)
from ..rows.batching import no_logits
from ..rows.layout import decision_rows
from .attention import ensure_dense_mask
from .prefix import clean_capture, final_logits, model_paths, placeholder, stack_rows, suffix_inputs


@dataclass(frozen=True)
class KnockoutPlan:
    """What a knockout sweep computes, fixed once per analysis: the parsed pathways (name, src, dst),
    the centre layers and each centre's window. The engine, the memory model, autobatch, `anchorlab
    estimate` and the reduction read this one object; per batch it gives the knocked edges and the
    first position each pathway can change."""

    pathways: tuple[tuple[str, str, str], ...]
    centres: tuple[int, ...]
    windows: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, pathways, centres, width: int, n_layers: int) -> "KnockoutPlan":
        parsed = tuple(p if isinstance(p, tuple) else (p, *parse_pathway(p)) for p in pathways)
        return cls(parsed, tuple(centres), tuple(tuple(window_layers(c, width, n_layers)) for c in centres))

    def edges(self, batch, rows) -> list[torch.Tensor]:
        """[B, S, S] knocked (query, key) edges per pathway."""
        return [knocked_edges(role_mask(batch, rows, s, name), role_mask(batch, rows, d, name))
                for name, s, d in self.pathways]

    def starts(self, batch, rows) -> list[int]:
        """Per pathway, the first query position any row's knockout changes."""
        return [int(first_affected(e).min()) for e in self.edges(batch, rows)]


@dataclass
class Sweep:
    logits: torch.Tensor  # [B, n_pathways, n_centres, 2] (followed, competitor) logits after knockout
    clean: torch.Tensor  # [B, 2] without intervention
    cells: int  # decoder (layer × position) cells computed, padding included


def role_mask(batch, rows, role: str | list[str], pathway: str) -> torch.Tensor:
    """[B, S] bool of a role's positions (one role for all rows, or one per row)."""
    s = batch.inputs["input_ids"].shape[1]
    roles = [role] * len(rows) if isinstance(role, str) else role
    mask = torch.zeros((len(rows), s), dtype=torch.bool)
    for i, (row, name) in enumerate(zip(rows, roles)):
        pos = batch.roles[i].get(name)
        if pos is None:
            raise UserError(f"pathway {pathway!r}: unknown role {name!r} (roles: {', '.join(batch.roles[i])})")
        if len(pos) == 0:
            raise UserError(f"pathway {pathway!r}: role {name!r} is empty in sample {row.sample.id!r} ({row.task})")
        mask[i, pos] = True
    return mask


def naive_capture(envoy, paths, window, allowed, knocked, dec_w):
    layers = envoy_at(envoy, paths["layers"])
    active = torch.ones(allowed.shape[0], dtype=torch.bool, device=allowed.device)
    for layer in window:
        apply_knockout(envoy_at(layers[layer], paths["attention"]), allowed, knocked, active)
    return final_logits(envoy, paths["norm"], paths["unembed"], dec_w, True)


def suffix_capture(envoy, paths, skip_below, skip_hidden, windows, allowed, knocked, dec_w):
    layers = envoy_at(envoy, paths["layers"])
    for layer in range(skip_below):
        layers[layer].skip(skip_hidden[layer])
    for layer in sorted(windows):
        apply_knockout(envoy_at(layers[layer], paths["attention"]), allowed, knocked, windows[layer])
    return final_logits(envoy, paths["norm"], paths["unembed"], dec_w, True)


class KnockoutEngine:
    def __init__(self, bundle, backend, mode: str = "fast", variants_per_pass: int = 16):
        self.bundle, self.backend, self.mode, self.per_pass = bundle, backend, mode, variants_per_pass
        self.paths = model_paths(bundle.adapter)
        ensure_dense_mask(bundle)

    def sweep(self, batch, rows, pathways: list[tuple[str, str, str]], centres: list[int], width: int,
              decision: torch.Tensor | None = None) -> Sweep:
        return self.run(batch, rows, KnockoutPlan.of(pathways, centres, width, self.bundle.n_layers), decision)

    def run(self, batch, rows, plan: KnockoutPlan, decision: torch.Tensor | None = None) -> Sweep:
        """`decision` [B, 2]: token ids (y_p, y_c) per row; default: the answers' first tokens."""
        n_layers, dev = self.bundle.n_layers, self.bundle.device
        decision = decision_rows(rows) if decision is None else decision
        dec_w = self.bundle.lens.rows(decision)
        edges = [e.to(dev) for e in plan.edges(batch, rows)]
        windows = [list(w) for w in plan.windows]
        key_mask = batch.inputs["attention_mask"].to(dev)
        for (name, _, _), knocked in zip(plan.pathways, edges):
            labels = [f"{name!r} in sample {r.sample.id!r} ({r.task})" for r in rows]
            check_no_empty_rows(base_allowed(key_mask, 0), knocked, labels)
        run = self._naive if self.mode == "naive" else self._fast
        return run(batch, edges, windows, key_mask, dec_w, n_layers)

    # each sweep is one backend.run: on NDIF one request, so the KV cache and hidden states of the
    # clean pass stay on the server and only the [B, P, C, 2] logits come back
    def _naive(self, batch, edges, windows, key_mask, dec_w, n_layers):
        out, clean, cells = self.backend.run(naive_sweep, dict(batch.inputs), self.paths, edges, windows, key_mask,
                                             dec_w, n_layers)
        return Sweep(out, clean, cells)

    def _fast(self, batch, edges, windows, key_mask, dec_w, n_layers):
        out, clean, cells = self.backend.run(
            fast_sweep, dict(batch.inputs), self.paths, self.bundle.adapter.is_multimodal, self.bundle.lm_config,
            self.per_pass, edges, windows, key_mask, dec_w, n_layers)
        return Sweep(out, clean, cells)


def naive_sweep(t, inputs, paths, edges, windows, key_mask, dec_w, n_layers):
    """`t`: a backend (or an NDIF session) with `.trace`. Returns (logits [B, P, C, 2], clean [B, 2], cells)."""
    b, s = key_mask.shape
    allowed = base_allowed(key_mask, 0)
    clean = t.trace(inputs, naive_capture, paths, [], allowed, edges[0], dec_w)
    out = torch.empty((b, len(edges), len(windows), 2))
    for p, knocked in enumerate(edges):
        for c, window in enumerate(windows):
            out[:, p, c] = t.trace(inputs, naive_capture, paths, window, allowed, knocked, dec_w).cpu()
    cells = (1 + len(edges) * len(windows)) * n_layers * s * b
    return out, clean.cpu(), cells


@dataclass(frozen=True)
class SuffixPass:
    """One suffix pass of the fast engine: positions p0.. of g = len(variants) stacked copies of the
    batch, layers below `first_layer` skipped (their clean outputs stand in)."""

    p0: int
    first_layer: int
    variants: tuple[tuple[int, int], ...]  # (pathway, centre) indices, in row-block order


def plan_passes(starts: list[int], windows: list[list[int]], s: int, n_layers: int, per_pass: int
                ) -> tuple[list[SuffixPass], list[tuple[int, int]]]:
    """The fast engine's passes, from each pathway's first changed position (`starts`, S when no
    row has an edge) and each centre's window; pure, so `anchorlab estimate` counts exactly what a
    run computes. Returns (passes, unchanged variants).

    Variants sharing (first changed position, lowest window layer) recompute exactly the same
    cells, so they share a pass: no layer is recomputed for a variant that did not need it (a
    pathway whose only changed position is `last` is one query: its passes are so small that one
    pass from its lowest window costs less than a pass per window start)."""
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for p in range(len(starts)):
        for c, window in enumerate(windows):
            low = min(window, default=n_layers)
            groups.setdefault((starts[p], low if s - starts[p] > 1 else 0), []).append((p, c))
    passes, unchanged = [], []
    for (p0, _), variants in sorted(groups.items()):
        if p0 >= s:  # no row has an edge to remove (every dst precedes every src): nothing changes
            unchanged.extend(variants)
            continue
        variants.sort(key=lambda v: min(windows[v[1]], default=n_layers))  # chunks of similar window starts
        for i in range(0, len(variants), per_pass):
            chunk = tuple(variants[i : i + per_pass])
            first = min(min(windows[c], default=n_layers) for _, c in chunk)
            passes.append(SuffixPass(p0, first, chunk))
    return passes, unchanged


def pass_cells(plan: SuffixPass, s: int, b: int, n_layers: int) -> int:
    return (n_layers - plan.first_layer) * (s - plan.p0) * len(plan.variants) * b


def fast_sweep(t, inputs, paths, multimodal, lm_config, per_pass, edges, windows, key_mask, dec_w, n_layers):
    """As naive_sweep, from one clean pass (KV cache + hidden states) and suffix passes (module docstring).

    Memory: the clean pass keeps only the outputs a pass reads (the input of each pass's first
    recomputed layer, from the earliest changed position on) and no logits; a pass gets that one
    hidden state for its copies (a view when B = 1), a zero-byte placeholder for every skipped
    layer below it and for the embeddings, and the prefix KV cache only for the layers it recomputes."""
    b, s = key_mask.shape
    starts = [int(first_affected(k).min()) for k in edges]
    start = min(min(starts), s - 1)
    passes, unchanged = plan_passes(starts, windows, s, n_layers, per_pass)
    keep = sorted({plan.first_layer - 1 for plan in passes if plan.first_layer > 0})
    embeds, positions, hidden, clean, cache = t.trace(
        no_logits(dict(inputs, use_cache=True)), clean_capture, paths, multimodal, start, n_layers, dec_w, keep)
    out = torch.empty((b, len(edges), len(windows), 2))
    cells = n_layers * s * b
    for p, c in unchanged:
        out[:, p, c] = clean.cpu()
    for plan in passes:
        p0, skip_below, chunk = plan.p0, plan.first_layer, plan.variants
        g = len(chunk)
        active = {}
        for k, (_, c) in enumerate(chunk):
            for layer in windows[c]:
                active.setdefault(layer, torch.zeros(g * b, dtype=torch.bool, device=key_mask.device))
                active[layer][k * b : (k + 1) * b] = True
        pass_inputs = suffix_inputs(embeds, positions, key_mask, cache, p0, g, lm_config, skip_below)
        if skip_below > 0:
            below = stack_rows(hidden[skip_below - 1][:, p0 - start :], g)  # what layer skip_below reads
            # the lower skipped layers' outputs only feed skipped layers: nothing reads them
            skip = [placeholder(below, below.shape)] * (skip_below - 1) + [below]
        else:
            skip = []
        knocked = torch.cat([edges[p][:, p0:] for p, _ in chunk])
        allowed = stack_rows(base_allowed(key_mask, p0), g)
        res = t.trace(pass_inputs, suffix_capture, paths, skip_below, skip, active, allowed,
                      knocked, stack_rows(dec_w, g)).view(g, b, 2).cpu()
        for k, (p, c) in enumerate(chunk):
            out[:, p, c] = res[k]
        cells += pass_cells(plan, s, b, n_layers)
    return out, clean.cpu(), cells
