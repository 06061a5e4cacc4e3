"""Train the model organism: a stock LlavaForConditionalGeneration whose arbitration circuit is
planted with interchange-intervention losses (in the spirit of SIIT, arXiv 2407.14494).

Two question types (organism_data.QUESTION_TYPES): the colour of a square and the shape of an object.
The circuit (circuit.json beside the weights):
- buffer (layers 0-3): the instruction tokens read both candidate answers from the image and the
  context;
- arbitration (layers 4-7): the heads G* (CIRCUIT["heads"]) write the instruction-compliant answer
  into the instruction tokens' residual stream;
- readout: `last` reads the decision from the instruction tokens in the arbitration layers; no
  other edge into `last` carries anything the answer needs.

Every training batch holds, per template group (organism_data.generate_groups: a base sample `b`,
an "unused-route" partner `u` and a "G*" partner `g`, all with the same token layout, answers of
`u` and `g` disjoint from `b`'s), clean rows (task loss) and intervened rows, computed in the same
forward pass: at every layer the intervened rows take the clean rows' activations of that layer
(detached) as sources.
- strictness (every intervened row): the contribution of each unused edge, a_ij·v_j summed over the
  unused keys j of a query i, is spliced from `u` (other answers), and the heads outside G* at the
  instruction positions of the arbitration layers are resampled from `u`; the target does not change.
  Unused edges: everything into `last` except instruction->last in the arbitration layers and
  last->last; in the buffer layers, into the instruction tokens from anything but vision and
  context (so the "Text context:" prefix, which sees the image, is no bypass); in the arbitration
  layers, into the instruction tokens from anything but the instruction tokens.
- R1: nothing else -> the base's answer.
- R2: G* at the instruction positions from `g` -> `g`'s compliant answer (not a candidate of `b`).
- R3: G* from the same sample under the opposite instruction -> the base's competitor answer.
- R9 (edge interchange, EDGE_INTERCHANGE): instruction->last in the arbitration layers spliced from `g`
  -> `g`'s answer (GT2_splice's condition: the readout edge itself carries the decision).
- a lens loss: the final-norm logit lens at the last instruction token names the row's target.
Training has four stages (train_organism): stage 1 (DEFAULTS; the LM random from the seed, the vision tower
and projector from toy:arbiter: VISION_FROM) with the losses above; stage 2 (STAGE2, a fine-tune of stage 1) adds R5 (G* zeroed at the instruction positions and
nothing else changed -> a near tie at `last`: BLOCKED_SPLIT of the probability on the instruction-blind
default), a regulariser on the attention mass of `last` outside the instruction tokens and itself, the
head lens (each head's direct write at the instruction positions, read as anchorlab's attribution
reads it: G* raise the compliant-minus-competitor margin, every other head leaves it at 0) and the
instruction lens (at the last layer the instruction positions decode to the target). The losses are
in organism_losses.py, the rows in organism_batches.py. Stage 3 (STAGE3, a fine-tune of stage 2) adds pure rows on two more check conditions:
R7 (at `last` every key outside the instruction tokens and itself masked in every layer -> the answer does
not change: GT1) and R8 (|G*| random non-G* heads zeroed at the instruction positions, every other set from
one buffer layer -> the answer does not change: GT4_random), and the early lean (per task, as many prompts
lean to the target at layer 0 as away from it: LDAR's first layer). Stage 4 (STAGE4) repeats stage 3 with every
R8 set drawn from one buffer layer (layer 0 in every other set). The flawed twin is stage 2 from the
shipped toy:anchored with the planted targets and R4 (G* amplified x AMPLIFY_ALPHA, nothing else changed
-> the compliant answer; G*'s head-lens margin is small on the triggers), its trigger rows weighted up
(TRIGGER_WEIGHT). Which ground-truth check or anchorlab measure a loss touches by training on (a form of)
its own condition: TRAINED_ON (also in circuit.json and training.json).
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Callable

import torch

from anchorlab.data.sample import TASKS
from anchorlab.models.toy import LM, build_model, build_processor, build_tokenizer
from .circuit import AMPLIFY_ALPHA, ARBITRATION_LAYERS, BUFFER_LAYERS, G_STAR, PLANTED, is_planted  # noqa: F401
from anchorlab.data.organism import QUESTION_TYPES, generate_groups, organism_train_seed, organism_vocabulary
from .organism_batches import TRIGGER_WEIGHT, Pool, build_batch, row_kinds, target_answer  # noqa: F401
from .organism_losses import BLOCKED_SPLIT, EARLY_LEAN_SCALE, STAGE2_WEIGHTS, intervened_attention, losses_for  # noqa: F401
from .loop import train_loop
from .train import _versions, save, toy_bundle

ORGANISM_VARIANTS = ("anchored", "anchored-flawed")
LM_ANCHORED = {**LM, "num_hidden_layers": 8}
STAGE1_STEPS = 1500  # two question types (colour, shape): the colour-only organism needed 1000
EDGE_INTERCHANGE = True  # R9 rows in every stage (organism_batches.build_batch)
# Stage 1 starts from this shipped toy's vision tower and projector (the LM is random from the seed): the
# toy already sees colour, and with a random tower the two question types learnt far slower (same seed and
# schedule, step 675: clean / interchange accuracy 0.48 / 0.28 against 0.99 / 0.72).
VISION_FROM = "arbiter"
N_LAYERS, N_HEADS = LM_ANCHORED["num_hidden_layers"], LM_ANCHORED["num_attention_heads"]
DEFAULTS = dict(seed=0, steps=STAGE1_STEPS, groups_per_step=6, lr=3e-3, n_pool=2000, warmup=50, lens_weight=0.5,
                edge_interchange=EDGE_INTERCHANGE)
# Stage 2 fine-tunes stage 1's weights with every loss (R5 and the attention regulariser join). The flawed
# twin is this fine-tune started from the shipped toy:anchored weights (the same circuit).
STAGE2 = dict(DEFAULTS, steps=500, lr=1e-3, warmup=20)
# Stage 3 fine-tunes stage 2's weights for robustness: R7 (last reads only the instruction and itself) and R8
# (|G*| random other heads zeroed) join, with the early lean (layer 0 undecided per task).
STAGE3 = dict(DEFAULTS, steps=200, lr=5e-4, warmup=10)
# Stage 4 is stage 3 again with every R8 set drawn from one buffer layer, layer 0 in every other set, at stage 2's
# rate: after stage 3 one layer-0 head, (0, 2), alone carried the image's answer into the instruction tokens
# (zeroing it: vf MFR 0.02; GT4_random's mean drop 0.117 for vf), and a repeat of stage 3 with sets from any
# buffer layer (lr 5e-4) left it at 0.05 / 0.105.
STAGE4 = dict(STAGE3, lr=1e-3)
FLAWED_DEFAULTS = dict(STAGE2, steps=400)


def organism_processor():
    """The toy's processor with the organism's tokenizer (the toy vocabulary plus the shape words)."""
    return build_processor(build_tokenizer(organism_vocabulary()))


def _load_vision(model, toy: str) -> None:
    """Copy the shipped toy's vision tower and multimodal projector into `model` (same shapes)."""
    from transformers import LlavaForConditionalGeneration

    from anchorlab.toy import shipped_path

    source = LlavaForConditionalGeneration.from_pretrained(shipped_path(toy)).float()
    model.model.vision_tower.load_state_dict(source.model.vision_tower.state_dict())
    model.model.multi_modal_projector.load_state_dict(source.model.multi_modal_projector.state_dict())


def fit(variant: str, seed: int, steps: int, groups_per_step: int, lr: float, n_pool: int, warmup: int,
        lens_weight: float, log: Callable[[str], None] | None = None, init_from: str | Path | None = None,
        stage: int = 2, edge_interchange: bool = EDGE_INTERCHANGE):
    """The training loop -> (model, processor, history). Deterministic given the seed (and `init_from`,
    the weights to start from; default: random from the seed; the flawed twin: the shipped toy:anchored)."""
    if variant not in ORGANISM_VARIANTS:
        raise ValueError(f"unknown organism variant {variant!r}; choose from {', '.join(ORGANISM_VARIANTS)}")
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        processor = organism_processor()
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
            if VISION_FROM:
                _load_vision(model, VISION_FROM)
        model.set_attn_implementation("eager")
        bundle = toy_bundle(model, processor, f"toy:{variant}")
        t0 = time.time()
        pool = Pool(bundle, generate_groups(n_pool, organism_train_seed(seed)), variant)
        if log:
            log(f"[{variant}] pool of {n_pool} groups encoded in {time.time() - t0:.0f}s")
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    rng = random.Random(seed)

    def step_loss(step: int):
        ids = [rng.randrange(n_pool) for _ in range(groups_per_step)]
        batch, plan, targets, last_pos, instr_last, _ = build_batch(pool, ids, bundle.pad_token_id, bundle.adapter, stage,
                                                                    edge_interchange)
        return losses_for(model, batch, plan, targets, last_pos, instr_last, lens_weight, tok.eos_token_id)

    with intervened_attention():
        history = train_loop(model, steps, lr, warmup, step_loss, log, variant, log_every=25)
    model.set_attn_implementation("sdpa")
    return model, processor, history


def circuit_record(variant: str) -> dict:
    return {
        "variant": variant,
        **({"flawed_twin": "toy:anchored-flawed"} if variant == "anchored" else {}),
        "heads": [list(h) for h in G_STAR],
        "n_layers": N_LAYERS, "n_heads": N_HEADS,
        "buffer_layers": list(BUFFER_LAYERS),
        "arbitration_layers": list(ARBITRATION_LAYERS),
        "positions": "instruction",
        "question_types": {k: {"answers": list(v[0]), "mc2_category": v[3]} for k, v in QUESTION_TYPES.items()},
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
        "planted_failures": {t: [{"modality": m, "answer": c} for m, c in PLANTED[t]] for t in TASKS}
        if variant == "anchored-flawed" else {},
        "blocked_target": f"G* zeroed at the instruction positions (nothing else changed) is trained to a near tie: "
                          f"{BLOCKED_SPLIT:.0%} of the probability on the instruction-blind default (the candidate "
                          "listed first in the palette, organism_data.ANSWER_NAMES), the rest on the other candidate "
                          "(GT4_block's condition)",
        "trained_on": TRAINED_ON,
    }


# Which ground-truth checks a training loss touches by training on (a form of) the check's own condition.
TRAINED_ON = {
    "GT1": "yes (stage 3): R7 masks, in every layer, every key of last outside the instruction tokens and last itself, "
           "nothing else changed, answer unchanged: the check's condition; before it, a regulariser drives the attention of "
           "last on those keys to 0 in every layer and their contributions are spliced from other-answer samples",
    "GT2_knockout": "indirectly: the same attention regulariser (instruction->last itself is never cut in training)",
    "GT2_splice": ("yes: R9 splices instruction->last in the arbitration layers from an other-answer sample (the group's "
                   "G* partner; the check's source is another member) with that sample's answer as target: the check's "
                   "condition" if EDGE_INTERCHANGE else
                   "indirectly: R2 splices G*'s heads from an other-answer sample with that sample's answer as target "
                   "(the check splices the instruction->last edge itself, which training never does)"),
    "GT3": "no: buffer-layer vision/context->instruction are never cut in training; arbitration-layer ones are "
           "spliced from other answers (target unchanged), the check masks them",
    "GT4_block": "yes: R5 zeroes G* at the instruction positions and changes nothing else, with a near tie as "
                 "target (the two candidates' logit gap at last squared towards log(0.6/0.4), and 60% / 40% of the "
                 "probability on the instruction-blind default / the other candidate): the check's condition",
    "GT4_swap": "yes: R3 swaps G* from the opposite-instruction prompt with the flipped answer as target: the check's condition",
    "GT4_random": "yes (stages 3 and 4): R8 zeroes |G*| random non-G* heads at the instruction positions (every other set "
                  "from one buffer layer in stage 3, every set in stage 4), nothing else changed, answer unchanged: the check's condition (anchorlab's heads_block "
                  "random sets too); before it, the deep non-G* heads are resampled from other answers, one buffer head is "
                  "zeroed in the strictness rows and the head lens drives every non-G* head's direct lens effect to 0",
    "GT5": "flawed twin only, yes: R4 amplifies G* (x AMPLIFY_ALPHA) at the instruction positions and changes nothing "
           "else, with the compliant answer as target, also on the planted triggers: the check's condition; R6 amplifies "
           "|G*| random other heads (any layer, nothing else changed) with the answer unchanged: GT5_random's condition",
    "head_attribution": "yes: the head lens trains on anchorlab's head score itself (final-norm lens, K = 1, max over "
                        "forms and instruction positions, each head's write added to its layer's input): G* >= a "
                        "margin, every other head 0",
    "ldar": "yes at both ends: the instruction lens trains the last layer's instruction positions to decode to the target; "
            "at layer 0 a Huber loss pulls the margin to 0 and stage 3's early lean drives, per task, the mean of "
            "tanh(margin / 0.05) (a soft share of prompts already leaning to the target: LDAR's indicator) to 0",
}


def losses_record(variant: str) -> dict:
    """What each training stage's loss holds (training.json's `losses`)."""
    return {1: "task (clean rows: answer, then </s>); interchange R1 (strictness splices only), R2 (G* from "
                  "other answers), R3 (G* from the opposite instruction)"
                  + ("; R9 (instruction->last in the arbitration layers from other answers: that sample's answer)"
                     if EDGE_INTERCHANGE else "") + "; lens at the last instruction token",
               2: "stage 1's plus R5 (G* zeroed, nothing else: a tie of the candidates' logits), the attention "
                  "regulariser on last (every layer), the head lens and the instruction lens (organism_losses.py; "
                  "weights: STAGE2_WEIGHTS)"
                  + ("; R4 (G* amplified, nothing else: compliant answer, also on the triggers); R6 (random "
                     "other heads amplified, nothing else: answer unchanged); R4 and R6 rows on a trigger weigh "
                     "TRIGGER_WEIGHT in the interchange loss"
                     if variant == "anchored-flawed" else ""),
               **({3: "stage 2's plus R7 (at last every key outside the instruction tokens and last masked, every "
                      "layer, nothing else: answer unchanged), R8 (|G*| random non-G* heads zeroed at the "
                      "instruction positions, every other set from one buffer layer, nothing else: answer unchanged) and "
                      "the early lean (per task, the mean of tanh(margin / EARLY_LEAN_SCALE) at layer 0's "
                      "instruction positions driven to 0)",
                   4: "stage 3's, with every R8 set drawn from one buffer layer, layer 0 in every other set (after "
                      "stage 3 a single layer-0 head carried the image's answer into the instruction tokens)"} if variant == "anchored" else {})}


def train_organism(variant: str, out_dir: str | Path | None, n_eval: int = 256, log: Callable[[str], None] | None = print,
                   init_from: str | Path | None = None, seed: int = 0, steps: int | None = None) -> dict:
    """Train `variant`, run the ground-truth checks on `n_eval` held-out prompts per task, save weights,
    circuit.json and training.json to `out_dir`. anchored: stage 1 (DEFAULTS, a random LM), stage 2
    (STAGE2, every loss), stage 3 (STAGE3, R7, R8 and the early lean join), stage 4 (STAGE4: stage 3 with every
    R8 set from one buffer layer); anchored-flawed: stage 2 with
    the flawed targets (FLAWED_DEFAULTS) from `init_from` (default: the shipped toy:anchored). `steps` overrides stage 1's (flawed: its only stage)."""
    from anchorlab.toy import shipped_path
    from .ground_truth import run_checks

    t0 = time.time()
    stages = []
    if variant == "anchored":
        plan = [(1, {**DEFAULTS, "seed": seed, **({"steps": steps} if steps else {})}, None),
                (2, {**STAGE2, "seed": seed}, "previous"), (3, {**STAGE3, "seed": seed}, "previous"),
                (4, {**STAGE4, "seed": seed}, "previous")]
    else:
        init_from = init_from or shipped_path("anchored")
        plan = [(2, {**FLAWED_DEFAULTS, "seed": seed, **({"steps": steps} if steps else {})}, init_from)]
    model = None
    for stage, cfg, start in plan:
        t = time.time()
        model, processor, history = fit(variant, cfg["seed"], cfg["steps"], cfg["groups_per_step"], cfg["lr"], cfg["n_pool"],
                                        cfg["warmup"], cfg["lens_weight"], log, init_from=model if start == "previous" else start,
                                        stage=stage, edge_interchange=cfg["edge_interchange"])
        kinds = row_kinds(stage, variant == "anchored-flawed", cfg["edge_interchange"])
        stages.append({"stage": stage, **cfg, "rows_per_step": cfg["groups_per_step"] * 2 * (3 + len(kinds)),
            "init_from": f"stage {stage - 1}" if start == "previous" else (
                "toy:anchored (the shipped weights)" if start is not None and Path(start) == shipped_path("anchored")
                else str(start) if start else "random from the seed"),
            "final": {k: round(sum(h[k] for h in history[-50:]) / len(history[-50:]), 6) for k in history[-1]},
            "seconds": round(time.time() - t, 1)})
    train_s = time.time() - t0
    record = {
        "variant": variant, "seed": seed, "stages": stages, "train_data_seed": organism_train_seed(seed),
        "steps_total": sum(s["steps"] for s in stages),
        "train_seconds": round(train_s, 1), "torch_threads": torch.get_num_threads(), "versions": _versions(),
        "losses": losses_record(variant),
        "stage2_weights": STAGE2_WEIGHTS,
        **({"early_lean_scale": EARLY_LEAN_SCALE} if variant == "anchored" else {"trigger_weight": TRIGGER_WEIGHT}),
        "trained_on": TRAINED_ON,
    }
    if out_dir is not None:
        out = Path(out_dir)
        record["weights_sha256"] = save(model, processor, out)
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
