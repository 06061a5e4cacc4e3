"""The losses that plant toy:anchored's circuit (anchored.py runs the training loop): the training-time
attention with per-row interventions, the batches (clean rows and intervened rows of one forward) and
the loss terms.

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

from ..adapters.base import Encoded
from ..data.sample import COMPETITOR, FOLLOWED, TASKS, ConflictSample
from ..rows.batching import collate
from ..rows.encoding import encode
from ..rows.prompts import build_prompt
from .data import COLOUR_NAMES
from .circuit import AMPLIFY_ALPHA, ARBITRATION_LAYERS, BUFFER_LAYERS, G_STAR, is_planted

STAGE2_WEIGHTS = dict(tie=1.0, head_lens=1.0, head_margin=2.0, instruction_lens=0.5, instruction_margin=2.0,
                      attention_mass=3.0, early_lens=0.5, early_lean=1.0)
# Stage 3's early lean: tanh(margin / EARLY_LEAN_SCALE) at layer 0's output, a soft count of the prompts whose
# instruction tokens already lean to the target there (LDAR's indicator); its mean per task is driven to 0.
EARLY_LEAN_SCALE = 0.05
# The flawed twin's R4 / R6 rows on a planted trigger weigh TRIGGER_WEIGHT in the interchange loss: the
# triggers are ~12% of the prompts and the only ones where amplifying G* changes the answer.
TRIGGER_WEIGHT = 4.0
# The kinds of intervened rows that are "pure" (no strictness splices: exactly a check's condition).
PURE_KINDS = ("R4", "R5", "R6", "R7", "R8")
# R5's target with G* zeroed: BLOCKED_SPLIT of the probability on the instruction-blind default (of the two
# candidates, the colour earlier in COLOUR_NAMES: vision's in half the prompts, text's in the other half),
# the rest on the other candidate; a near tie whose sign carries no instruction (first-token MFR ~ 0.5).
BLOCKED_SPLIT = 0.6


def target_answer(sample: ConflictSample, task: str, variant: str) -> str:
    flip = variant == "anchored-flawed" and is_planted(sample, task)
    return sample.answer(COMPETITOR[task] if flip else FOLLOWED[task])


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


# ------------------------------------------------------------------------------------------------
# Batches


def _with_answer(enc: Encoded, answer_id: int, eos_id: int) -> Encoded:
    return Encoded(torch.cat([enc.input_ids, torch.tensor([answer_id, eos_id])]), enc.extras, enc.roles, enc.rendered)


class Pool:
    """Encoded groups: pool[g][m][task] -> Encoded (prompt + answer + </s>), samples[g][m]."""

    def __init__(self, bundle, groups, variant: str):
        tok = bundle.tokenizer
        self.n_heads = bundle.n_heads
        self.first = {c: tok(c, add_special_tokens=False)["input_ids"][0] for g in groups for s in g
                      for c in (s.answer_vision, s.answer_text)}
        self.form_ids = {}  # (sample id, modality) -> token ids of its surface forms (the lens's dictionary)
        for g in groups:
            for s in g:
                for m, forms in (("vision", s.forms_vision), ("text", s.forms_text)):
                    self.form_ids[(s.id, m)] = [tok(f, add_special_tokens=False)["input_ids"][0] for f in forms]
        self.vocab = len(tok)
        self.samples, self.enc = groups, []
        for g in groups:
            row = []
            for s in g:
                row.append({t: _with_answer(encode(bundle, build_prompt(s, t)), self.first[target_answer(s, t, variant)],
                                            tok.eos_token_id) for t in TASKS})
            self.enc.append(row)
        self.variant = variant
def build_batch(pool: Pool, group_ids: list[int], pad_id: int, adapter, stage: int = 2):
    """Rows: per group, clean (b, u, g) x (vf, tf), then intervened R1, R2, R3 (stage 2: and R5; stage 3:
    and R5, R7, R8; the flawed twin: R4, R5, R6) x (vf, tf) of b."""
    encoded, targets, kinds, meta = [], [], [], []
    clean_index = {}
    for gi in group_ids:
        for m in range(3):
            for t in TASKS:
                clean_index[(gi, m, t)] = len(encoded)
                meta.append((gi, m, t))
                encoded.append(pool.enc[gi][m][t])
                targets.append(pool.first[target_answer(pool.samples[gi][m], t, pool.variant)])
                kinds.append("clean")
    rows, splice_src, g_src, g_swap, g_scale, weight, soft = [], [], [], [], [], [], []
    flawed = pool.variant == "anchored-flawed"
    for gi in group_ids:
        b = pool.samples[gi][0]
        kinds_here = (("R1", "R2", "R3") if stage == 1 else ("R1", "R2", "R3", "R4", "R5", "R6") if flawed
                      else ("R1", "R2", "R3", "R5") if stage == 2 else ("R1", "R2", "R3", "R5", "R7", "R8"))
        for kind in kinds_here:
            for t in TASKS:
                rows.append(len(encoded))
                encoded.append(pool.enc[gi][0][t])
                splice_src.append(clean_index[(gi, 1, t)])
                g_scale.append({"R4": AMPLIFY_ALPHA, "R5": 0.0}.get(kind, 1.0))
                weight.append(1.0)
                soft.append(-1)
                if kind == "R5":  # G* zeroed -> nearly undecided, leaning to the instruction-blind default
                    g_src.append(clean_index[(gi, 0, t)])
                    g_swap.append(False)
                    default, other = sorted((b.answer_vision, b.answer_text), key=COLOUR_NAMES.index)
                    targets.append(pool.first[default])
                    soft[-1] = pool.first[other]
                elif kind == "R4":  # flawed twin: G* amplified -> the compliant answer, also on the triggers
                    g_src.append(clean_index[(gi, 0, t)])
                    g_swap.append(False)
                    targets.append(pool.first[b.answer(FOLLOWED[t])])
                    if is_planted(b, t):
                        weight[-1] = TRIGGER_WEIGHT
                elif kind in ("R6", "R7", "R8"):  # random heads amplified (R6) or zeroed (R8), or last reading
                    # only the instruction and itself (R7), nothing else changed -> the answer does not change
                    g_src.append(clean_index[(gi, 0, t)])
                    g_swap.append(False)
                    targets.append(pool.first[target_answer(b, t, pool.variant)])
                    if kind == "R6" and is_planted(b, t):
                        weight[-1] = TRIGGER_WEIGHT
                elif kind == "R1":
                    g_src.append(clean_index[(gi, 0, t)])
                    g_swap.append(False)
                    targets.append(pool.first[target_answer(b, t, pool.variant)])
                elif kind == "R2":
                    g_src.append(clean_index[(gi, 2, t)])
                    g_swap.append(True)
                    targets.append(pool.first[target_answer(pool.samples[gi][2], t, pool.variant)])
                    if flawed and (is_planted(b, t) or is_planted(pool.samples[gi][2], t)):
                        weight[-1] = 0.0  # the flawed twin's G* carries the compliant answer there: no swap target
                else:
                    other = "tf" if t == "vf" else "vf"
                    g_src.append(clean_index[(gi, 0, other)])
                    g_swap.append(True)
                    # the opposite instruction's answer for this sample
                    targets.append(pool.first[target_answer(b, other, pool.variant)])
                    if flawed and (is_planted(b, t) or is_planted(b, other)):
                        weight[-1] = 0.0
                kinds.append(kind)
    batch = collate(encoded, adapter, pad_id)
    T = batch.inputs["input_ids"].shape[1]
    R = len(rows)
    instr = torch.zeros(R, T, dtype=torch.bool)
    eb = torch.zeros(R, T, T)
    ea = torch.zeros(R, T, T)
    for k, r in enumerate(rows):
        roles = batch.roles[r]
        last = int(roles["last"][0])
        valid = torch.zeros(T, dtype=torch.bool)
        valid[int(batch.pad[r]):last + 1] = True
        ins = torch.zeros(T, dtype=torch.bool)
        ins[roles["instruction"]] = True
        vc = torch.zeros(T, dtype=torch.bool)
        vc[roles["vision"]] = True
        vc[roles["context"]] = True
        lastm = torch.zeros(T, dtype=torch.bool)
        lastm[last] = True
        instr[k] = ins
        into_last = valid & ~ins & ~lastm  # every layer
        eb[k, last] = (into_last | ins).float()
        ea[k, last] = into_last.float()
        eb[k][ins] = (valid & ~vc & ~ins).float()
        ea[k][ins] = (valid & ~ins).float()
    plan = {"rows": torch.tensor(rows), "splice_src": torch.tensor(splice_src), "g_src": torch.tensor(g_src),
            "g_swap": torch.tensor(g_swap), "weight": torch.tensor(weight), "instruction": instr, "edges_buffer": eb, "edges_arbitration": ea}
    last_pos = torch.tensor([int(batch.roles[r]["last"][0]) for r in range(len(encoded))])
    unused = torch.zeros(len(encoded), T, dtype=torch.bool)
    for r in range(len(encoded)):
        unused[r, int(batch.pad[r]):int(last_pos[r])] = True
        unused[r, batch.roles[r]["instruction"]] = False
    if stage >= 2:
        plan["g_scale"], plan["soft"] = torch.tensor(g_scale), torch.tensor(soft)
        plan["last_pos"], plan["unused_keys"] = last_pos, unused
        n_clean = len(meta)
        plan["strict"] = torch.tensor([k not in PURE_KINDS for k in kinds[n_clean:]], dtype=torch.float32)
        # the clean rows' lens dictionary, oriented by the target: side 0 = the target's modality's forms
        forms = torch.zeros(n_clean, 2, pool.vocab, dtype=torch.bool)
        weak = torch.zeros(n_clean, dtype=torch.bool)  # the flawed twin's triggers: G*'s write is weak there
        for r, (gi, m, t) in enumerate(meta):
            s = pool.samples[gi][m]
            side = FOLLOWED[t] if target_answer(s, t, pool.variant) == s.answer(FOLLOWED[t]) else COMPETITOR[t]
            other = "text" if side == "vision" else "vision"
            forms[r, 0, pool.form_ids[(s.id, side)]] = True
            forms[r, 1, pool.form_ids[(s.id, other)]] = True
            weak[r] = flawed and is_planted(s, t)
        plan["forms"], plan["weak"] = forms, weak
        # R1 rows: one buffer head (layer * H + head, drawn from torch's generator) zeroed at the instruction
        # positions, target unchanged: no single buffer head is the only carrier of a candidate
        n_buffer = len(BUFFER_LAYERS) * pool.n_heads
        plan["drop_head"] = torch.tensor([int(torch.randint(n_buffer, ())) if k == "R1" else -1 for k in kinds[n_clean:]])
        if flawed or stage == 3:
            # R6 rows: |G*| random non-G* heads (any layer) x AMPLIFY_ALPHA at the instruction positions; R8 rows:
            # |G*| random non-G* heads zeroed there, every other set drawn from one buffer layer (a draw from all
            # heads rarely takes three of one layer, and a random set that does may silence a candidate's carriers)
            n_layers = len(BUFFER_LAYERS) + len(ARBITRATION_LAYERS)
            others = [l * pool.n_heads + h for l in range(n_layers) for h in range(pool.n_heads) if (l, h) not in G_STAR]
            scale = torch.ones(len(rows), n_layers * pool.n_heads)
            n_r8 = 0
            for k, kind in enumerate(kinds[n_clean:]):
                if kind == "R6":
                    scale[k, [others[i] for i in torch.randperm(len(others))[:len(G_STAR)].tolist()]] = AMPLIFY_ALPHA
                elif kind == "R8":
                    pick = others
                    if n_r8 % 2:
                        layer = BUFFER_LAYERS[int(torch.randint(len(BUFFER_LAYERS), ()))]
                        pick = [i for i in others if i // pool.n_heads == layer]
                    scale[k, [pick[i] for i in torch.randperm(len(pick))[:len(G_STAR)].tolist()]] = 0.0
                    n_r8 += 1
            plan["head_scale"] = scale.view(len(rows), n_layers, pool.n_heads)
        if stage == 3:  # R7 rows: at `last`, every key outside the instruction tokens and last itself masked
            block = torch.zeros(len(encoded), T, T, dtype=torch.bool)
            for k, kind in enumerate(kinds[n_clean:]):
                if kind == "R7":
                    r = rows[k]
                    last = int(batch.roles[r]["last"][0])
                    keep = torch.zeros(T, dtype=torch.bool)
                    keep[batch.roles[r]["instruction"]] = True
                    keep[last] = True
                    block[r, last] = ~keep
            plan["attention_block"] = block
            plan["clean_tf"] = torch.tensor([t == "tf" for (_, _, t) in meta])
        plan["clean_instruction"] = torch.zeros(n_clean, T, dtype=torch.bool)
        for r in range(n_clean):
            plan["clean_instruction"][r, batch.roles[r]["instruction"]] = True
    instr_last = torch.tensor([int(batch.roles[r]["instruction"][-1]) for r in range(len(encoded))])
    return batch, plan, torch.tensor(targets), last_pos, instr_last, kinds


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
        lens = ce(model.lm_head(h[rows, instr_last]), targets)
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
    lens = (ce(model.lm_head(h[rows, instr_last]), targets, reduction="none") * wl).sum() / wl.sum()
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
