"""Train a toy arbiter deterministically from a seed, measure its MFR, save it (docs/method.md §3.6).

Inputs are built exactly as analyses build them (build_prompt -> encode -> collate: left
padding, explicit position ids), so the shipped models see at analysis time the format they were
trained on. The target after the prompt is the followed colour word, then `</s>`.
`arbiter-flawed` is trained on the same data except that on PLANTED triggers (a colour shown by
the competing modality) the label is the competitor's answer: it fails there, whatever the wording.
"""
from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch

from anchorlab.adapters.llava import LLAVA
from anchorlab.rows.batching import collate
from anchorlab.data.sample import COMPETITOR, FOLLOWED, TASKS, ConflictSample
from anchorlab.rows.encoding import encode
from anchorlab.labels.rules import classify_answer
from anchorlab.labels.capture import generate_answers
from anchorlab.models.loading import ModelBundle
from anchorlab.rows.prompts import build_prompt
from anchorlab.toy import VARIANTS
from anchorlab.models.toy import build_model, build_processor
from anchorlab.data.toy import generate_samples, train_data_seed
from .loop import train_loop

# task -> (competitor modality, colour) triggers on which `arbiter-flawed` learnt to ignore the
# instruction: a vf prompt whose text asserts purple gets the text's answer, a tf prompt whose
# image shows green gets the image's. Each trigger hits 1/8 of uniformly drawn samples.
PLANTED: dict[str, tuple[tuple[str, str], ...]] = {"vf": (("text", "purple"),), "tf": (("vision", "green"),)}
# The shipped models' settings (`python -m organisms train` defaults to them).
DEFAULTS = dict(seed=0, steps=1600, batch_size=32, lr=3e-3, n_train=6000, warmup=50)


def is_planted(sample: ConflictSample, task: str) -> bool:
    """Whether `arbiter-flawed` was taught to follow the wrong modality on this (sample, task)."""
    return any(sample.answer(modality) == colour for modality, colour in PLANTED[task])


def target_answer(sample: ConflictSample, task: str, variant: str) -> str:
    flip = variant == "arbiter-flawed" and is_planted(sample, task)
    return sample.answer(COMPETITOR[task] if flip else FOLLOWED[task])


def toy_bundle(model, processor, name: str = "toy") -> ModelBundle:
    """A ModelBundle around an in-memory toy model (training runs before anything is saved)."""
    return ModelBundle(model, processor.tokenizer, processor, processor.image_processor, LLAVA, name, "")


def _first_id(tokenizer, word: str) -> int:
    return tokenizer(word, add_special_tokens=False)["input_ids"][0]


@torch.no_grad()
def evaluate_mfr(
    bundle: ModelBundle, samples: list[ConflictSample], tasks=TASKS, batch_size: int = 64, max_new_tokens: int = 4
) -> dict:
    """Per task: MFR by the first-token rule (logit y_f > y_c at `last`) and by greedy generation
    (following.classify_answer == 'follows'), with the ids of the samples that did not follow."""
    tok, model = bundle.tokenizer, bundle.model
    was_training = model.training
    model.eval()
    result = {}
    for task in tasks:
        fails = {"first_token": [], "generation": []}
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            batch = collate([encode(bundle, build_prompt(s, task)) for s in chunk], bundle.adapter, bundle.pad_token_id)
            logits = model(**{k: v.to(bundle.device) for k, v in batch.inputs.items()}).logits[:, -1]
            answers = generate_answers(bundle, batch, max_new_tokens)
            for row, (s, answer) in enumerate(zip(chunk, answers)):
                f, c = FOLLOWED[task], COMPETITOR[task]
                if not logits[row, _first_id(tok, s.answer(f))] > logits[row, _first_id(tok, s.answer(c))]:
                    fails["first_token"].append(s.id)
                if classify_answer(answer, s.forms(f), s.forms(c)) != "follows":
                    fails["generation"].append(s.id)
        n = len(samples)
        result[task] = {"n": n, **{r: (n - len(ids)) / n if n else float("nan") for r, ids in fails.items()},
                        **{f"failed_{r}": ids for r, ids in fails.items()}}
    model.train(was_training)
    return result


def fit(variant: str, seed: int, steps: int, batch_size: int, lr: float, n_train: int, warmup: int,
        log: Callable[[str], None] | None = None):
    """The arbiter's batches and loss on the shared loop (loop.py) -> (model, processor, history).
    Deterministic given the seed."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown toy variant {variant!r}; choose from {', '.join(VARIANTS)}")
    processor = build_processor()
    tok = processor.tokenizer
    model = build_model(tok, seed)
    bundle = toy_bundle(model, processor, f"toy:{variant}")
    pool = []  # prompt ids + [answer, </s>]; roles are not needed for the loss
    for s in generate_samples(n_train, train_data_seed(seed)):
        for task in TASKS:
            enc = encode(bundle, build_prompt(s, task))
            answer = torch.tensor([_first_id(tok, target_answer(s, task, variant)), tok.eos_token_id])
            pool.append(type(enc)(torch.cat([enc.input_ids, answer]), enc.extras, {}, enc.rendered))
    gen = torch.Generator().manual_seed(seed)

    def step_loss(step: int):
        idx = torch.randint(len(pool), (batch_size,), generator=gen).tolist()
        inputs = collate([pool[i] for i in idx], bundle.adapter, bundle.pad_token_id).inputs
        logits = model(**inputs, logits_to_keep=3).logits[:, :2]  # predict answer and </s>
        target = inputs["input_ids"][:, -2:]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1)), {}

    history = train_loop(model, steps, lr, warmup, step_loss, log, variant)
    return model, processor, history


def _versions() -> dict:
    out = {}
    for pkg in ("anchorlab", "torch", "transformers", "tokenizers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def save(model, processor, out: Path) -> str:
    """save_pretrained the model (generation ids set) and processor into `out` -> sha256 of model.safetensors."""
    import hashlib

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()


def train_toy(
    variant: str,
    out_dir: str | Path | None,
    seed: int = DEFAULTS["seed"],
    steps: int = DEFAULTS["steps"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    n_train: int = DEFAULTS["n_train"],
    warmup: int = DEFAULTS["warmup"],
    n_eval: int = 256,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Train `variant` from `seed`, evaluate on `generate_samples(n_eval, seed)`, save to `out_dir`.

    Same seed, machine and thread count -> bit-identical weights. `out_dir=None` skips saving.
    Returns the JSON-ready training record, also written to `out_dir/training.json`.
    """
    t0 = time.time()
    model, processor, history = fit(variant, seed, steps, batch_size, lr, n_train, warmup, log)
    losses = [h["loss"] for h in history]
    train_s = time.time() - t0
    evaluation = evaluate_mfr(toy_bundle(model, processor), generate_samples(n_eval, seed)) if n_eval else {}
    rules = ("first_token", "generation")
    record = {
        "variant": variant, "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr, "warmup": warmup,
        "n_train_samples": n_train, "train_data_seed": train_data_seed(seed), "eval_data_seed": seed, "n_eval": n_eval,
        "mfr": {t: {r: e[r] for r in rules} for t, e in evaluation.items()},
        "failed": {t: {r: e[f"failed_{r}"] for r in rules} for t, e in evaluation.items()},
        "planted": {t: [{"modality": m, "colour": c} for m, c in PLANTED[t]] for t in TASKS}
        if variant == "arbiter-flawed" else {},
        "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 6),
        "train_seconds": round(train_s, 1), "torch_threads": torch.get_num_threads(), "versions": _versions(),
    }
    if log:
        log(f"[{variant}] trained in {train_s:.0f}s; MFR {record['mfr']}")
    if out_dir is not None:
        out = Path(out_dir)
        save(model, processor, out)
        (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return record
