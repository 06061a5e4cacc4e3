"""Strict interchange-intervention training (SIIT, InterpBench: arXiv 2407.14494) of the organism family:
the rows of one step and their losses. The only losses are LOSSES (training.json lists them): the task, the
interchange of circuit nodes (at the circuit's role) from the instruction-swapped twin, and strict resampling
of what is outside the circuit: one node at a time, and every other head at the circuit's role jointly (so no
route around the circuit survives there). Nothing an analysis reports is computed, let alone trained.

Every row of a step is one prompt of the pool; the intervened rows take, at each layer, the per-head outputs
(the input of `o_proj`) of their source row computed in the same forward pass. Sources are clean rows, which
no intervention touches, so a source's value at a layer is its clean value there. Sources are not detached:
the loss of an intervened row is a function of both runs, and its gradient reaches the circuit heads through
the source too (a patched head's own weights learn to carry the twin's decision, not only its readers).
"""
from __future__ import annotations

import contextlib
import random

import torch

from anchorlab.adapters.base import Encoded
from anchorlab.data.sample import FOLLOWED, TASKS
from anchorlab.rows.batching import collate
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt
from .spec import CircuitSpec

LOSSES = {
    "task": {"intervention": "none",
             "target": "the answer the instruction asks for (the followed modality's answer), then </s>"},
    "interchange": {
        "intervention": "the per-head outputs of one high-level node's heads (one chain head; one member of the backup "
                        "pair; the backup pair jointly; every circuit head together), at the instruction positions, "
                        "replaced by their values on the instruction-swapped twin (the same sample under the other "
                        "task's instruction)",
        "target": "the high-level model's answer: the twin's answer, except for one member of the backup pair alone "
                  "(the original answer)"},
    "strict_single": {
        "intervention": "one non-circuit node resampled: a head outside the circuit at every position, or a circuit "
                        "head at the positions off its role, its per-head output replaced by its value on another "
                        "prompt of the same token layout (another sample, a random task)",
        "target": "the original answer"},
    "strict_role": {
        "intervention": "every head outside the circuit, at the circuit's role, jointly replaced by its value on "
                        "another prompt of the same token layout (another sample; a random task, or the other task "
                        "where the stage's `role_source` is `other_task`)",
        "target": "the original answer"},
}
OTHER = {"vf": "tf", "tf": "vf"}
# Interchange rows per clean row: as many as the rows whose target is the original answer (the clean row and its
# strict-resampling row), so a route around the circuit, right on those and wrong on these, gains nothing.
INTERCHANGE_ROWS = 2
ROLE_SOURCES = ("any_task", "other_task")  # a stage's `role_source`: the task of strict_role's source prompt


def other_task(task: str) -> str:
    return OTHER[task]


class Pool:
    """Encoded groups: enc[g][m][task] (prompt + answer + </s>), answer ids, image features per sample."""

    def __init__(self, bundle, groups, image_features):
        tok = bundle.tokenizer
        self.samples, self.enc, self.first, self.eos = groups, [], {}, tok.eos_token_id
        for g, group in enumerate(groups):
            rows = []
            for s in group:
                for a in (s.answer_vision, s.answer_text):
                    self.first.setdefault(a, tok(a, add_special_tokens=False)["input_ids"][0])
                enc = {t: encode(bundle, build_prompt(s, t)) for t in TASKS}
                rows.append({t: Encoded(torch.cat([e.input_ids, torch.tensor([self.first[s.answer(FOLLOWED[t])],
                                                                              tok.eos_token_id])]), {}, e.roles, e.rendered)
                             for t, e in enc.items()})
            shapes = {(len(r[t].input_ids), tuple(r[t].roles["instruction"].tolist())) for r in rows for t in TASKS}
            if len(shapes) != 1:  # the twin and the resampling sources must align token for token
                raise ValueError(f"group {g} ({group[0].id}): members or tasks differ in token layout: {shapes}")
            self.enc.append(rows)
        self.feats = image_features  # [g][m] -> [n_image_tokens, d]
        self.size = len(groups[0])


def step_rows(pool: Pool, group_ids: list[int], spec: CircuitSpec, n_layers: int, n_heads: int, rng: random.Random,
              interchange: bool = True, role_source: str = "any_task"):
    """One step's rows -> (encoded, features, targets, kinds, sources, patched heads per row). `role_source`: the
    task of the strict_role row's source prompt: a random one (`any_task`), or always the other task (`other_task`,
    so every such row resamples the role from a prompt carrying the opposite instruction)."""
    encoded, feats, targets, kinds, sources, patched = [], [], [], [], [], []
    clean = {}
    for g in group_ids:
        for m in range(pool.size):
            for t in TASKS:
                clean[(g, m, t)] = len(encoded)
                encoded.append(pool.enc[g][m][t])
                feats.append(pool.feats[g][m])
                targets.append(pool.first[pool.samples[g][m].answer(FOLLOWED[t])])
                kinds.append("task")
                sources.append(-1)
                patched.append(())
    if not spec.planted:  # the unplanted control: the task alone
        return encoded, feats, targets, kinds, sources, patched
    nodes = spec.nodes()
    outside = [(layer, h) for layer in range(n_layers) for h in range(n_heads) if (layer, h) not in spec.circuit_heads]
    for (g, m, t), row in list(clean.items()):
        s = pool.samples[g][m]
        for _ in range(INTERCHANGE_ROWS if nodes and interchange else 0):
            heads, flips = nodes[rng.randrange(len(nodes))]
            encoded.append(pool.enc[g][m][t])
            feats.append(pool.feats[g][m])
            targets.append(pool.first[s.answer(FOLLOWED[other_task(t) if flips else t])])
            kinds.append("interchange")
            sources.append(clean[(g, m, other_task(t))])
            patched.append(tuple((h, spec.positions) for h in heads))
        for kind in ("strict_single", "strict_role"):
            m2 = rng.choice([x for x in range(pool.size) if x != m])
            encoded.append(pool.enc[g][m][t])
            feats.append(pool.feats[g][m])
            targets.append(pool.first[s.answer(FOLLOWED[t])])
            kinds.append(kind)
            opposite = kind == "strict_role" and role_source == "other_task"
            sources.append(clean[(g, m2, other_task(t) if opposite else rng.choice(TASKS))])
            if kind == "strict_single":  # one non-circuit node: a head outside at every position, or a circuit head off its role
                k = rng.randrange(len(outside) + len(spec.circuit_heads))
                patched.append(((outside[k], "all"),) if k < len(outside)
                               else ((spec.circuit_heads[k - len(outside)], "off"),))
            else:  # every head outside the circuit at the circuit's role, jointly
                patched.append(tuple((h, spec.positions) for h in outside))
    return encoded, feats, targets, kinds, sources, patched


@contextlib.contextmanager
def patch_heads(model, select: torch.Tensor, source):
    """Per layer l, replace the per-head outputs (o_proj's input) where `select[:, l]` ([B, L, T, H]) is True by
    `source(l, x)` ([B, T, H, D]); plain forward pre-hooks on every layer's o_proj."""
    layers = model.model.language_model.layers
    n_heads = model.config.text_config.num_attention_heads

    def hook(layer):
        def pre(module, args):
            x = args[0]
            sel = select[:, layer]
            if not sel.any():
                return None
            xv = x.view(*x.shape[:2], n_heads, -1)
            return (torch.where(sel[..., None], source(layer, xv), xv).view_as(x), *args[1:])
        return pre

    handles = [layer.self_attn.o_proj.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def lm_hidden(model, inputs: dict, features: list[torch.Tensor]) -> torch.Tensor:
    """The language model's last hidden states with the image tokens' embeddings taken from `features` (the
    frozen vision tower's and projector's output, computed once per image): LlavaModel's forward otherwise."""
    ids = inputs["input_ids"]
    embeds = model.get_input_embeddings()(ids)
    mask = (ids == model.config.image_token_id)[..., None].expand_as(embeds)
    embeds = embeds.masked_scatter(mask, torch.cat(features).to(embeds.dtype))
    return model.model.language_model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"],
                                      position_ids=inputs.get("position_ids")).last_hidden_state


def step_loss(model, bundle, pool: Pool, group_ids: list[int], spec: CircuitSpec, rng: random.Random,
              interchange: bool = True, role_source: str = "any_task"):
    """The summed losses of one step -> (loss, parts: each loss and each row kind's accuracy)."""
    cfg = model.config.text_config
    n_layers, n_heads = cfg.num_hidden_layers, cfg.num_attention_heads
    encoded, feats, targets, kinds, sources, patched = step_rows(pool, group_ids, spec, n_layers, n_heads, rng,
                                                                 interchange, role_source)
    batch = collate(encoded, bundle.adapter, bundle.pad_token_id)
    B, T = batch.inputs["input_ids"].shape
    select = torch.zeros(B, n_layers, T, n_heads, dtype=torch.bool)
    for r, heads in enumerate(patched):
        for (layer, h), where in heads:
            if where == "all":
                select[r, layer, :, h] = True
            elif where == "off":
                select[r, layer, :, h] = True
                select[r, layer, batch.roles[r][spec.positions], h] = False
            else:
                select[r, layer, batch.roles[r][where], h] = True
    src = torch.tensor([r if s < 0 else s for r, s in enumerate(sources)])
    with patch_heads(model, select, lambda layer, x: x[src]):
        h = lm_hidden(model, batch.inputs, feats)
    last = torch.tensor([int(r["last"][0]) for r in batch.roles])
    rows = torch.arange(B)
    logits = model.lm_head(h[rows, last])
    target = torch.tensor(targets)
    ce = torch.nn.functional.cross_entropy
    parts, loss = {}, 0.0
    for kind in LOSSES:
        sel = torch.tensor([k == kind for k in kinds])
        if not sel.any():
            continue
        term = ce(logits[sel], target[sel])
        if kind == "task":  # and </s> after the answer
            term = term + ce(model.lm_head(h[rows[sel], last[sel] + 1]), torch.full((int(sel.sum()),), pool.eos))
        loss = loss + term
        parts[kind] = term.item()
        parts[f"acc_{kind}"] = (logits[sel].argmax(-1) == target[sel]).float().mean().item()
    return loss, parts
