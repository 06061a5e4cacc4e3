"""Instruction sentences one at a time: how often a member follows each sentence (first-token rule, on held-out
prompts), for a fresh draw of a composed pool or for the hand-written probes. A stage's keep rule reads fresh
draws (docs/method.md): sentences the stage never trained on, from seeds no test reads, so it is measured by a
command, not by a session's script."""
from __future__ import annotations

import dataclasses
import random

import torch

from anchorlab.data.organism_family import NOUN_PAIRS, compose, fill, generate_samples, in_pool
from anchorlab.data.sample import COMPETITOR, FOLLOWED, TASKS, ConflictSample
from anchorlab.models.loading import ModelBundle
from anchorlab.rows.batching import collate
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt

from .train import _first_id

BAR = 0.75  # a sentence followed below this in a task is counted (the probes' per-sentence bar)


def fresh_sentences(pool: str, n: int, seed: int) -> list[str]:
    """`n` distinct sentences of `pool`'s grammar that the pool may train (in_pool), from a stream no training pool
    draws (the rng is keyed by this function's name, the pool and `seed`). Pure function of the arguments."""
    rng, out = random.Random(f"anchorlab-fresh-sentences-{pool}-{seed}"), {}
    while len(out) < n:
        template = compose(rng, pool)
        if in_pool(template, pool):
            out.setdefault(template)
    return list(out)


def with_sentence(template: str, samples: list[ConflictSample]) -> list[ConflictSample]:
    """`samples` with their instruction pair replaced by `template`, the noun pairs taken in turn."""
    pairs = [fill(template, v, t) for v, t in NOUN_PAIRS]
    return [dataclasses.replace(s, instruction_vf=pairs[i % len(pairs)][0], instruction_tf=pairs[i % len(pairs)][1])
            for i, s in enumerate(samples)]


@torch.no_grad()
def followed(bundle: ModelBundle, samples: list[ConflictSample]) -> dict[str, float]:
    """Per task, the share of `samples` whose followed answer's first token beats the competitor's at `last`."""
    out = {}
    first = [{r: _first_id(bundle.tokenizer, s.answer(r)) for r in ("vision", "text")} for s in samples]
    for task in TASKS:
        batch = collate([encode(bundle, build_prompt(s, task)) for s in samples], bundle.adapter, bundle.pad_token_id)
        logits = bundle.model(**{k: v.to(bundle.device) for k, v in batch.inputs.items()}).logits[:, -1].float()
        rows = torch.arange(len(samples))
        f = torch.tensor([ids[FOLLOWED[task]] for ids in first])
        c = torch.tensor([ids[COMPETITOR[task]] for ids in first])
        out[task] = float((logits[rows, f] > logits[rows, c]).float().mean())
    return out


def measure(bundle: ModelBundle, templates: list[str], n_prompts: int, seed: int) -> dict:
    """Each template on the same `n_prompts` held-out prompts (data.source organism-heldout, `seed`): per-sentence
    rates, their mean per task, and how many sentences fall below BAR in a task."""
    samples = generate_samples(n_prompts, seed)
    rates = {t: followed(bundle, with_sentence(t, samples)) for t in templates}
    return {"n_sentences": len(rates), "n_prompts": n_prompts, "prompt_seed": seed,
            "mean": {task: sum(r[task] for r in rates.values()) / max(1, len(rates)) for task in TASKS},
            "below_bar": sum(min(r.values()) < BAR for r in rates.values()), "bar": BAR, "rates": rates}
