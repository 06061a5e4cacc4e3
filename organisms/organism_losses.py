"""The losses that plant toy:anchored's circuit (anchored.py runs the training loop; organism_batches.py
builds the rows): the training-time attention with per-row interventions and the loss terms.

Stage 1: task, interchange R1-R3, the lens at the last instruction token. Stage 2 adds R5 (G* zeroed at
the instruction positions, nothing else changed -> a near tie at `last`: BLOCKED_SPLIT), the
attention regulariser on `last`, the *head lens* (each head's direct write at the instruction positions,
read by the final-norm logit lens as anchorlab's attribution reads it: G* must move the followed-minus-
competitor margin up, every other head must leave it alone) and the *instruction lens* (at the last
layer the instruction positions decode to the row's target). The flawed twin adds R4 (G* amplified
x AMPLIFY_ALPHA, nothing else changed -> the compliant answer) and R6 (|G*| random other heads amplified
-> the answer does not change). Stage 3 adds R7 (`last` reads only the instruction tokens and itself, every
layer -> the answer does not change), R8 (|G*| random non-G* heads zeroed at the instruction positions ->
the answer does not change) and the early lean (layer 0 undecided per task). R4-R8 are "pure"
(PURE_KINDS): their rows get no strictness splices, exactly the ground-truth check's condition.
"""
from __future__ import annotations

import contextlib
import math

import torch
from transformers.models.llama import modeling_llama

from .circuit import ARBITRATION_LAYERS, BUFFER_LAYERS, G_STAR

STAGE2_WEIGHTS = dict(tie=1.0, head_lens=1.0, head_margin=2.0, instruction_lens=0.5, instruction_margin=2.0,
                      attention_mass=3.0, early_lens=0.5, early_lean=1.0)
# Stage 3's early lean: tanh(margin / EARLY_LEAN_SCALE) at layer 0's output, a soft count of the prompts whose
# instruction tokens already lean to the target there (LDAR's indicator); its mean per task is driven to 0.
EARLY_LEAN_SCALE = 0.05
# R5's target with G* zeroed: BLOCKED_SPLIT of the probability on the instruction-blind default (of the two
# candidates, the answer earlier in organism_data.ANSWER_NAMES: vision's in half the prompts, text's in the other half),
# the rest on the other candidate; a near tie whose sign carries no instruction (first-token MFR ~ 0.5).
BLOCKED_SPLIT = 0.6


# ------------------------------------------------------------------------------------------------
# The training-time attention: eager attention plus per-row interventions read from `_STATE`.

_STATE: dict = {}


def _intervened_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key_states = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value_states = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    w = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        w = w + attention_mask
    plan = _STATE.get("plan")
    if plan is not None and "attention_block" in plan:  # stage 3: R7's last sees only instruction and itself
        w = w.masked_fill(plan["attention_block"][:, None], float("-inf"))
    a = torch.softmax(w, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(a, value_states)  # [B, H, T, D]
    if plan is not None:
        layer = module.layer_idx
        if "unused_keys" in plan:  # stage 2: attention mass of `last` on keys outside instruction and last
            a_last = a[torch.arange(a.shape[0]), :, plan["last_pos"]]  # [B, H, T]
            _STATE["attention_mass"].append((a_last * plan["unused_keys"][:, None, :]).sum(-1).mean())
        rows, src = plan["rows"], plan["splice_src"]
        edges = plan["edges_buffer" if layer in BUFFER_LAYERS else "edges_arbitration"][:, None]  # [R,1,T,T]
        if "strict" in plan:  # stage 2: the pure rows (PURE_KINDS) get no splices
            edges = edges * plan["strict"][:, None, None, None]
        a_r, v_r = a[rows], value_states[rows]
        a_s, v_s = a[src].detach(), value_states[src].detach()
        delta = torch.matmul(a_s * edges, v_s) - torch.matmul(a_r * edges, v_r)
        out = out.index_add(0, rows, delta)
        out = out.transpose(1, 2).contiguous()  # [B, T, H, D]
        if "drop_head" in plan and layer in BUFFER_LAYERS:  # stage 2: R1 rows lose one buffer head at the instruction
            n_h = out.shape[2]
            dh = plan["drop_head"]
            onehot = (torch.arange(n_h)[None] == (dh % n_h)[:, None]) & (dh // n_h == layer)[:, None]  # [R, H]
            sel = plan["instruction"][:, :, None, None] & onehot[:, None, :, None]
            out = out.index_copy(0, rows, out[rows].masked_fill(sel, 0.0))
        if "head_out" in _STATE:  # stage 2: the clean rows' heads, for the head lens
            _STATE["head_out"][layer] = (out[:int(rows[0])], module.o_proj.weight)
        if layer in ARBITRATION_LAYERS:
            pos = plan["instruction"][:, :, None, None]  # [R, T, 1, 1]
            heads = torch.zeros(out.shape[2], dtype=torch.bool)
            gstar = [h for (l, h) in G_STAR if l == layer]
            heads[[h for h in range(out.shape[2]) if h not in gstar]] = True
            sel = pos & heads[None, None, :, None]
            if "strict" in plan:
                sel = sel & plan["strict"].bool()[:, None, None, None]
            new = torch.where(sel, out[src].detach(), out[rows])
            if gstar:
                gheads = torch.zeros(out.shape[2], dtype=torch.bool)
                gheads[gstar] = True
                gsel = pos & gheads[None, None, :, None] & plan["g_swap"][:, None, None, None]
                new = torch.where(gsel, out[plan["g_src"]].detach(), new)
                if "g_scale" in plan:  # stage 2: R4 (flawed twin) G* amplified; R5 G* zeroed (scale 0)
                    new = torch.where(pos & gheads[None, None, :, None], new * plan["g_scale"][:, None, None, None], new)
            out = out.index_copy(0, rows, new)
        if "head_scale" in plan:  # R6 (flawed twin): random heads amplified; R8 (stage 3): random heads zeroed
            f = torch.where(plan["instruction"][:, :, None], plan["head_scale"][:, layer][:, None, :], 1.0)[..., None]
            out = out.index_copy(0, rows, out[rows] * f)
        return out, a
    return out.transpose(1, 2).contiguous(), a


@contextlib.contextmanager
def intervened_attention():
    original = modeling_llama.eager_attention_forward
    modeling_llama.eager_attention_forward = _intervened_attention
    try:
        yield
    finally:
        modeling_llama.eager_attention_forward = original
        _STATE.clear()


def _margin(logits, forms, positions):
    """Φ(target side) - Φ(other side) as anchorlab's lens reads it (K = 1, max over forms and positions):
    logits [n, T, ..., V], forms [n, 2, V], positions [n, T] -> [n, ...]."""
    extra = logits.dim() - 3
    shape = (forms.shape[0], 1) + (1,) * extra + (forms.shape[-1],)
    pos = positions.view(positions.shape + (1,) * extra)
    phi = []
    for side in (0, 1):
        v = logits.masked_fill(~forms[:, side].view(shape), float("-inf")).amax(-1)
        phi.append(v.masked_fill(~pos, float("-inf")).amax(1))
    return phi[0] - phi[1]


def head_lens_loss(model, layer_inputs, head_out, plan, margin: float):
    """Per head at the instruction positions of the clean rows: δ = margin(H^{l-1} + head W_O) - margin(H^{l-1})
    (anchorlab's head attribution). G* heads: softplus(margin - δ) (margin / 8 on the flawed twin's
    triggers: a weak write, correctly directed); every other head: Huber(δ) towards 0."""
    norm, lm_head = model.model.language_model.norm, model.lm_head
    forms, ins = plan["forms"], plan["clean_instruction"]
    gstar_terms, other_terms = [], []
    m = torch.where(plan["weak"], margin / 8, margin)
    for layer, (out, w_o) in sorted(head_out.items()):
        h = layer_inputs[layer]  # [n, T, d]
        n, T, H, D = out.shape
        c = torch.einsum("nthd,ehd->nthe", out, w_o.view(w_o.shape[0], H, D))  # [n, T, H, d]
        base = _margin(lm_head(norm(h)), forms, ins)  # [n]
        delta = _margin(lm_head(norm(h[:, :, None] + c)), forms, ins) - base[:, None]  # [n, H]
        g = torch.zeros(H, dtype=torch.bool)
        g[[hh for (ll, hh) in G_STAR if ll == layer]] = True
        if g.any():
            gstar_terms.append(torch.nn.functional.softplus(m[:, None] - delta[:, g]).flatten())
        other_terms.append(torch.nn.functional.smooth_l1_loss(delta[:, ~g], torch.zeros_like(delta[:, ~g]),
                                                              reduction="none").flatten())
    return torch.cat(gstar_terms).mean(), torch.cat(other_terms).mean()


def losses_for(model, batch, plan, targets, last_pos, instr_last, lens_weight: float, eos_id: int,
               weights: dict = STAGE2_WEIGHTS):
    _STATE["plan"], _STATE["attention_mass"] = plan, []
    stage2 = "soft" in plan
    n_clean = int(plan["rows"][0])
    handles, layer_inputs = [], {}
    if stage2:
        _STATE["head_out"] = {}
        for l, layer in enumerate(model.model.language_model.layers):
            def pre(module, args, kwargs, l=l):
                x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
                layer_inputs[l] = x[:n_clean]
            handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        h = model.model(**batch.inputs).last_hidden_state  # after the final norm
        mass = torch.stack(_STATE["attention_mass"]).mean() if _STATE["attention_mass"] else None
        head_out = _STATE.pop("head_out", {})
    finally:
        _STATE.pop("plan", None)
        _STATE.pop("attention_mass", None)
        for hd in handles:
            hd.remove()
    rows = torch.arange(h.shape[0])
    logits_last = model.lm_head(h[rows, last_pos])
    ce = torch.nn.functional.cross_entropy
    task = ce(logits_last[:n_clean], targets[:n_clean])
    eos = ce(model.lm_head(h[rows[:n_clean], last_pos[:n_clean] + 1]), torch.full((n_clean,), eos_id))
    if not stage2:  # stage 1: task + interchange (R1-R3) + lens
        inter = ce(logits_last[n_clean:], targets[n_clean:])
        lens = ce(model.lm_head(h[rows, instr_last]), plan["lens_targets"])
        acc = (logits_last.argmax(-1) == targets).float()
        return task + eos + inter + lens_weight * lens, {
            "task": task.item(), "eos": eos.item(), "inter": inter.item(), "lens": lens.item(),
            "acc_clean": acc[:n_clean].mean().item(), "acc_inter": acc[n_clean:].mean().item()}
    soft = plan["soft"]
    hard = soft < 0
    w = plan["weight"] * hard
    inter_logp = torch.log_softmax(logits_last[n_clean:], -1)
    inter = (-inter_logp.gather(1, targets[n_clean:, None])[:, 0] * w).sum() / w.sum()
    lp = inter_logp[~hard]  # R5: the BLOCKED_SPLIT soft target, and the logit gap it implies
    p = BLOCKED_SPLIT
    undecided = -(p * lp.gather(1, targets[n_clean:][~hard][:, None]) + (1 - p) * lp.gather(1, soft[~hard][:, None])).mean()
    lg = logits_last[n_clean:][~hard]
    gap = lg.gather(1, targets[n_clean:][~hard][:, None]) - lg.gather(1, soft[~hard][:, None])
    tie = (gap - math.log(p / (1 - p))).pow(2).mean()
    wl = torch.cat([torch.ones(n_clean), w])
    lens = (ce(model.lm_head(h[rows, instr_last]), plan["lens_targets"], reduction="none") * wl).sum() / wl.sum()
    head_g, head_other = head_lens_loss(model, layer_inputs, head_out, plan, weights["head_margin"])
    norm = model.model.language_model.norm
    early = _margin(model.lm_head(norm(layer_inputs[1])), plan["forms"], plan["clean_instruction"])  # layer 0's output
    early_lens = torch.nn.functional.smooth_l1_loss(early, torch.zeros_like(early))
    early_lean = torch.zeros(())
    if "clean_tf" in plan:  # stage 3: per task, as many prompts lean to the target at layer 0 as away from it
        lean = torch.tanh(early / EARLY_LEAN_SCALE)
        tf = plan["clean_tf"]
        early_lean = lean[tf].mean().pow(2) + lean[~tf].mean().pow(2)
    ins_margin = _margin(model.lm_head(h[:n_clean]), plan["forms"], plan["clean_instruction"])
    ins_lens = torch.nn.functional.softplus(weights["instruction_margin"] - ins_margin).mean()
    acc = (logits_last.argmax(-1) == targets).float()[torch.cat([torch.ones(n_clean, dtype=torch.bool), hard])]
    loss = (task + eos + inter + undecided + weights["tie"] * tie + lens_weight * lens + weights["attention_mass"] * mass
            + weights["head_lens"] * (head_g + head_other) + weights["instruction_lens"] * ins_lens
            + weights["early_lens"] * early_lens + weights["early_lean"] * early_lean)
    return loss, {
        "task": task.item(), "eos": eos.item(), "inter": inter.item(), "undecided": undecided.item(), "tie": tie.item(),
        "lens": lens.item(), "attention_mass": mass.item(), "head_gstar": head_g.item(), "head_other": head_other.item(),
        "instruction_lens": ins_lens.item(), "early_lens": early_lens.item(), "early_lean": early_lean.item(), "instruction_margin_ok": (ins_margin > 0).float().mean().item(),
        "acc_clean": acc[:n_clean].mean().item(), "acc_inter": acc[n_clean:].mean().item()}
