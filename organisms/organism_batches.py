"""The batches that plant toy:anchored's circuit (organism_losses.py computes their losses): per template
group, clean rows and the intervened rows R1-R8 of one forward, and the plan the training-time attention
reads (which rows splice what from where, which heads are zeroed, swapped or scaled, what `last` sees).
"""
from __future__ import annotations

import torch

from anchorlab.adapters.base import Encoded
from anchorlab.data.sample import COMPETITOR, FOLLOWED, TASKS, ConflictSample
from anchorlab.rows.batching import collate
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt
from .circuit import AMPLIFY_ALPHA, ARBITRATION_LAYERS, BUFFER_LAYERS, G_STAR, is_planted
from anchorlab.data.organism import ANSWER_NAMES

# The flawed twin's R4 / R6 rows on a planted trigger weigh TRIGGER_WEIGHT in the interchange loss: the
# triggers are ~12% of the prompts and the only ones where amplifying G* changes the answer.
TRIGGER_WEIGHT = 4.0
# The kinds of intervened rows that are "pure" (no strictness splices: exactly a check's condition).
PURE_KINDS = ("R4", "R5", "R6", "R7", "R8")

def target_answer(sample: ConflictSample, task: str, variant: str) -> str:
    flip = variant == "anchored-flawed" and is_planted(sample, task)
    return sample.answer(COMPETITOR[task] if flip else FOLLOWED[task])


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
def row_kinds(stage: int, flawed: bool, edge_interchange: bool) -> tuple[str, ...]:
    """The intervened rows of one group and task: R1-R3 (stage 2: and R5; stages 3 and 4: and R5, R7, R8; the
    flawed twin: R4, R5, R6), and R9 where `edge_interchange` is on."""
    kinds = (("R1", "R2", "R3") if stage == 1 else ("R1", "R2", "R3", "R4", "R5", "R6") if flawed
             else ("R1", "R2", "R3", "R5") if stage == 2 else ("R1", "R2", "R3", "R5", "R7", "R8"))
    return kinds + (("R9",) if edge_interchange else ())


def build_batch(pool: Pool, group_ids: list[int], pad_id: int, adapter, stage: int = 2, edge_interchange: bool = False):
    """Rows: per group, clean (b, u, g) x (vf, tf), then the intervened rows `row_kinds` x (vf, tf) of b.
    R9 (edge interchange): instruction->last in the arbitration layers spliced from `g` (other answers),
    every other splice from `g` too -> `g`'s answer (GT2_splice's condition; the lens keeps b's target)."""
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
    lens_targets = list(targets)
    flawed = pool.variant == "anchored-flawed"
    for gi in group_ids:
        b = pool.samples[gi][0]
        for kind in row_kinds(stage, flawed, edge_interchange):
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
                    default, other = sorted((b.answer_vision, b.answer_text), key=ANSWER_NAMES.index)
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
                elif kind == "R9":  # instruction->last (arbitration layers) from g -> g's answer
                    splice_src[-1] = clean_index[(gi, 2, t)]
                    g_src.append(clean_index[(gi, 0, t)])
                    g_swap.append(False)
                    targets.append(pool.first[target_answer(pool.samples[gi][2], t, pool.variant)])
                    if flawed and (is_planted(b, t) or is_planted(pool.samples[gi][2], t)):
                        weight[-1] = 0.0
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
                lens_targets.append(pool.first[target_answer(b, t, pool.variant)] if kind == "R9" else targets[-1])
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
        ea[k, last] = (into_last | ins).float() if kinds[r] == "R9" else into_last.float()
        eb[k][ins] = (valid & ~vc & ~ins).float()
        ea[k][ins] = (valid & ~ins).float()
    plan = {"rows": torch.tensor(rows), "splice_src": torch.tensor(splice_src), "g_src": torch.tensor(g_src),
            "g_swap": torch.tensor(g_swap), "weight": torch.tensor(weight), "instruction": instr, "edges_buffer": eb, "edges_arbitration": ea,
            "lens_targets": torch.tensor(lens_targets)}
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
        if flawed or stage >= 3:
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
                    if n_r8 % 2 or stage == 4:  # stage 4: every set from one buffer layer, layer 0 in every other
                        layer = BUFFER_LAYERS[0 if stage == 4 and n_r8 % 2 == 0 else int(torch.randint(len(BUFFER_LAYERS), ()))]
                        pick = [i for i in others if i // pool.n_heads == layer]
                    scale[k, [pick[i] for i in torch.randperm(len(pick))[:len(G_STAR)].tolist()]] = 0.0
                    n_r8 += 1
            plan["head_scale"] = scale.view(len(rows), n_layers, pool.n_heads)
        if stage >= 3:  # R7 rows: at `last`, every key outside the instruction tokens and last itself masked
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
