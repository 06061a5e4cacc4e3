"""Ground-truth checks GT1-GT5 of the model organism with plain torch hooks.

Independent of anchorlab's analyses and engines: one eager forward of the HF model with forward
pre-hooks on every layer's `self_attn` (to replace the additive attention mask it receives, or to
recompute its attention weights for an edge splice) and on `o_proj` (whose input holds the heads,
[B, T, H * head_dim]: zero, scale or replace a head's slice, or add a spliced edge's contribution).
Prompts are encoded with anchorlab's encode/collate (token roles only).

MFR here is the first-token rule: logit of the followed answer's first token > the competitor's at
`last`. Prompts: `organism_data.generate_groups(n, seed)` (colour and shape questions, alternating);
member 0 is the prompt, member 1 (other answers, same token layout) the splice source, the same sample's
other task the opposite-instruction source. Every check is also reported per question type
(`by_question_type`).
"""
from __future__ import annotations

import random

import torch
from transformers.models.llama import modeling_llama

from anchorlab.rows.batching import collate
from anchorlab.data.sample import COMPETITOR, FOLLOWED, TASKS
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt
from anchorlab.data.organism import ANSWER_NAMES, QUESTION_TYPES, generate_groups
from .train import toy_bundle

THRESHOLDS = {
    "GT1": "MFR with every edge into last cut except from instruction and last (all layers) >= 0.97 x clean",
    "GT2_knockout": "MFR (mean over tasks) with instruction->last cut in the arbitration layers <= 0.6",
    "GT2_splice": "splicing instruction->last (arbitration layers) from other answers: last answers with one of the source's >= 0.9",
    "GT3_buffer": "MFR (mean) with vision->instruction and context->instruction cut in the buffer layers <= 0.6",
    "GT3_arbitration": "MFR (each task) with them cut in the arbitration layers only >= 0.95",
    "GT4_block": "MFR (each task) with G* zeroed at the instruction positions <= 0.55",
    "GT4_swap": "G* from the opposite-instruction prompt flips >= 0.9 of answers (each task)",
    "GT4_random": "zeroing |G*| random heads outside G* (10 seeds) drops MFR by <= 0.05 on average (each task)",
    "GT5_targeted": "amplifying G* repairs >= 0.5 of the planted failures",
    "GT5_random": "amplifying random heads repairs <= 0.1",
}


class Hooks:
    """Per-layer interventions for one forward. Set the fields, then `with hooks: model(...)`.

    knock[l]: bool [B, T, T] (query, key) edges removed at layer l (mask set to the dtype's min).
    heads[l]: list of (positions bool [B, T], head, ("zero"|"scale"|"replace"), value) applied to
              o_proj's input. value: alpha for scale, a [B, T, H*hd] tensor for replace.
    contrib_query[l]: (dst long [B], src bool [B, T]) -> records C[l] = sum_j a[dst, j] v_j over src keys
              ([B, H, hd]) from this forward's own attention; splice[l]: a [B, H, hd] source
              contribution added at dst after subtracting this forward's own C[l].
    record_heads: store o_proj's input of every layer in `o_inputs`.
    """

    def __init__(self, model):
        self.layers = model.model.language_model.layers
        self.knock, self.heads, self.contrib_query, self.splice = {}, {}, {}, {}
        self.record_heads = False
        self.o_inputs, self.contrib = {}, {}
        self._handles = []

    def __enter__(self):
        for l, layer in enumerate(self.layers):
            self._handles.append(layer.self_attn.register_forward_pre_hook(self._attn_hook(l), with_kwargs=True))
            self._handles.append(layer.self_attn.o_proj.register_forward_pre_hook(self._o_hook(l)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []

    def _attn_hook(self, l):
        def hook(module, args, kwargs):
            mask = kwargs.get("attention_mask")
            if l in self.knock:
                mask = mask.masked_fill(self.knock[l][:, None], torch.finfo(mask.dtype).min)
                kwargs["attention_mask"] = mask
            if l in self.contrib_query:
                x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
                B, T, _ = x.shape
                hd = module.head_dim
                q = module.q_proj(x).view(B, T, -1, hd).transpose(1, 2)
                k = module.k_proj(x).view(B, T, -1, hd).transpose(1, 2)
                v = module.v_proj(x).view(B, T, -1, hd).transpose(1, 2)
                cos, sin = kwargs["position_embeddings"]
                q, k = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)
                k = modeling_llama.repeat_kv(k, module.num_key_value_groups)
                v = modeling_llama.repeat_kv(v, module.num_key_value_groups)
                dst, src = self.contrib_query[l]
                rows = torch.arange(B)
                qd = q[rows, :, dst]  # [B, H, hd]
                scores = torch.einsum("bhd,bhtd->bht", qd, k) * module.scaling + mask[rows, 0, dst][:, None, :]
                a = torch.softmax(scores.float(), dim=-1).to(v.dtype)  # [B, H, T]
                self.contrib[l] = torch.einsum("bht,bhtd->bhd", a * src[:, None, :], v)
            return args, kwargs
        return hook

    def _o_hook(self, l):
        def hook(module, args):
            x = args[0]
            if self.record_heads:
                self.o_inputs[l] = x.detach().clone()
            if l not in self.heads and l not in self.splice:
                return None
            x = x.clone()
            n_heads = self.layers[l].self_attn.config.num_attention_heads
            hd = x.shape[-1] // n_heads
            for positions, head, mode, value in self.heads.get(l, []):
                sl = slice(head * hd, (head + 1) * hd)
                sel = positions[:, :, None]
                if mode == "zero":
                    x[:, :, sl] = torch.where(sel, torch.zeros_like(x[:, :, sl]), x[:, :, sl])
                elif mode == "scale":
                    x[:, :, sl] = torch.where(sel, x[:, :, sl] * value, x[:, :, sl])
                else:
                    x[:, :, sl] = torch.where(sel, value[:, :, sl], x[:, :, sl])
            if l in self.splice:
                dst, _ = self.contrib_query[l]
                rows = torch.arange(x.shape[0])
                x[rows, dst] = x[rows, dst] + (self.splice[l] - self.contrib[l]).reshape(x.shape[0], -1)
            return (x,)
        return hook


def _masks(batch, T):
    """Per row: bool [T] of instruction, vision, context, last and valid (non-pad) positions."""
    out = {k: torch.zeros(len(batch), T, dtype=torch.bool) for k in ("instruction", "vision", "context", "last", "valid")}
    for r, roles in enumerate(batch.roles):
        for k in ("instruction", "vision", "context", "last"):
            out[k][r, roles[k]] = True
        out["valid"][r, int(batch.pad[r]):] = True
    return out


class Checker:
    def __init__(self, model, processor, n: int = 256, seed: int = 0, batch_size: int = 128):
        self.model = model.eval()
        self.prev_impl = model.config._attn_implementation
        model.set_attn_implementation("eager")
        self.bundle = toy_bundle(model, processor, "organism")
        tok = processor.tokenizer
        self.groups = generate_groups(n, seed)
        self.answer_ids = torch.tensor([tok(c, add_special_tokens=False)["input_ids"][0] for c in ANSWER_NAMES])
        self.cid = {c: i for i, c in enumerate(ANSWER_NAMES)}
        self.types = [g[0].extra["type"] for g in self.groups]
        self.batch_size = batch_size
        self.n = n
        text_cfg = model.config.text_config
        self.n_layers, self.n_heads = text_cfg.num_hidden_layers, text_cfg.num_attention_heads
        # chunks: rows [b vf, b tf, p vf, p tf] collated together so every row shares one width
        self.chunks = []
        for start in range(0, n, batch_size):
            gs = self.groups[start:start + batch_size]
            encoded = [encode(self.bundle, build_prompt(g[m], t)) for m in (0, 1) for t in TASKS for g in gs]
            batch = collate(encoded, self.bundle.adapter, self.bundle.pad_token_id)
            self.chunks.append((gs, batch))

    def close(self):
        self.model.set_attn_implementation(self.prev_impl)

    @torch.no_grad()
    def _forward(self, inputs, hooks: Hooks):
        with hooks:
            logits = self.model(**inputs, logits_to_keep=1).logits[:, -1]
        return logits[:, self.answer_ids].float()  # [B, len(ANSWER_NAMES)] answer logits at last

    @staticmethod
    def _rows(inputs, sl):
        return {k: v[sl] for k, v in inputs.items()}

    def run(self, setup=None):
        """Per task: list over prompts of answer logits [len(ANSWER_NAMES)] with interventions from `setup(hooks, masks,
        clean_record, chunk_len)` applied to the base rows (b vf, b tf) of each chunk."""
        out = {t: [] for t in TASKS}
        for gs, batch in self.chunks:
            k = len(gs)
            T = batch.inputs["input_ids"].shape[1]
            masks = _masks(batch, T)
            base = slice(0, 2 * k)
            hooks = Hooks(self.model)
            if setup is not None:
                setup(hooks, {n: m[base] for n, m in masks.items()}, self._sources(batch, masks, k), k)
            logits = self._forward(self._rows(batch.inputs, base), hooks)
            out["vf"].append(logits[:k])
            out["tf"].append(logits[k:2 * k])
        return {t: torch.cat(v) for t, v in out.items()}

    def _sources(self, batch, masks, k):
        """Lazily computed clean activations of the chunk: o_proj inputs of every row, and the
        partner rows' instruction->last contributions in every layer."""
        cache = {}

        def get(what):
            if what not in cache:
                hooks = Hooks(self.model)
                if what == "o_inputs":
                    hooks.record_heads = True
                    self._forward(batch.inputs, hooks)
                    cache[what] = hooks.o_inputs
                else:  # contributions at last from instruction keys, partner rows (p vf, p tf)
                    part = slice(2 * k, 4 * k)
                    dst = torch.tensor([int(r["last"][0]) for r in batch.roles[part]])
                    for l in range(self.n_layers):
                        hooks.contrib_query[l] = (dst, masks["instruction"][part])
                    self._forward(self._rows(batch.inputs, part), hooks)
                    cache[what] = hooks.contrib
            return cache[what]
        return get

    # --- scores ---------------------------------------------------------------------------------

    def answers(self, logits):
        """Per task: (followed > competitor) bool, argmax answer index, and the prompts' answer indices."""
        res = {}
        for t in TASKS:
            f = torch.tensor([self.cid[g[0].answer(FOLLOWED[t])] for g in self.groups])
            c = torch.tensor([self.cid[g[0].answer(COMPETITOR[t])] for g in self.groups])
            lg = logits[t]
            rows = torch.arange(len(f))
            res[t] = {"follows": lg[rows, f] > lg[rows, c], "argmax": lg.argmax(-1), "f": f, "c": c}
        return res

    def mfr(self, logits):
        return {t: round(a["follows"].float().mean().item(), 4) for t, a in self.answers(logits).items()}

    def by_type(self, per_task: dict) -> dict:
        """{task: bool [n] (or per-prompt values)} -> {question type: {task: mean over that type's prompts}}."""
        out = {}
        for kind in QUESTION_TYPES:
            rows = torch.tensor([t == kind for t in self.types])
            out[kind] = {t: round(v[rows].float().mean().item(), 4) for t, v in per_task.items()} if rows.any() else {}
        return out

    def mfr_by_type(self, logits) -> dict:
        return self.by_type({t: a["follows"] for t, a in self.answers(logits).items()})


def _knock(edge_fn, layers):
    def setup(hooks, masks, sources, k):
        e = edge_fn(masks)
        for l in layers:
            hooks.knock[l] = e
    return setup


def _edges(dst, src):
    return dst[:, :, None] & src[:, None, :]


def run_checks(model, processor, variant: str, n: int = 256, seed: int = 0, n_random: int = 10, alpha: float = 4.0,
               circuit: dict | None = None, gt5_only: bool = False) -> dict:
    from .circuit import ARBITRATION_LAYERS, BUFFER_LAYERS, G_STAR, is_planted

    ck = Checker(model, processor, n=n, seed=seed)
    try:
        gstar = [tuple(h) for h in (circuit["heads"] if circuit else G_STAR)]
        buf = circuit["buffer_layers"] if circuit else BUFFER_LAYERS
        arb = circuit["arbitration_layers"] if circuit else ARBITRATION_LAYERS
        L, H = ck.n_layers, ck.n_heads
        res: dict = {"n_prompts_per_task": n, "eval_seed": seed}
        clean = ck.run()
        clean_ans = ck.answers(clean)
        res["clean_mfr"] = ck.mfr(clean)
        by_type = res["by_question_type"] = {"clean_mfr": ck.mfr_by_type(clean)}

        def measured(name, logits):  # MFR per task, and per question type under by_question_type[name]
            by_type[name] = ck.mfr_by_type(logits)
            return ck.mfr(logits)

        def heads_setup(heads, mode, value_fn=None):
            def setup(hooks, masks, sources, k):
                for (l, h) in heads:
                    value = value_fn(sources, k, l) if value_fn else (alpha if mode == "scale" else None)
                    hooks.heads.setdefault(l, []).append((masks["instruction"], h, mode, value))
            return setup

        others = [(l, h) for l in range(L) for h in range(H) if (l, h) not in gstar]
        if not gt5_only:
            # GT1: into last only from instruction and last
            gt1 = measured("GT1", ck.run(_knock(lambda m: _edges(m["last"], m["valid"] & ~m["instruction"] & ~m["last"]), range(L))))
            res["GT1"] = {"mfr": gt1, "ratio": {t: round(gt1[t] / max(res["clean_mfr"][t], 1e-9), 4) for t in TASKS}}
            res["GT1"]["holds"] = all(res["GT1"]["ratio"][t] >= 0.97 for t in TASKS)

            # GT2: instruction->last in the arbitration layers
            gt2 = measured("GT2_knockout", ck.run(_knock(lambda m: _edges(m["last"], m["instruction"]), arb)))

            def splice_setup(hooks, masks, sources, k):
                contrib = sources("contrib")
                dst = masks["last"].float().argmax(-1)
                for l in arb:
                    hooks.contrib_query[l] = (dst, masks["instruction"])
                    hooks.splice[l] = contrib[l]
            spliced = ck.answers(ck.run(splice_setup))
            src_share, src_followed, src_hit = {}, {}, {}
            for t in TASKS:
                pf = torch.tensor([ck.cid[g[1].answer(FOLLOWED[t])] for g in ck.groups])
                pc = torch.tensor([ck.cid[g[1].answer(COMPETITOR[t])] for g in ck.groups])
                am = spliced[t]["argmax"]
                src_hit[t] = (am == pf) | (am == pc)
                src_share[t] = round(src_hit[t].float().mean().item(), 4)
                src_followed[t] = round((am == pf).float().mean().item(), 4)
            by_type["GT2_splice_source_answers"] = ck.by_type(src_hit)
            mean2 = sum(gt2.values()) / 2
            res["GT2"] = {"knockout_mfr": gt2, "knockout_mfr_mean": round(mean2, 4),
                          "splice_source_answers": src_share, "splice_source_followed": src_followed,
                          "holds_knockout": mean2 <= 0.6, "holds_splice": all(v >= 0.9 for v in src_share.values())}
            res["GT2"]["holds"] = res["GT2"]["holds_knockout"] and res["GT2"]["holds_splice"]

            # GT3: into instruction from vision and context
            vc = lambda m: _edges(m["instruction"], m["vision"] | m["context"])  # noqa: E731
            g3b = measured("GT3_buffer", ck.run(_knock(vc, buf)))
            g3a = measured("GT3_arbitration", ck.run(_knock(vc, arb)))
            res["GT3"] = {"buffer_mfr": g3b, "buffer_mfr_mean": round(sum(g3b.values()) / 2, 4), "arbitration_mfr": g3a,
                          "holds_buffer": sum(g3b.values()) / 2 <= 0.6, "holds_arbitration": all(v >= 0.95 for v in g3a.values())}
            res["GT3"]["holds"] = res["GT3"]["holds_buffer"] and res["GT3"]["holds_arbitration"]

            # GT4: G* blocked, swapped from the opposite instruction; random heads blocked
            blocked = measured("GT4_block", ck.run(heads_setup(gstar, "zero")))

            def opposite(sources, k, l):
                o = sources("o_inputs")[l]
                return torch.cat([o[k:2 * k], o[:k]])  # vf rows take the tf rows' heads and vice versa
            swapped = ck.answers(ck.run(heads_setup(gstar, "replace", opposite)))
            flips = {t: round((~swapped[t]["follows"]).float().mean().item(), 4) for t in TASKS}
            by_type["GT4_swap_flips"] = ck.by_type({t: ~swapped[t]["follows"] for t in TASKS})
            # flipped = now names the competitor (the opposite instruction's answer)
            flips_to_c = {t: round((swapped[t]["argmax"] == swapped[t]["c"]).float().mean().item(), 4) for t in TASKS}
            rnd = random.Random(seed)
            drops = {t: [] for t in TASKS}
            draws = []
            for _ in range(n_random):
                heads = rnd.sample(others, len(gstar))
                draws.append([list(h) for h in heads])
                m = ck.mfr(ck.run(heads_setup(heads, "zero")))
                for t in TASKS:
                    drops[t].append(res["clean_mfr"][t] - m[t])
            mean_drop = {t: round(sum(v) / len(v), 4) for t, v in drops.items()}
            res["GT4"] = {"block_mfr": blocked, "block_mfr_mean": round(sum(blocked.values()) / 2, 4),
                          "swap_flip_rate": flips, "swap_names_competitor": flips_to_c,
                          "random_block_mean_drop": mean_drop, "random_block_max_drop": {t: round(max(v), 4) for t, v in drops.items()},
                          "random_heads": draws,
                          "holds_block": all(v <= 0.55 for v in blocked.values()),
                          "holds_swap": all(v >= 0.9 for v in flips.values()),
                          "holds_random": all(v <= 0.05 for v in mean_drop.values())}
            res["GT4"]["holds"] = res["GT4"]["holds_block"] and res["GT4"]["holds_swap"] and res["GT4"]["holds_random"]

        if variant.endswith("flawed"):
            planted = {t: torch.tensor([is_planted(g[0], t) for g in ck.groups]) for t in TASKS}
            fails = {t: ~clean_ans[t]["follows"] for t in TASKS}
            amp = ck.answers(ck.run(heads_setup(gstar, "scale")))
            rep = {}
            for t in TASKS:
                f = fails[t]
                rep[t] = round((amp[t]["follows"] & f).float().sum().item() / max(1, int(f.sum())), 4)
            rep_rand = {t: [] for t in TASKS}
            rnd = random.Random(seed + 1)
            for _ in range(n_random):
                heads = rnd.sample(others, len(gstar))
                a = ck.answers(ck.run(heads_setup(heads, "scale")))
                for t in TASKS:
                    f = fails[t]
                    rep_rand[t].append((a[t]["follows"] & f).float().sum().item() / max(1, int(f.sum())))
            rr = {t: round(sum(v) / len(v), 4) for t, v in rep_rand.items()}
            res["GT5"] = {"alpha": alpha, "n_failures": {t: int(fails[t].sum()) for t in TASKS},
                          "failures_planted": {t: int((fails[t] & planted[t]).sum()) for t in TASKS},
                          "n_planted": {t: int(planted[t].sum()) for t in TASKS},
                          "repair_targeted": rep, "repair_random_mean": rr,
                          "holds": all(rep[t] >= 0.5 and rr[t] <= 0.1 for t in TASKS)}
        keys = [k for k in ("GT1", "GT2", "GT3", "GT4", "GT5") if k in res]
        res["summary"] = {k: res[k]["holds"] for k in keys}
        res["thresholds"] = THRESHOLDS
        return res
    finally:
        ck.close()
