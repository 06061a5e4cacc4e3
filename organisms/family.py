"""Train one organism of the family (`toy:organism-*`) from a circuit spec, by SIIT (siit.py) on the shared loop
(loop.py), then measure it on held-out prompts and save weights, circuit.json and training.json.

`python -m organisms train --circuit organisms/specs/organism-a.json --seed 0 --out DIR`

The model: a stock LlavaForConditionalGeneration, LM FAMILY_LM (random from the seed, or a spec's `init`);
vision tower and projector copied from toy:anchored and frozen (perception only: they map an image to its 16
token embeddings; the LM, where every circuit lives, is trained), so each image's features are computed once. A
stage may train on the composed instruction pool with the instruction words tied by class (lexicon.py).
The shipped members, their measured numbers and what did not work: organisms/specs/README.md.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Callable

import torch

from anchorlab.data.organism_family import (POOLS, WORD_CLASSES, family_train_seed, family_vocabulary,
                                            generate_groups, generate_samples)
from anchorlab.models.toy import build_model, build_processor, build_tokenizer
from . import lexicon
from .interchange import FLIP_DEFINITION, MEASURED_ROLES, THRESHOLD, ground_truth, head_name
from .loop import train_loop
from .siit import LOSSES, ROLE_SOURCES, Pool, step_loss
from .spec import CircuitSpec, load_spec
from .train import _versions, evaluate_mfr, save, toy_bundle

FAMILY_LM = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=8)
VISION_FROM = "anchored"
TRAIN = dict(groups_per_step=6, group_size=3, lr=3e-3, warmup=50, n_pool=1500, interchange_from=1000, pool="base",
             lexicon=False, role_source="any_task")
HELDOUT_SEED = 0  # the held-out prompts circuit.json is measured on: data.source organism-heldout, seed 0


def family_processor():
    return build_processor(build_tokenizer(family_vocabulary()))


def init_path(init: str) -> Path:
    """A spec's `init`: a shipped toy's name, or a folder (relative paths from the repository root)."""
    from anchorlab.toy import shipped_path

    if "/" not in init:
        return shipped_path(init)
    path = Path(init)
    return path if path.is_absolute() else Path(__file__).resolve().parents[1] / path


def build(seed: int, init: str | None = None):
    """The untrained organism: LM random from `seed` with VISION_FROM's vision tower and projector, or the
    shipped toy `init`'s weights; the vision tower and projector frozen either way."""
    from transformers import LlavaForConditionalGeneration

    from anchorlab.toy import shipped_path

    processor = family_processor()
    if init is not None:
        model = LlavaForConditionalGeneration.from_pretrained(init_path(init)).float()
        if len(processor.tokenizer) != model.config.text_config.vocab_size:
            raise ValueError(f"init: {init} has {model.config.text_config.vocab_size} tokens, the family's "
                             f"tokenizer {len(processor.tokenizer)}")
        torch.manual_seed(seed)
    else:
        model = build_model(processor.tokenizer, seed, FAMILY_LM)
        source = LlavaForConditionalGeneration.from_pretrained(shipped_path(VISION_FROM)).float()
        for name in ("vision_tower", "multi_modal_projector"):
            getattr(model.model, name).load_state_dict(getattr(source.model, name).state_dict())
    for name in ("vision_tower", "multi_modal_projector"):
        getattr(model.model, name).requires_grad_(False)
    return model, processor


@torch.no_grad()
def image_features(model, processor, groups, batch_size: int = 256) -> list[list[torch.Tensor]]:
    images = [s.image for g in groups for s in g]
    feats = []
    for start in range(0, len(images), batch_size):
        px = processor.image_processor(images[start:start + batch_size], return_tensors="pt")["pixel_values"]
        feats += list(model.model.get_image_features(pixel_values=px).pooler_output)
    size = len(groups[0])
    return [feats[i * size:(i + 1) * size] for i in range(len(groups))]


AUTO_WINDOW, AUTO_ACCURACY = 50, 0.9  # interchange_from "auto": once the last 50 steps' strict_role accuracy >= 0.9


def fit(spec: CircuitSpec, seed: int, steps: int, log: Callable[[str], None] | None = print,
        start_from: str | Path | None = None, stages_done: int = 0, **overrides):
    """SIIT on `spec` (task loss alone for an unplanted spec), then its `stages` -> (model, processor, history).
    `start_from`: a folder holding this spec's weights after its first stage and `stages_done` later stages
    (trained before): only the stages after those run."""
    cfg = {**TRAIN, **spec.train, **overrides}
    model, processor = build(seed, str(start_from) if start_from is not None else spec.init)
    bundle = toy_bundle(model, processor, f"toy:{spec.name}")
    history: list[dict] = []
    if start_from is None:
        history += _stage(model, processor, bundle, spec, seed, steps, cfg, random.Random(seed),
                          family_train_seed(seed), log)
    for k, stage in enumerate(spec.stages, start=1):
        if k <= stages_done:
            continue
        scfg = {**cfg, **stage.get("train", {}), "interchange_from": 0}
        history += _stage(model, processor, bundle, spec, seed, stage["steps"], scfg,
                          random.Random(f"{seed}-stage{k}"), family_train_seed(seed) + k * STAGE_SEED_STRIDE, log)
    return model, processor, history


STAGE_SEED_STRIDE = 1_000_000  # stage k draws a fresh pool from the training seed + k * this (still training data)


def _stage(model, processor, bundle, spec: CircuitSpec, seed: int, steps: int, cfg: dict, rng: random.Random,
           data_seed: int, log) -> list[dict]:
    t0 = time.time()
    groups = generate_groups(cfg["n_pool"], data_seed, cfg["group_size"], "train", cfg["pool"])
    pool = Pool(bundle, groups, image_features(model, processor, groups))
    if log:
        log(f"[{spec.name}] pool of {len(groups)} groups ({cfg['pool']} templates, data seed {data_seed}) encoded "
            f"in {time.time() - t0:.0f}s")
    tied = lexicon.tie(model, processor.tokenizer) if cfg["lexicon"] else None
    seen: list[float] = []
    start = {"step": None if cfg["interchange_from"] == "auto" else cfg["interchange_from"]}

    def loss(step: int):
        if start["step"] is None and len(seen) >= AUTO_WINDOW and sum(seen[-AUTO_WINDOW:]) / AUTO_WINDOW >= AUTO_ACCURACY:
            start["step"] = step
            if log:
                log(f"[{spec.name}] interchange rows from step {step}")
        ids = [rng.randrange(len(groups)) for _ in range(cfg["groups_per_step"])]
        on = spec.planted and start["step"] is not None and step >= start["step"]
        total, parts = step_loss(model, bundle, pool, ids, spec, rng, on, cfg["role_source"])
        seen.append(parts.get("acc_strict_role", 0.0))
        return total, {**parts, "interchange_on": float(on)}

    try:
        return train_loop(model, steps, cfg["lr"], cfg["warmup"], loss, log, spec.name, log_every=50)
    finally:
        if tied is not None:
            tied.remove()


def circuit_record(spec: CircuitSpec, measured: dict, n_eval: int) -> dict:
    """circuit.json: the planted heads, every head the single-head interchange finds at each role, the layers."""
    planted = [list(h) for h in spec.circuit_heads]
    role = spec.positions
    single = measured["single_head"][role]
    components = [{"kind": "chain_head", "heads": [list(h)], "flip_rate": single[head_name(h)]} for h in spec.heads]
    if spec.backup_pair:
        components.append({"kind": "backup_pair", "heads": [list(h) for h in spec.backup_pair],
                           "flip_rate": measured["joint"]["backup_pair"]["flip_rate"],
                           "member_flip_rates": {head_name(h): single[head_name(h)] for h in spec.backup_pair}})
    by_role = {}
    if spec.planted:
        for r, found in measured["flipping_heads"].items():
            listed = (planted if r == role else []) + [h for h in found if not (r == role and h in planted)]
            if listed:
                by_role[r] = listed
    record = {
        "name": spec.name, "planted": spec.planted, "positions": role,
        "heads": by_role.get(role, []), "heads_by_role": by_role, "planted_heads": planted, "components": components,
        "joint_flip_rate": measured["joint"].get("all_circuit_heads", {}).get("flip_rate"),
        "flipping_heads": measured["flipping_heads"], "single_head_flip_rates": measured["single_head"],
        "threshold": THRESHOLD, "flip": FLIP_DEFINITION,
        "measured_on": {"data_source": "organism-heldout", "seed": HELDOUT_SEED, "n_prompts_per_task": n_eval,
                        "n_followed": measured["n_followed"], "roles": list(MEASURED_ROLES)},
        "n_layers": FAMILY_LM["num_hidden_layers"], "n_heads": FAMILY_LM["num_attention_heads"],
    }
    if spec.planted:
        record["arbitration_layers"] = sorted({h[0] for h in by_role.get("last", [])})
        record["note"] = (
            "heads: at `positions`, the planted heads plus every other head whose single-head interchange from the "
            "instruction-swapped twin flips at least `threshold` of the held-out answers in a task; heads_by_role: "
            "the same at every measured role. arbitration_layers: the layers of the heads at `last` (strict "
            "resampling trained every other head at `last` to be ignored, so only these layers' reads from the "
            "instruction can matter); no buffer layers are planted.")
    else:
        record["note"] = ("unplanted control (task loss only): no circuit; flipping_heads lists what the single-head "
                          "interchange measures anyway, and is not a ground truth")
    return record


def evaluate(spec: CircuitSpec, bundle, out_dir: str | Path | None, n_eval: int = 256,
             log: Callable[[str], None] | None = print) -> dict:
    """Held-out MFR and the interchange ground truth (circuit.json, written to `out_dir`) -> training.json's
    evaluation fields."""
    t1 = time.time()
    heldout = generate_samples(n_eval, HELDOUT_SEED)
    evaluation = evaluate_mfr(bundle, heldout)
    mfr = {t: {r: e[r] for r in ("first_token", "generation")} for t, e in evaluation.items()}
    measured = ground_truth(bundle, heldout, spec)
    if log:
        log(f"[{spec.name}] held-out MFR {mfr}; flipping heads {measured['flipping_heads']}")
    if out_dir is not None:
        circuit = circuit_record(spec, measured, n_eval)
        (Path(out_dir) / "circuit.json").write_text(json.dumps(circuit, indent=1) + "\n")
    return {"heldout_mfr": mfr, "eval_seconds": round(time.time() - t1, 1)}


def measure_saved(spec_path: str | Path, model_dir: str | Path, n_eval: int = 256,
                  log: Callable[[str], None] | None = print) -> dict:
    """Re-measure a saved organism (held-out MFR, circuit.json) and update its training.json."""
    from anchorlab.models.loading import load_model

    spec = load_spec(spec_path, FAMILY_LM["num_hidden_layers"], FAMILY_LM["num_attention_heads"])
    bundle = load_model(str(model_dir))
    path = Path(model_dir) / "training.json"
    record = json.loads(path.read_text())
    record.update(evaluate(spec, bundle, model_dir, n_eval, log))
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def train_from_spec(spec_path: str | Path, out_dir: str | Path | None, seed: int | None = None,
                    steps: int | None = None, n_eval: int = 256, log: Callable[[str], None] | None = print,
                    start_from: str | Path | None = None, **overrides) -> dict:
    """Train, save (weights, circuit.json, training.json) and return training.json's record; `overrides`: of
    TRAIN and the spec's `train` (tests). `start_from`: a folder this spec's first stage, and perhaps some
    of its later stages, were saved to (its training.json must name this spec, seed, steps and those stages): only
    the stages after those run."""
    spec = load_spec(spec_path, FAMILY_LM["num_hidden_layers"], FAMILY_LM["num_attention_heads"])
    for where, train in [("train", spec.train), *((f"stages.{k}.train", st.get("train", {}))
                                                  for k, st in enumerate(spec.stages))]:
        if set(train) - set(TRAIN):
            raise ValueError(f"{spec_path}: {where}: unknown key(s) {sorted(set(train) - set(TRAIN))}; known: "
                             f"{sorted(TRAIN)}")
        if train.get("pool", "base") not in POOLS:
            raise ValueError(f"{spec_path}: {where}.pool: {train['pool']!r} is not one of {POOLS}")
        if train.get("role_source", "any_task") not in ROLE_SOURCES:
            raise ValueError(f"{spec_path}: {where}.role_source: {train['role_source']!r} is not one of {ROLE_SOURCES}")
    seed = spec.seed if seed is None else seed
    steps = spec.steps if steps is None else steps
    first, done = None, 0
    if start_from is not None:
        first = json.loads((Path(start_from) / "training.json").read_text())
        ran = list(first["spec"].get("stages", []))  # a saved model ran every stage of the spec it names
        done = len(ran)
        if ((first["name"], first["seed"], first["steps"]) != (spec.name, seed, steps)
                or ran != list(spec.stages[:done]) or done >= len(spec.stages)):
            raise ValueError(f"--from {start_from}: trained {first['name']} seed {first['seed']} for {first['steps']} "
                             f"steps and {done} stage(s) {ran}, not a start of {spec_path} (seed {seed}, {steps} "
                             f"steps, then stages {list(spec.stages)}) with stages left to run")
    t0 = time.time()
    model, processor, history = fit(spec, seed, steps, log, start_from=start_from, stages_done=done, **overrides)
    train_s = time.time() - t0 + (first["train_seconds"] if first else 0.0)
    bundle = toy_bundle(model, processor, f"toy:{spec.name}")
    used = spec.losses
    first_cfg = {**TRAIN, **spec.train, **overrides}
    tied = any({**first_cfg, **st.get("train", {})}["lexicon"] for st in [{}, *spec.stages])
    record = {
        "name": spec.name, "spec": json.loads(Path(spec_path).read_text()), "seed": seed, "steps": steps,
        "train": first_cfg, "train_data_seed": family_train_seed(seed),
        "word_classes": {k: list(v) for k, v in WORD_CLASSES.items()} if tied else None,
        "losses": [{"name": k, **LOSSES[k]} for k in used],
        "init": f"{spec.init}'s weights" if spec.init else f"LM random from the seed; vision tower and projector "
                                                                  f"copied from toy:{VISION_FROM}",
        "frozen": "vision tower and multimodal projector (perception only)",
        "final": {k: round(sum(h[k] for h in history[-50:] if k in h) / len(history[-50:]), 6) for k in history[-1]},
        "interchange_from_step": first.get("interchange_from_step") if first else next(
            (i for i, h in enumerate(history) if h.get("interchange_on")), None),
        "continued_from": ({"from": str(start_from), "weights_sha256": first.get("weights_sha256"),
                            "stages_done": done, "train_seconds": first["train_seconds"],
                            "final": first.get("final")} if first else None),
        "train_seconds": round(train_s, 1), "torch_threads": torch.get_num_threads(), "versions": _versions(),
    }
    if out_dir is not None:
        record["weights_sha256"] = save(model, processor, Path(out_dir))
    if n_eval:
        record.update(evaluate(spec, bundle, out_dir, n_eval, log))
    if out_dir is not None:
        (Path(out_dir) / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return record
