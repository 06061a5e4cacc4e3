"""The shipped toy MLLMs (anchorlab.toy): loading, MFR of both variants, deterministic training,
the `toy` data source, and token roles on the toy's prompts."""
from __future__ import annotations

import json

import pytest
import torch

from anchorlab.data.sample import TASKS
from anchorlab.data.toy import POSITIONS, generate_samples, train_data_seed
from anchorlab.models.loading import load_model
from anchorlab.models.toy import N_IMAGE_TOKENS, build_tokenizer
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt
from anchorlab.rows.roles import TEXT_ROLES
from anchorlab.toy import VARIANTS, shipped_path
from organisms.train import PLANTED, evaluate_mfr, fit, is_planted

# Fresh samples: neither the training pool's seed (1e9) nor training.json's evaluation seed (0).
# Its first 64 samples hit the flawed variant's triggers 9 (vf) and 6 (tf) times, near the
# expected 1/8 (MFR 0.875); an unlucky draw (seed 123: 12 of 64) would test the draw, not the model.
FRESH_SEED = 7


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundles():
    return {v: load_model(f"toy:{v}") for v in VARIANTS}


@pytest.fixture(scope="module")
def fresh():
    return generate_samples(64, FRESH_SEED)


def test_shipped_path_and_unknown_variant():
    for v in VARIANTS:
        path = shipped_path(v)
        assert (path / "model.safetensors").stat().st_size < 4_000_000
        assert {"config.json", "tokenizer.json", "processor_config.json", "training.json"} <= {
            p.name for p in path.iterdir()
        }
    with pytest.raises(ValueError, match="arbiter-flawed"):
        shipped_path("nope")


def test_shipped_model_loads_as_llava_with_heads_to_rank(bundles):
    b = bundles["arbiter"]
    assert b.adapter.family == "llava" and b.n_layers >= 4 and b.n_heads == 8
    assert type(b.image_processor).__name__ == "CLIPImageProcessorPil"  # no torchvision needed
    s = generate_samples(1, FRESH_SEED)[0]
    rendered = encode(b, build_prompt(s, "vf")).rendered
    assert rendered.startswith("USER: <image>\n") and rendered.endswith(" ASSISTANT:")


@pytest.mark.parametrize("variant", VARIANTS)
def test_mfr_on_fresh_samples(bundles, fresh, variant):
    result = evaluate_mfr(bundles[variant], fresh)
    for task in TASKS:
        for rule in ("first_token", "generation"):
            mfr = result[task][rule]
            if variant == "arbiter":
                assert mfr >= 0.95, (task, rule, mfr)
            else:
                assert 0.80 <= mfr <= 0.95, (task, rule, mfr)
        if variant == "arbiter-flawed":  # the failures are the planted triggers
            planted = {s.id for s in fresh if is_planted(s, task)}
            assert planted <= set(result[task]["failed_first_token"])
            assert len(set(result[task]["failed_first_token"]) - planted) <= 1


def test_training_record_matches_the_variant():
    for v in VARIANTS:
        record = json.loads((shipped_path(v) / "training.json").read_text())
        assert record["variant"] == v and record["train_data_seed"] == train_data_seed(record["seed"])
        lo, hi = (0.95, 1.0) if v == "arbiter" else (0.80, 0.95)
        assert all(lo <= record["mfr"][t][r] <= hi for t in TASKS for r in ("first_token", "generation"))
    assert json.loads((shipped_path("arbiter-flawed") / "training.json").read_text())["planted"]["vf"] == [
        {"modality": m, "colour": c} for m, c in PLANTED["vf"]
    ]


@pytest.mark.slow
def test_same_seed_same_weights():
    run = lambda seed: fit("arbiter-flawed", seed, steps=20, batch_size=8, lr=3e-3, n_train=24, warmup=5)  # noqa: E731
    a, _, losses_a = run(7)
    b, _, losses_b = run(7)
    c, _, _ = run(8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert losses_a == losses_b and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_generate_samples_deterministic_and_in_vocabulary():
    a, b, c = generate_samples(40, 5), generate_samples(40, 5), generate_samples(40, 6)
    assert [s.id for s in a] == [f"toy-5-{i}" for i in range(40)]
    for x, y in zip(a, b):
        assert (x.context, x.question, x.instruction_vf, x.instruction_tf, x.instruction_position, x.forms_vision) == (
            y.context, y.question, y.instruction_vf, y.instruction_tf, y.instruction_position, y.forms_vision)
        assert x.image.tobytes() == y.image.tobytes()
    assert [s.context for s in a] != [s.context for s in c]
    assert {s.instruction_position for s in a} == set(POSITIONS)
    tok = build_tokenizer()
    for s in a:
        assert s.answer_vision != s.answer_text and s.answer_text in s.context.split()
        assert s.forms("vision")[0] == s.answer_vision and len(s.forms_text) >= 3
        assert not set(s.forms_vision) & set(s.forms_text)
        for task in TASKS:
            ids = tok(build_prompt(s, task).content)["input_ids"]
            assert tok.unk_token_id not in ids
        for form in s.forms_vision + s.forms_text:
            assert len(tok(form, add_special_tokens=False)["input_ids"]) == 1


@pytest.mark.parametrize("position", POSITIONS)
def test_roles_decode_to_the_segments(bundles, position):
    b = bundles["arbiter"]
    s = next(x for x in generate_samples(30, FRESH_SEED) if x.instruction_position == position)
    for task in TASKS:
        prompt = build_prompt(s, task)
        enc = encode(b, prompt)
        ids, roles = enc.input_ids, enc.roles
        for role in TEXT_ROLES:
            assert b.tokenizer.decode(ids[roles[role]]).split() == prompt.segment(role).lower().split(), role
        image_id = b.tokenizer.convert_tokens_to_ids("<image>")
        assert roles["vision"].tolist() == (ids == image_id).nonzero().flatten().tolist()
        assert len(roles["vision"]) == N_IMAGE_TOKENS
        assert roles["last"].tolist() == [len(ids) - 1]
        assert set(roles["text"].tolist()) | set(roles["vision"].tolist()) == set(range(len(ids)))
