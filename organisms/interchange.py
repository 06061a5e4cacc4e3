"""The family's ground truth: interchange of heads at a role's positions from the instruction-swapped twin
(the same sample under the other task's instruction), measured with plain forward hooks on the whole model
(vision tower included) on held-out prompts. circuit.json records it.

A prompt *flips* when its followed-minus-competitor margin (first answer tokens' logits at `last`) is positive
without the interchange and negative with it; a rate is over the prompts whose clean margin is positive.
"""
from __future__ import annotations

import torch

from anchorlab.data.sample import COMPETITOR, FOLLOWED, TASKS
from anchorlab.rows.batching import collate
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt
from .siit import other_task, patch_heads
from .train import _first_id

THRESHOLD = 0.05  # circuit.json lists every head whose single-head interchange flips at least this share
FLIP_DEFINITION = ("a prompt flips when its followed-minus-competitor margin (first answer tokens' logits at last) is "
                   "> 0 without the interchange and < 0 with it; rates are over the prompts with a positive clean margin")


@torch.no_grad()
def flip_rates(bundle, samples, components: dict[str, tuple], batch_size: int = 64, role: str = "last") -> dict:
    """components: name -> heads ((layer, head), ...) interchanged together -> {name: {task: rate}}, plus
    "n_followed" {task: prompts with a positive clean margin}."""
    model, tok = bundle.model, bundle.tokenizer
    cfg = model.config.text_config
    n_layers, n_heads = cfg.num_hidden_layers, cfg.num_attention_heads
    flips = {name: dict.fromkeys(TASKS, 0) for name in components}
    n_followed = dict.fromkeys(TASKS, 0)
    for task in TASKS:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            base = collate([encode(bundle, build_prompt(s, task)) for s in chunk], bundle.adapter, bundle.pad_token_id)
            twin = collate([encode(bundle, build_prompt(s, other_task(task))) for s in chunk], bundle.adapter,
                           bundle.pad_token_id)
            for s, a, b in zip(chunk, base.roles, twin.roles):
                if not (torch.equal(a["instruction"], b["instruction"]) and torch.equal(a["last"], b["last"])):
                    raise ValueError(f"sample {s.id}: its vf and tf prompts differ in token layout (instruction "
                                     "positions): no position-aligned twin to interchange from")
            captured = {}
            hooks = [layer.self_attn.o_proj.register_forward_pre_hook(
                lambda m, args, i=i: captured.__setitem__(i, args[0].view(*args[0].shape[:2], n_heads, -1).clone()))
                for i, layer in enumerate(model.model.language_model.layers)]
            try:
                model(**twin.inputs, logits_to_keep=1)
            finally:
                for h in hooks:
                    h.remove()
            f_ids = torch.tensor([_first_id(tok, s.answer(FOLLOWED[task])) for s in chunk])
            c_ids = torch.tensor([_first_id(tok, s.answer(COMPETITOR[task])) for s in chunk])
            rows = torch.arange(len(chunk))

            def margin(select=None):
                if select is None:
                    logits = model(**base.inputs, logits_to_keep=1).logits[:, -1]
                else:
                    with patch_heads(model, select, lambda layer, x: captured[layer]):
                        logits = model(**base.inputs, logits_to_keep=1).logits[:, -1]
                return logits[rows, f_ids] - logits[rows, c_ids]

            clean = margin() > 0
            n_followed[task] += int(clean.sum())
            T = base.inputs["input_ids"].shape[1]
            for name, heads in components.items():
                select = torch.zeros(len(chunk), n_layers, T, n_heads, dtype=torch.bool)
                for r, roles in enumerate(base.roles):
                    for layer, h in heads:
                        select[r, layer, roles[role], h] = True
                flips[name][task] += int((clean & (margin(select) < 0)).sum())
    rates = {name: {t: round(v[t] / max(1, n_followed[t]), 4) for t in TASKS} for name, v in flips.items()}
    return {"rates": rates, "n_followed": n_followed}


def head_name(head) -> str:
    return f"{head[0]}.{head[1]}"


# The roles whose positions can differ between a prompt and its twin (everything before the instruction is the
# same in both under causal attention): circuit.json records every head's single-head interchange at each.
MEASURED_ROLES = ("instruction", "query", "last")


def ground_truth(bundle, samples, spec, batch_size: int = 64) -> dict:
    """circuit.json's measured part: every head's single-head interchange at each of MEASURED_ROLES, and the
    spec's components jointly at its role."""
    cfg = bundle.model.config.text_config
    singles = {head_name((layer, h)): ((layer, h),) for layer in range(cfg.num_hidden_layers)
               for h in range(cfg.num_attention_heads)}
    joint = {}
    if spec.backup_pair:
        joint["backup_pair"] = spec.backup_pair
    if len(spec.circuit_heads) > 1:
        joint["all_circuit_heads"] = spec.circuit_heads
    single, flipping, n_followed = {}, {}, None
    for role in MEASURED_ROLES:
        measured = flip_rates(bundle, samples, {**singles, **(joint if role == spec.positions else {})}, batch_size,
                              role)
        rates = measured["rates"]
        single[role] = {name: rates[name] for name in singles}
        flipping[role] = [list(heads[0]) for name, heads in singles.items()
                          if max(rates[name].values()) >= THRESHOLD]
        if role == spec.positions:
            joint_rates = {name: {"heads": [list(h) for h in joint[name]], "flip_rate": rates[name]} for name in joint}
            n_followed = measured["n_followed"]
    return {"single_head": single, "flipping_heads": flipping, "joint": joint_rates, "n_followed": n_followed}
