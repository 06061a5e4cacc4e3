"""The model organism (toy:anchored, toy:anchored-flawed): shipped weights and ground truth, the
ground-truth checks GT1-GT5 with plain torch hooks (toy/ground_truth.py, no analysis or engine code)
on 256 held-out prompts per task, the hook machinery against direct computations, and deterministic
interchange training."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from anchorlab.data.organism import (
    ANSWER_NAMES,
    QUESTION_TYPES,
    SHAPES,
    WORDING_PAIRS,
    generate_groups,
    organism_vocabulary,
)
from anchorlab.data.sample import TASKS
from anchorlab.models.loading import load_model
from anchorlab.models.toy import IMAGE_SIZE, PATCH_SIZE, build_tokenizer
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt
from anchorlab.toy import ORGANISMS, shipped_path
from organisms.anchored import ARBITRATION_LAYERS, BUFFER_LAYERS, EDGE_INTERCHANGE, G_STAR, fit, organism_processor
from organisms.ground_truth import Checker, _edges, _knock, run_checks
from organisms.organism_batches import Pool, build_batch, row_kinds
from organisms.organism_losses import _STATE, intervened_attention
from organisms.train import toy_bundle

N_TEST = 256  # prompts per task in the test's re-measurement: all that training.json records


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _shipped(variant):
    path = shipped_path(variant)
    if not (path / "model.safetensors").exists():
        pytest.skip(f"{variant} weights not shipped")
    return path


@pytest.fixture(scope="module")
def anchored():
    _shipped("anchored")
    b = load_model("toy:anchored")
    return b


def test_circuit_and_training_records():
    for v in ORGANISMS:
        path = _shipped(v)
        circuit = json.loads((path / "circuit.json").read_text())
        assert circuit["heads"] == [list(h) for h in G_STAR]
        assert circuit["buffer_layers"] == list(BUFFER_LAYERS) and circuit["arbitration_layers"] == list(
            ARBITRATION_LAYERS
        )
        assert {p["pathway"] for p in circuit["necessary_pathways"]} >= {"instruction->last", "vision->instruction"}
        assert set(circuit["trained_on"]) >= {"GT1", "GT2_knockout", "GT3", "GT4_block", "GT4_swap"}
        record = json.loads((path / "training.json").read_text())
        assert record["variant"] == v and record["torch_threads"] == 1
        assert record["ground_truth"]["n_prompts_per_task"] >= 256
        assert (path / "model.safetensors").stat().st_size < 4_000_000
        # the weights are the ones the record's training run saved (its bit-identical retrain: README)
        assert hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest() == record["weights_sha256"]


def test_shipped_is_a_stock_llava_with_the_mc2_layout(anchored):
    assert type(anchored.model).__name__ == "LlavaForConditionalGeneration"
    assert anchored.n_layers >= 8 and anchored.n_heads >= 8
    s = generate_groups(1, 3)[0][0]
    enc = encode(anchored, build_prompt(s, "vf"))
    r = enc.roles
    assert r["vision"].max() < r["context"].min() < r["instruction"].min() and r["instruction"].max() < r["query"].min()


def test_wording_pairs_match_in_length_and_groups_align():
    tok = organism_processor().tokenizer
    for vf, tf in WORDING_PAIRS:
        assert len(tok(vf)["input_ids"]) == len(tok(tf)["input_ids"]) and vf != tf
        assert tok.unk_token_id not in tok(vf)["input_ids"]
    groups = generate_groups(20, 5)
    for g in groups:
        lens = {len(tok(build_prompt(s, t).content)["input_ids"]) for s in g for t in TASKS}
        assert len(lens) == 1
        assert all(tok.unk_token_id not in tok(build_prompt(s, t).content)["input_ids"] for s in g for t in TASKS)
        assert not {g[0].answer_vision, g[0].answer_text} & {c for s in g[1:] for c in (s.answer_vision, s.answer_text)}
        answers = QUESTION_TYPES[g[0].extra["type"]][0]
        assert {c for s in g for c in (s.answer_vision, s.answer_text)} <= set(answers)
    assert [g[0].extra["type"] for g in groups[:4]] == ["colour", "shape", "colour", "shape"]


def test_organism_vocabulary_keeps_the_toy_ids():
    """The organism's tokenizer appends its words: every toy word keeps its id (toy:arbiter's weights)."""
    toy, org = build_tokenizer(), organism_processor().tokenizer
    assert len(org) > len(toy) and all(org.convert_tokens_to_ids(w) == i for w, i in toy.get_vocab().items())
    assert all(len(org(a, add_special_tokens=False)["input_ids"]) == 1 for a in ANSWER_NAMES)
    assert set(organism_vocabulary()) - set(toy.get_vocab()) >= {"shape", *SHAPES}


def test_shape_images_hold_one_shape_in_one_patch():
    """Each shape prompt's image: light grey everywhere except one 8-px patch whose dark pixels are exactly
    the named shape's mask; the instruction-blind default is the image's answer in half of the prompts."""
    n = 0
    for g in generate_groups(40, 7):
        for s in g:
            if s.extra["type"] != "shape":
                continue
            px = torch.from_numpy(np.asarray(s.image.convert("L"), dtype=np.int64))
            dark = px <= 40
            cells = dark.view(IMAGE_SIZE // PATCH_SIZE, PATCH_SIZE, IMAGE_SIZE // PATCH_SIZE, PATCH_SIZE).any(3).any(1)
            assert int(cells.sum()) == 1 and int((px[~dark] >= 110).all())
            cy, cx = [int(v) * PATCH_SIZE for v in cells.nonzero()[0]]
            want = torch.tensor([[c == "#" for c in row] for row in SHAPES[s.answer_vision][0]])
            assert torch.equal(dark[cy:cy + PATCH_SIZE, cx:cx + PATCH_SIZE], want)
            n += 1
    assert n == 60
    first = [
        ANSWER_NAMES.index(g[0].answer_vision) < ANSWER_NAMES.index(g[0].answer_text) for g in generate_groups(256, 0)
    ]
    assert sum(first) == 128


def test_hooks_against_direct_computation(anchored):
    """Knocking nothing or splicing a row's own contribution changes nothing; knocking every key of
    `last` but itself equals a forward where `last` attends to itself only (set by hand in the mask);
    zeroing a head equals zeroing its o_proj columns."""
    model, proc = anchored.model, anchored.processor
    ck = Checker(model, proc, n=8)
    try:
        clean = ck.run()
        same = ck.run(_knock(lambda m: _edges(m["last"], torch.zeros_like(m["valid"])), range(8)))
        assert all(torch.equal(clean[t], same[t]) for t in TASKS)

        def selfsplice(h, masks, sources, k):
            dst = masks["last"].float().argmax(-1)
            for l in ARBITRATION_LAYERS:
                h.contrib_query[l] = (dst, masks["instruction"])

            class Own(dict):
                def __contains__(self, l):
                    return l in ARBITRATION_LAYERS

                def __getitem__(self, l):
                    return h.contrib[l]
            h.splice = Own()
        spliced = ck.run(selfsplice)
        assert all(torch.allclose(clean[t], spliced[t], atol=1e-5) for t in TASKS)

        l, head = G_STAR[0]
        zeroed = ck.run(lambda h, m, s, k: h.heads.setdefault(l, []).append((m["valid"], head, "zero", None)))
        o = model.model.language_model.layers[l].self_attn.o_proj
        hd = o.in_features // ck.n_heads
        w = o.weight.data.clone()
        o.weight.data[:, head * hd:(head + 1) * hd] = 0
        try:
            direct = ck.run()
        finally:
            o.weight.data.copy_(w)
        assert all(torch.allclose(zeroed[t], direct[t], atol=1e-5) for t in TASKS)
    finally:
        ck.close()


@pytest.mark.slow
def test_ground_truth_checks_hold_on_the_shipped_organism(anchored):
    """GT1-GT4 re-measured with plain hooks on the N_TEST held-out prompts per task that training.json records
    meet every bound, per task and per question type, and agree with the record."""
    res = run_checks(anchored.model, anchored.processor, "anchored", n=N_TEST)
    anchored.model.set_attn_implementation("sdpa")
    assert res["n_prompts_per_task"] == N_TEST
    recorded = json.loads((shipped_path("anchored") / "training.json").read_text())["ground_truth"]
    assert recorded["n_prompts_per_task"] == N_TEST
    for t in TASKS:
        assert res["clean_mfr"][t] >= 0.97, res["clean_mfr"]
    assert res["summary"] == recorded["summary"] == {"GT1": True, "GT2": True, "GT3": True, "GT4": True}, res["summary"]
    for check in ("GT1", "GT2", "GT3", "GT4"):
        assert res[check]["holds"], (check, res[check])
    for t in TASKS:
        assert abs(res["GT4"]["random_block_mean_drop"][t] - recorded["GT4"]["random_block_mean_drop"][t]) <= 1e-3
    # G* zeroed -> a near tie leaning to the instruction-blind default: each task's blocked MFR is about the share
    # of prompts whose followed answer is that default, which the data puts at exactly one half
    assert abs(res["GT4"]["block_mfr"]["vf"] + res["GT4"]["block_mfr"]["tf"] - 1) <= 0.05, res["GT4"]
    # both question types carry the circuit, not one type averaging over the other (128 prompts per type and task)
    by_type = res["by_question_type"]
    assert set(by_type["clean_mfr"]) == set(QUESTION_TYPES)
    for kind in QUESTION_TYPES:
        assert min(by_type["clean_mfr"][kind].values()) >= 0.97, by_type["clean_mfr"]
        assert min(by_type["GT1"][kind].values()) >= 0.97, by_type["GT1"]
        assert min(by_type["GT2_splice_source_answers"][kind].values()) >= 0.9, by_type["GT2_splice_source_answers"]
        assert min(by_type["GT3_arbitration"][kind].values()) >= 0.95, by_type["GT3_arbitration"]
        assert min(by_type["GT4_swap_flips"][kind].values()) >= 0.9, by_type["GT4_swap_flips"]
        for check in ("GT2_knockout", "GT3_buffer"):  # the bound is on the mean over tasks
            assert sum(by_type[check][kind].values()) / 2 <= 0.6, (check, by_type[check])
        assert max(by_type["GT4_block"][kind].values()) <= 0.55, by_type["GT4_block"]


@pytest.mark.slow
def test_flawed_twin_fails_where_planted_and_amplifying_gstar_repairs():
    path = _shipped("anchored-flawed")
    res = json.loads((path / "training.json").read_text())["ground_truth"]
    assert "GT5" in res
    b = load_model("toy:anchored-flawed")
    again = run_checks(b.model, b.processor, "anchored-flawed", n=256, gt5_only=True)
    b.model.set_attn_implementation("sdpa")
    assert again["GT5"] == res["GT5"]
    assert again["GT5"]["holds"], again["GT5"]
    # it fails on planted prompts only (colour and shape triggers), and on most of them
    g5 = again["GT5"]
    assert g5["failures_planted"] == g5["n_failures"] and all(
        g5["n_failures"][t] >= 0.8 * g5["n_planted"][t] for t in TASKS
    ), g5


def test_stage3_rows_match_the_checks_hooks(anchored):
    """Stage 3's pure rows as training computes them (organism_losses' attention) give the colour logits the
    ground-truth hooks give for the same prompts: R7 = GT1's cut (last reads only instruction and itself, every
    layer), R8 = its random heads zeroed at the instruction positions (GT4_random's condition)."""
    model, proc = anchored.model, anchored.processor
    ck = Checker(model, proc, n=4)
    try:
        L = ck.n_layers
        gt1 = ck.run(_knock(lambda m: _edges(m["last"], m["valid"] & ~m["instruction"] & ~m["last"]), range(L)))
        bundle = toy_bundle(model, proc, "toy:anchored")
        torch.manual_seed(0)
        batch, plan, _, last_pos, _, kinds = build_batch(Pool(bundle, ck.groups, "anchored"), list(range(4)),
                                                         bundle.pad_token_id, bundle.adapter, stage=3,
                                                         edge_interchange=EDGE_INTERCHANGE)
        per_group = 2 * len(row_kinds(3, False, EDGE_INTERCHANGE))
        with torch.no_grad(), intervened_attention():
            _STATE["plan"], _STATE["attention_mass"] = plan, []
            logits = model(**batch.inputs).logits
        n_clean = int(plan["rows"][0])
        seen = {"R7": 0, "R8": 0}
        for k, kind in enumerate(kinds[n_clean:]):
            if kind not in seen:
                continue
            g, t = k // per_group, TASKS[k % 2]  # per group: stage 3's kinds x 2 tasks of intervened rows
            r = int(plan["rows"][k])
            got = logits[r, last_pos[r]][ck.answer_ids]
            if kind == "R7":
                want = gt1[t][g]
            else:
                heads = [tuple(map(int, lh)) for lh in (plan["head_scale"][k] == 0).nonzero()]
                assert len(heads) == len(G_STAR) and not set(heads) & set(map(tuple, G_STAR))
                want = ck.run(lambda h, m, s, n: [h.heads.setdefault(l, []).append((m["instruction"], hd, "zero", None))
                                                  for l, hd in heads])[t][g]
            assert torch.allclose(got, want, atol=1e-4), (kind, g, t, got, want)
            seen[kind] += 1
        assert seen == {"R7": 8, "R8": 8}
    finally:
        ck.close()
        anchored.model.set_attn_implementation("sdpa")


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3, 4])
def test_same_seed_same_weights(stage):
    run = lambda seed: fit("anchored", seed, steps=3, groups_per_step=2, lr=3e-3, n_pool=6, warmup=2, lens_weight=0.5,  # noqa: E731
                           stage=stage)
    a, _, ha = run(3)
    b, _, hb = run(3)
    sa, sb = a.state_dict(), b.state_dict()
    assert ha == hb and all(torch.equal(sa[k], sb[k]) for k in sa)
