"""Head-intervention sweeps: for each setting (an [L, H] table of head multipliers applied at one
role's positions), the greedy answer or the first-token decision margin per prompt.

`naive`: each setting runs the whole prompt (and its generation) from scratch. `fast`: heads act
only at the role's positions, so nothing before the role's first position changes; one clean pass
keeps that prefix's KV cache and every setting re-runs only the suffix, several settings stacked as
rows of one pass. Generation then continues from each setting's own cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..adapters.paths import envoy_at
from ..interventions.head_scaling import scale_heads
from ..rows.batching import no_logits
from ..rows.layout import decision_rows
from .generation import greedy_generate, step_cells
from .knockout import role_mask
from .prefix import clean_capture, final_logits, model_paths, suffix_inputs


@dataclass
class HeadRun:
    tokens: list[list[list[int]]] | None  # [setting][row] generated ids (rule: generation)
    margins: torch.Tensor | None  # [B, settings] logit(y_f) - logit(y_c) at last (rule: first_token)
    cells: int  # decoder (layer × position) cells computed, padding and generation steps included


def touched_layers(tables: torch.Tensor) -> list[int]:
    """Layers where any row's multipliers differ from 1 (only those need an edit in the trace)."""
    return [int(layer) for layer in (tables != 1).any(-1).any(0).nonzero().flatten()]


def apply_tables(envoy, paths, layers, tables, where, head_dim):
    blocks = envoy_at(envoy, paths["layers"])
    for layer in layers:
        scale_heads(envoy_at(blocks[layer], paths["o_proj"]), tables[:, layer], where, head_dim)


def heads_logits_capture(envoy, paths, layers, tables, where, head_dim, dec_w):
    apply_tables(envoy, paths, layers, tables, where, head_dim)
    return final_logits(envoy, paths["norm"], paths["unembed"], dec_w, True)


def head_intervener(paths, layers, tables, where, head_dim):
    """For greedy_generate: edit the prompt pass only; generated tokens are not role positions."""

    def intervene(envoy, step, n_keys):
        if step == 0:
            apply_tables(envoy, paths, layers, tables, where, head_dim)

    return intervene


class HeadEngine:
    def __init__(self, bundle, backend, mode: str = "fast", settings_per_pass: int = 8):
        self.bundle, self.backend, self.mode, self.per_pass = bundle, backend, mode, settings_per_pass
        self.paths = model_paths(bundle.adapter)

    def run(self, batch, rows, tables: torch.Tensor, role: str = "instruction", rule: str = "generation",
            max_new_tokens: int = 8) -> HeadRun:
        """tables [N, L, H]: one multiplier table per setting."""
        dev = self.bundle.device
        dec_w = self.bundle.lens.rows(decision_rows(rows))
        where = role_mask(batch, rows, role, f"heads at {role}").to(dev)
        fn = naive_heads if self.mode == "naive" else fast_heads
        return self.backend.run(fn, self.bundle, dict(batch.inputs), self.paths, tables.to(dev), where, dec_w, rule,
                                max_new_tokens, self.per_pass)


def _finish(rule, outputs, b, cells) -> HeadRun:
    if rule == "first_token":
        return HeadRun(None, torch.cat(outputs, 1), cells)
    return HeadRun([setting for chunk in outputs for setting in chunk], None, cells)


def naive_heads(t, bundle, inputs, paths, tables, where, dec_w, rule, max_new_tokens, per_pass):
    b, s = where.shape
    n_layers, head_dim = tables.shape[1], bundle.head_dim
    outputs, cells = [], len(tables) * n_layers * s * b
    for table in tables:
        rows_table = table.expand(b, *table.shape)
        layers = touched_layers(rows_table)
        if rule == "first_token":
            logits = t.trace(inputs, heads_logits_capture, paths, layers, rows_table, where, head_dim, dec_w)
            outputs.append((logits[:, 0] - logits[:, 1]).cpu()[:, None])
        else:
            ids = greedy_generate(bundle, t, inputs, max_new_tokens,
                                  head_intervener(paths, layers, rows_table, where, head_dim))
            outputs.append([ids])
            cells += step_cells(ids, n_layers)
    return _finish(rule, outputs, b, cells)


def fast_heads(t, bundle, inputs, paths, tables, where, dec_w, rule, max_new_tokens, per_pass):
    b, s = where.shape
    n_layers, head_dim = tables.shape[1], bundle.head_dim
    key_mask = inputs["attention_mask"].to(where.device)
    p0 = int(torch.where(where.any(0))[0].min())
    embeds, positions, _, _, cache = t.trace(no_logits(dict(inputs, use_cache=True)), clean_capture, paths,
                                             bundle.adapter.is_multimodal, s, n_layers, dec_w, [])
    outputs, cells = [], n_layers * s * b
    for start in range(0, len(tables), per_pass):
        chunk = tables[start : start + per_pass]
        g = len(chunk)
        pass_inputs = suffix_inputs(embeds, positions, key_mask, cache, p0, g, bundle.lm_config)
        rows_table = chunk.repeat_interleave(b, 0)  # setting-major rows: [g * B, L, H]
        layers, rows_where = touched_layers(rows_table), where[:, p0:].repeat(g, 1)
        if rule == "first_token":
            logits = t.trace(pass_inputs, heads_logits_capture, paths, layers, rows_table, rows_where, head_dim,
                             dec_w.repeat(g, 1, 1))
            outputs.append((logits[:, 0] - logits[:, 1]).cpu().view(g, b).T)
        else:
            ids = greedy_generate(bundle, t, pass_inputs, max_new_tokens,
                                  head_intervener(paths, layers, rows_table, rows_where, head_dim))
            outputs.append([ids[k * b : (k + 1) * b] for k in range(g)])
            cells += step_cells(ids, n_layers)
        cells += n_layers * (s - p0) * g * b
    return _finish(rule, outputs, b, cells)
