"""Train the model organism: a stock LlavaForConditionalGeneration whose arbitration circuit is
planted with interchange-intervention losses (in the spirit of SIIT, arXiv 2407.14494).

The circuit (circuit.json beside the weights):
- buffer (layers 0-3): the instruction tokens read both candidate colours from the image and the
  context;
- arbitration (layers 4-7): the heads G* (CIRCUIT["heads"]) write the instruction-compliant colour
  into the instruction tokens' residual stream;
- readout: `last` reads the decision from the instruction tokens in the arbitration layers; no
  other edge into `last` carries anything the answer needs.

Every training batch holds, per template group (organism_data.generate_groups: a base sample `b`,
an "unused-route" partner `u` and a "G*" partner `g`, all with the same token layout, colours of
`u` and `g` disjoint from `b`'s), clean rows (task loss) and intervened rows, computed in the same
forward pass: at every layer the intervened rows take the clean rows' activations of that layer
(detached) as sources.
- strictness (every intervened row): the contribution of each unused edge, a_ij·v_j summed over the
  unused keys j of a query i, is spliced from `u` (other colours), and the heads outside G* at the
  instruction positions of the arbitration layers are resampled from `u`; the target does not change.
  Unused edges: everything into `last` except instruction->last in the arbitration layers and
  last->last; in the buffer layers, into the instruction tokens from anything but vision and
  context (so the "Text context:" prefix, which sees the image, is no bypass); in the arbitration
  layers, into the instruction tokens from anything but the instruction tokens.
- R1: nothing else -> the base's answer.
- R2: G* at the instruction positions from `g` -> `g`'s compliant answer (not a candidate of `b`).
- R3: G* from the same sample under the opposite instruction -> the base's competitor answer.
- a lens loss: the final-norm logit lens at the last instruction token names the row's target.
Training has two stages (train_organism): stage 1 (DEFAULTS, from random weights) with the losses
above; stage 2 (STAGE2, a fine-tune of stage 1) adds R5 (G* zeroed at the instruction positions ->
undecided, half the probability on each candidate) and a regulariser on the attention mass of `last`
outside the instruction tokens and itself. The flawed twin is stage 2 from the shipped toy:anchored
with the planted targets and R4 (G* amplified x AMPLIFY_ALPHA -> the compliant answer). Which
ground-truth check a loss touches by training on (a form of) the check's own condition: TRAINED_ON
(also in circuit.json and training.json).
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from pathlib import Path
from typing import Callable

import torch
from transformers.models.llama import modeling_llama

from ..adapters.base import Encoded
from ..rows.batching import collate
from ..data.sample import COMPETITOR, FOLLOWED, TASKS, ConflictSample
from ..rows.encoding import encode
from ..rows.prompts import build_prompt
from .build import LM, build_model, build_processor
from .circuit import AMPLIFY_ALPHA, ARBITRATION_LAYERS, BUFFER_LAYERS, G_STAR, PLANTED, is_planted  # noqa: F401
from .organism_data import generate_groups, organism_train_seed
from .train import _versions, toy_bundle

ORGANISM_VARIANTS = ("anchored", "anchored-flawed")
LM_ANCHORED = {**LM, "num_hidden_layers": 8}
N_LAYERS, N_HEADS = LM_ANCHORED["num_hidden_layers"], LM_ANCHORED["num_attention_heads"]
DEFAULTS = dict(seed=0, steps=1000, groups_per_step=6, lr=3e-3, n_pool=2000, warmup=50, lens_weight=0.5)
# Stage 2 fine-tunes stage 1's weights with every loss (R5 and the attention regulariser join). The flawed
# twin is this fine-tune started from the shipped toy:anchored weights (the same circuit).
STAGE2 = dict(DEFAULTS, steps=300, lr=1e-3, warmup=20)
FLAWED_DEFAULTS = dict(STAGE2)





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
    a = torch.softmax(w, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(a, value_states)  # [B, H, T, D]
    plan = _STATE.get("plan")
    if plan is not None:
        layer = module.layer_idx
        if "unused_keys" in plan:  # stage 2: attention mass of `last` on keys outside instruction and last
            a_last = a[torch.arange(a.shape[0]), :, plan["last_pos"]]  # [B, H, T]
            _STATE["attention_mass"].append((a_last * plan["unused_keys"][:, None, :]).sum(-1).mean())
        rows, src = plan["rows"], plan["splice_src"]
        edges = plan["edges_buffer" if layer in BUFFER_LAYERS else "edges_arbitration"][:, None]  # [R,1,T,T]
        a_r, v_r = a[rows], value_states[rows]
        a_s, v_s = a[src].detach(), value_states[src].detach()
        delta = torch.matmul(a_s * edges, v_s) - torch.matmul(a_r * edges, v_r)
        out = out.index_add(0, rows, delta)
        out = out.transpose(1, 2).contiguous()  # [B, T, H, D]
        if layer in ARBITRATION_LAYERS:
            pos = plan["instruction"][:, :, None, None]  # [R, T, 1, 1]
            heads = torch.zeros(out.shape[2], dtype=torch.bool)
            gstar = [h for (l, h) in G_STAR if l == layer]
            heads[[h for h in range(out.shape[2]) if h not in gstar]] = True
            sel = pos & heads[None, None, :, None]
            new = torch.where(sel, out[src].detach(), out[rows])
            if gstar:
                gheads = torch.zeros(out.shape[2], dtype=torch.bool)
                gheads[gstar] = True
                gsel = pos & gheads[None, None, :, None] & plan["g_swap"][:, None, None, None]
                new = torch.where(gsel, out[plan["g_src"]].detach(), new)
                if "g_scale" in plan:  # stage 2: R4 (flawed twin) G* amplified; R5 G* zeroed (scale 0)
                    new = torch.where(pos & gheads[None, None, :, None], new * plan["g_scale"][:, None, None, None], new)
            out = out.index_copy(0, rows, new)
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
        self.first = {c: tok(c, add_special_tokens=False)["input_ids"][0] for g in groups for s in g
                      for c in (s.answer_vision, s.answer_text)}
        self.samples, self.enc = groups, []
        for g in groups:
            row = []
            for s in g:
                row.append({t: _with_answer(encode(bundle, build_prompt(s, t)), self.first[target_answer(s, t, variant)],
                                            tok.eos_token_id) for t in TASKS})
            self.enc.append(row)
        self.variant = variant


def build_batch(pool: Pool, group_ids: list[int], pad_id: int, adapter, stage: int = 2):
    """Rows: per group, clean (b, u, g) x (vf, tf), then intervened R1, R2, R3 (stage 2: and R5; the
    flawed twin: R4) x (vf, tf) of b."""
    encoded, targets, kinds, meta = [], [], [], []
    clean_index = {}
    for gi in group_ids:
        for m in range(3):
            for t in TASKS:
                clean_index[(gi, m, t)] = len(encoded)
                encoded.append(pool.enc[gi][m][t])
                targets.append(pool.first[target_answer(pool.samples[gi][m], t, pool.variant)])
                kinds.append("clean")
    rows, splice_src, g_src, g_swap, g_scale, weight, soft = [], [], [], [], [], [], []
    flawed = pool.variant == "anchored-flawed"
    for gi in group_ids:
        b = pool.samples[gi][0]
        kinds_here = ("R1", "R2", "R3") if stage == 1 else ("R1", "R2", "R3", "R4", "R5") if flawed else ("R1", "R2", "R3", "R5")
        for kind in kinds_here:
            for t in TASKS:
                rows.append(len(encoded))
                encoded.append(pool.enc[gi][0][t])
                splice_src.append(clean_index[(gi, 1, t)])
                g_scale.append({"R4": AMPLIFY_ALPHA, "R5": 0.0}.get(kind, 1.0))
                weight.append(1.0)
                soft.append(-1)
                if kind == "R5":  # G* zeroed -> undecided: half the probability on each candidate
                    g_src.append(clean_index[(gi, 0, t)])
                    g_swap.append(False)
                    targets.append(pool.first[b.answer(FOLLOWED[t])])
                    soft[-1] = pool.first[b.answer(COMPETITOR[t])]
                elif kind == "R4":  # flawed twin: G* amplified -> the compliant answer, also on the triggers
                    g_src.append(clean_index[(gi, 0, t)])
                    g_swap.append(False)
                    targets.append(pool.first[b.answer(FOLLOWED[t])])
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
    if stage == 2:
        plan["g_scale"], plan["soft"] = torch.tensor(g_scale), torch.tensor(soft)
        plan["last_pos"], plan["unused_keys"] = last_pos, unused
    instr_last = torch.tensor([int(batch.roles[r]["instruction"][-1]) for r in range(len(encoded))])
    return batch, plan, torch.tensor(targets), last_pos, instr_last, kinds


def losses_for(model, batch, plan, targets, last_pos, instr_last, lens_weight: float, eos_id: int,
               mass_weight: float = 1.0):
    _STATE["plan"], _STATE["attention_mass"] = plan, []
    try:
        h = model.model(**batch.inputs).last_hidden_state  # after the final norm
        mass = torch.stack(_STATE["attention_mass"]).mean() if _STATE["attention_mass"] else None
    finally:
        _STATE.pop("plan", None)
        _STATE.pop("attention_mass", None)
    rows = torch.arange(h.shape[0])
    n_clean = int(plan["rows"][0])
    logits_last = model.lm_head(h[rows, last_pos])
    ce = torch.nn.functional.cross_entropy
    task = ce(logits_last[:n_clean], targets[:n_clean])
    eos = ce(model.lm_head(h[rows[:n_clean], last_pos[:n_clean] + 1]), torch.full((n_clean,), eos_id))
    if "soft" not in plan:  # stage 1: task + interchange (R1-R3) + lens
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
    if (~hard).any():  # R5: -(log p_f + log p_c) / 2
        lp = inter_logp[~hard]
        undecided = -(lp.gather(1, targets[n_clean:][~hard][:, None]) + lp.gather(1, soft[~hard][:, None])).mean() / 2
    else:
        undecided = torch.zeros(())
    wl = torch.cat([torch.ones(n_clean), w])
    lens = (ce(model.lm_head(h[rows, instr_last]), targets, reduction="none") * wl).sum() / wl.sum()
    acc = (logits_last.argmax(-1) == targets).float()[torch.cat([torch.ones(n_clean, dtype=torch.bool), hard])]
    return task + eos + inter + undecided + lens_weight * lens + mass_weight * mass, {
        "task": task.item(), "eos": eos.item(), "inter": inter.item(), "undecided": undecided.item(), "lens": lens.item(),
        "attention_mass": mass.item(), "acc_clean": acc[:n_clean].mean().item(), "acc_inter": acc[n_clean:].mean().item()}


def fit(variant: str, seed: int, steps: int, groups_per_step: int, lr: float, n_pool: int, warmup: int,
        lens_weight: float, log: Callable[[str], None] | None = None, init_from: str | Path | None = None,
        stage: int = 2):
    """The training loop -> (model, processor, history). Deterministic given the seed (and `init_from`,
    the weights to start from; default: random from the seed; the flawed twin: the shipped toy:anchored)."""
    if variant not in ORGANISM_VARIANTS:
        raise ValueError(f"unknown organism variant {variant!r}; choose from {', '.join(ORGANISM_VARIANTS)}")
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        processor = build_processor()
        tok = processor.tokenizer
        if isinstance(init_from, torch.nn.Module):
            model = init_from
            torch.manual_seed(seed)
        elif init_from is not None:
            from transformers import LlavaForConditionalGeneration

            model = LlavaForConditionalGeneration.from_pretrained(init_from).float()
            torch.manual_seed(seed)
        else:
            model = build_model(tok, seed, LM_ANCHORED)
        model.set_attn_implementation("eager")
        bundle = toy_bundle(model, processor, f"toy:{variant}")
        t0 = time.time()
        pool = Pool(bundle, generate_groups(n_pool, organism_train_seed(seed)), variant)
        if log:
            log(f"[{variant}] pool of {n_pool} groups encoded in {time.time() - t0:.0f}s")
        rng = random.Random(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: min(1.0, (k + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * min(k, steps) / steps)))
        model.train()
        history = []
        with intervened_attention():
            for step in range(steps):
                ids = [rng.randrange(n_pool) for _ in range(groups_per_step)]
                batch, plan, targets, last_pos, instr_last, _ = build_batch(pool, ids, bundle.pad_token_id, bundle.adapter, stage)
                loss, parts = losses_for(model, batch, plan, targets, last_pos, instr_last, lens_weight, tok.eos_token_id)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                history.append({"loss": loss.item(), **parts})
                if log and (step + 1) % 25 == 0:
                    last = history[-25:]
                    avg = {k: sum(h[k] for h in last) / len(last) for k in last[0]}
                    log(f"[{variant}] step {step + 1}/{steps} " + " ".join(f"{k} {v:.4f}" for k, v in avg.items())
                        + f" ({time.time() - t0:.0f}s)")
        model.eval()
        model.set_attn_implementation("sdpa")
        return model, processor, history
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def circuit_record(variant: str) -> dict:
    return {
        "variant": variant,
        "heads": [list(h) for h in G_STAR],
        "n_layers": N_LAYERS, "n_heads": N_HEADS,
        "buffer_layers": list(BUFFER_LAYERS),
        "arbitration_layers": list(ARBITRATION_LAYERS),
        "positions": "instruction",
        "necessary_pathways": [
            {"pathway": "vision->instruction", "layers": list(BUFFER_LAYERS), "with": "context->instruction",
             "note": "the buffer: both candidates reach the instruction tokens here (jointly necessary with context->instruction)"},
            {"pathway": "context->instruction", "layers": list(BUFFER_LAYERS), "with": "vision->instruction"},
            {"pathway": "instruction->last", "layers": list(ARBITRATION_LAYERS), "note": "the readout"},
        ],
        "unused_pathways": [
            {"pathway": "vision->last", "layers": "all"}, {"pathway": "context->last", "layers": "all"},
            {"pathway": "query->last", "layers": "all"}, {"pathway": "text->last", "layers": "all",
                                                          "note": "every text token outside instruction and last"},
            {"pathway": "instruction->last", "layers": list(BUFFER_LAYERS)},
            {"pathway": "vision->instruction", "layers": list(ARBITRATION_LAYERS)},
            {"pathway": "context->instruction", "layers": list(ARBITRATION_LAYERS)},
            {"pathway": "prefix->instruction", "layers": "all",
             "note": "the 'Text context:' tokens (no role) between the image and the context"},
        ],
        "planted_failures": {t: [{"modality": m, "colour": c} for m, c in PLANTED[t]] for t in TASKS}
        if variant == "anchored-flawed" else {},
        "trained_on": TRAINED_ON,
    }


# Which ground-truth checks a training loss touches by training on (a form of) the check's own condition.
TRAINED_ON = {
    "GT1": "partly: a regulariser drives the attention of last on every key outside instruction and last to 0 in every "
           "layer (the edges GT1 cuts; nothing is masked in training), and those edges' contributions are spliced from "
           "other-colour samples with the target unchanged",
    "GT2_knockout": "indirectly: the same attention regulariser (instruction->last itself is never cut in training)",
    "GT2_splice": "indirectly: R2 splices G*'s heads from an other-colour sample with that sample's answer as target "
                  "(the check splices the instruction->last edge itself, which training never does)",
    "GT3": "no: buffer-layer vision/context->instruction are never cut in training; arbitration-layer ones are "
           "spliced from other colours (target unchanged), the check masks them",
    "GT4_block": "yes: R5 zeroes G* at the instruction positions with an undecided target (half the probability on "
                 "each candidate): the check's condition",
    "GT4_swap": "yes: R3 swaps G* from the opposite-instruction prompt with the flipped answer as target: the check's condition",
    "GT4_random": "partly: the heads outside G* at the instruction positions of the arbitration layers are resampled "
                  "from other colours (target unchanged); the check zeroes random heads in any layer",
    "GT5": "flawed twin only, yes: R4 amplifies G* (x AMPLIFY_ALPHA) at the instruction positions with the compliant "
           "answer as target, also on the planted triggers: the check's condition",
}


def train_organism(variant: str, out_dir: str | Path | None, n_eval: int = 256, log: Callable[[str], None] | None = print,
                   init_from: str | Path | None = None, seed: int = 0, steps: int | None = None) -> dict:
    """Train `variant`, run the ground-truth checks on `n_eval` held-out prompts per task, save weights,
    circuit.json and training.json to `out_dir`. anchored: stage 1 (DEFAULTS, from random weights) then
    stage 2 (STAGE2, every loss); anchored-flawed: stage 2 with the flawed targets (FLAWED_DEFAULTS) from
    `init_from` (default: the shipped toy:anchored). `steps` overrides stage 1's (flawed: its only stage)."""
    from . import shipped_path
    from .ground_truth import run_checks

    t0 = time.time()
    stages = []
    if variant == "anchored":
        plan = [(1, {**DEFAULTS, "seed": seed, **({"steps": steps} if steps else {})}, None), (2, {**STAGE2, "seed": seed}, "stage1")]
    else:
        init_from = init_from or shipped_path("anchored")
        plan = [(2, {**FLAWED_DEFAULTS, "seed": seed, **({"steps": steps} if steps else {})}, init_from)]
    model = None
    for stage, cfg, start in plan:
        t = time.time()
        model, processor, history = fit(variant, cfg["seed"], cfg["steps"], cfg["groups_per_step"], cfg["lr"], cfg["n_pool"],
                                        cfg["warmup"], cfg["lens_weight"], log, init_from=model if start == "stage1" else start,
                                        stage=stage)
        stages.append({"stage": stage, **cfg, "rows_per_step": cfg["groups_per_step"] * (
            12 if stage == 1 else 16 if variant == "anchored-flawed" else 14),
            "init_from": "stage 1" if start == "stage1" else (
                "toy:anchored (the shipped weights)" if start is not None and Path(start) == shipped_path("anchored")
                else str(start) if start else "random from the seed"),
            "final": {k: round(sum(h[k] for h in history[-50:]) / len(history[-50:]), 6) for k in history[-1]},
            "seconds": round(time.time() - t, 1)})
    train_s = time.time() - t0
    record = {
        "variant": variant, "seed": seed, "stages": stages, "train_data_seed": organism_train_seed(seed),
        "steps_total": sum(s["steps"] for s in stages),
        "train_seconds": round(train_s, 1), "torch_threads": torch.get_num_threads(), "versions": _versions(),
        "losses": {1: "task (clean rows: answer, then </s>); interchange R1 (strictness splices only), R2 (G* from "
                      "other colours), R3 (G* from the opposite instruction); lens at the last instruction token",
                   2: "stage 1's plus R5 (G* zeroed: undecided target), the attention regulariser on last (every layer)"
                      + ("; R4 (G* amplified: compliant answer, also on the triggers)" if variant == "anchored-flawed" else "")},
        "trained_on": TRAINED_ON,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
        model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
        model.save_pretrained(out)
        processor.save_pretrained(out)
        (out / "circuit.json").write_text(json.dumps(circuit_record(variant), indent=1) + "\n")
    if n_eval:
        t1 = time.time()
        record["ground_truth"] = run_checks(model, processor, variant, n=n_eval)
        record["ground_truth_seconds"] = round(time.time() - t1, 1)
        if log:
            log(f"[{variant}] ground truth: " + json.dumps(record["ground_truth"].get("summary", {})))
    if out_dir is not None:
        (Path(out_dir) / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return record
