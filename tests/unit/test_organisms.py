"""The organism family (organisms/siit.py, spec.py, interchange.py, family.py; data/organism_family.py; the shipped
toy:organism-*): losses that never name an analysis metric, instructions held out from training, recipe prompt
fields honoured by the generated sources, the head-patching hook against a direct computation, deterministic SIIT,
and the shipped models' held-out behaviour and circuit.json re-measured with plain torch hooks written here (no
anchorlab engine, no organisms/ code)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random

import pytest
import torch

from anchorlab.data.organism import generate_samples as anchored_samples
from anchorlab.data.organism import organism_vocabulary
from anchorlab.data.organism_family import (
    GRAMMARS,
    NOUN_PAIRS,
    TEMPLATES,
    WORD_CLASSES,
    _heldout,
    class_sequence,
    compose,
    family_vocabulary,
    fill,
    generate_groups,
    generate_samples,
    instruction_pairs,
    layouts,
)
from anchorlab.data.sample import COMPETITOR, FOLLOWED, TASKS, ConflictSample
from anchorlab.data.sources import load_dataset
from anchorlab.data.toy import POSITIONS
from anchorlab.models.loading import load_model
from anchorlab.recipe import DataSpec, PromptSpec
from anchorlab.rows.batching import collate
from anchorlab.rows.compiler import prompt_style
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt
from anchorlab.toy import FAMILY, shipped_path
from organisms import lexicon
from organisms.family import FAMILY_LM, STAGE_SEED_STRIDE, build, family_processor, fit, image_features, train_from_spec
from organisms.interchange import flip_rates
from organisms.siit import LOSSES, Pool, patch_heads, step_rows
from organisms.spec import load_spec
from organisms.train import toy_bundle

pytestmark = pytest.mark.usefixtures("one_thread")
PROBES = tuple(k for k, v in _heldout()["paraphrases"].items() if isinstance(v, list))  # the json's, in order
METRIC_WORDS = ("lens", "attribution", "attention", "knockout", "nssd", "ldar", "ablation", "amplif", "block")


def test_no_loss_names_an_analysis_metric():
    """training.json's `losses` is the LOSSES entries a spec uses: none may name what an analysis reports."""
    for name, entry in LOSSES.items():
        text = json.dumps({"name": name, **entry}).lower()
        assert not [w for w in METRIC_WORDS if w in text], name
    specs = {n: load_spec(f"organisms/specs/organism-{n}.json", 6, 8) for n in ("a", "b", "backup", "control")}
    assert {loss for s in specs.values() for loss in s.losses} == set(LOSSES)
    assert specs["control"].losses == ("task",) and not specs["control"].planted
    for name in FAMILY:  # what each shipped model was trained with, as its training.json records it
        record = json.loads((shipped_path(name) / "training.json").read_text())
        assert [e["name"] for e in record["losses"]] == list(specs[name.removeprefix("organism-")].losses), name
        for entry in record["losses"]:
            assert entry["name"] in LOSSES and entry["intervention"], (name, entry)
            assert not [w for w in METRIC_WORDS if w in json.dumps(entry).lower()], (name, entry)


def test_heldout_instructions_never_trained():
    train, held = instruction_pairs("train"), instruction_pairs("heldout")
    assert len(train) >= 24 and held and not set(train) & set(held)
    spec = _heldout()
    for template in spec["templates"]:  # a held-out template's structure never appears in training
        assert not {fill(template, v, t) for v, t in NOUN_PAIRS} & set(train)
    assert {p for p, _ in layouts("train")} == set(POSITIONS) and not set(layouts("train")) & set(layouts("heldout"))
    for g in generate_groups(60, 11, 2, "train"):
        for s in g:
            assert (s.instruction_vf, s.instruction_tf) in train
            assert (s.instruction_position, s.context_prefix) in layouts("train")
    for s in generate_samples(60, 11):
        assert (s.instruction_vf, s.instruction_tf) in held
        assert (s.instruction_position, s.context_prefix) in layouts("heldout")
    paraphrases = [t for probe in PROBES for t in spec["paraphrases"][probe]]
    assert len(paraphrases) == 223 and not set(paraphrases) & set(TEMPLATES)


@pytest.mark.parametrize("pool", GRAMMARS)
def test_composed_pool_never_trains_a_probe_even_up_to_a_synonym(pool):
    """A composed pool's sentences: vocabulary words only, vf / tf the same length (the twin aligns), never a held-out
    pair, and never the class sequence of a held-out template or a probe the pool excludes (the filter is live: the
    grammar does produce some)."""
    spec = _heldout()
    excluded = spec["pool_excludes"][pool]
    assert set(excluded) <= set(PROBES)
    banned = {class_sequence(t) for t in [*spec["templates"], *(t for p in excluded for t in spec["paraphrases"][p])]}
    tok, held = family_processor().tokenizer, set(instruction_pairs("heldout"))
    groups = generate_groups(400, 5, 2, "train", pool)
    composed = [g for g in groups if "template" in g[0].extra]
    assert len(composed) == 266  # two of every three pairs of question types
    for g in composed:
        template = g[0].extra["template"]
        assert class_sequence(template) not in banned, template
        for s in g:
            assert (s.instruction_vf, s.instruction_tf) not in held, s.instruction_vf
            a, b = tok(s.instruction_vf)["input_ids"], tok(s.instruction_tf)["input_ids"]
            assert len(a) == len(b) and tok.unk_token_id not in a + b, s.instruction_vf
    rng = random.Random(0)
    assert sum(class_sequence(compose(rng, pool)) in banned for _ in range(5000)) > 10
    assert {w for ws in WORD_CLASSES.values() for w in ws} <= set(family_vocabulary())
    assert sum(len(ws) for ws in WORD_CLASSES.values()) == len({w for ws in WORD_CLASSES.values() for w in ws})


# sha256 of 3,000 sentences of compose(random.Random(3), pool): each pool draws what its shipped stages drew
POOL_DRAWS = {"composed": "e615a05ee07d2128", "composed2": "5febf730831dca51", "composed3": "de5a9c673df1fab7",
              "composed4": "eecec9f0669bb296", "composed5": "417b70b2f8c97ba4",
              "composed6": "96072c46047121d1"}


def _draws(pool: str, n: int = 3000) -> list[str]:
    rng = random.Random(3)
    return [compose(rng, pool) for _ in range(n)]


def test_each_pool_adds_frames_and_leaves_the_earlier_ones_as_they_were():
    """composed2 adds frames that composed never draws (lead-ins naming {o} before {m}, fronted contrasts, where a
    wrong answer is), composed3 frames that neither draws (a question and its answer, an aside that is no
    instruction, two sentences, "!" and ":"), composed4 frames that none draws (a hedge, "that" pointing back at a
    modality), composed5 frames that none draws (a yes/no question about one modality and its answer), composed6
    frames that none draws (questions answered with the rejected modality, "which of", no modality named); each pool
    still draws what the shipped stages drew (their sentences' digest, and the next test
    regenerates the stages' pools)."""
    one, two, three, four, five, six = (set(_draws(pool)) for pool in GRAMMARS)
    fronts = ("when the {o} and the {m} disagree", "rather than", "instead of")
    for front in fronts:
        assert any(t.startswith(front) for t in two), front
    assert any("there is a wrong" in t for t in two)
    assert not any(t.startswith(fronts) or "there is a wrong" in t for t in one)
    new = (lambda t: t.startswith("which "), lambda t: "someone wrote" in t, lambda t: " . " in t,
           lambda t: " ! " in t or t.endswith("!"), lambda t: " : " in t)
    for frame in new:
        assert any(map(frame, three)) and not any(frame(t) for t in one | two)
    for frame in (lambda t: " may or may not " in t, lambda t: " or wrong" in t, lambda t: "shows an answer" in t,
                  lambda t: " ; that is wrong" in t):
        assert any(map(frame, four)) and not any(frame(t) for t in one | two | three)
    for frame in (" ? the {m} does", " ? the {o} is not", " ? not the {o}", " ? in the {m}"):
        assert any(frame in t for t in five) and not any(frame in t for t in one | two | three | four), frame
    for frame in ("which should you not ", "which of the ", "what should you ignore ? the {o}",
                  "what is wrong ? the {o}"):
        assert any(frame in t for t in six) and not any(frame in t for t in one | two | three | four | five), frame
    for pool, digest in POOL_DRAWS.items():
        assert hashlib.sha256("\n".join(_draws(pool)).encode()).hexdigest()[:16] == digest, pool


# Sentences of probes written after a composed pool was fixed (not in that pool's pool_excludes) whose class sequence
# a member's pool drew: only their other sentences are held out from it; docs/models.md reports them apart
LATER_PROBES_IN_POOL = {
    "probe_8": {
        "you should go with the {m} and not with the {o} .", "the {o} does not have the right answer .",
        "trust what you see in the {m} .", "do not answer based on the {o} .", "what the {o} says may not be correct .",
        "the answer should be based on the {m} .", "never answer from what the {o} says .",
        "in case of an inconsistency , the {m} is right .",
    },
    "probe_9": {
        "the right answer is what the {m} shows .", "you should answer this question with what the {m} shows .",
        "only what the {m} says is correct .", "the answer comes only from the {m} .",
        "in case of an inconsistency , do not trust the {o} .", "the {o} may show the wrong answer .",
    },
    "probe_10": {
        "you should be selecting the answer from the {m} .", "the {o} is wrong , the {m} is not .",
        "what the {o} shows is not what you should use .", "the answer is based on the {m} and not on the {o} .",
    },
    "probe_11": {
        "you should not trust what the {o} says ; the {m} is correct .",
        "do not be selecting the answer from the {o} .", "in this question , the {m} is what you should look at .",
        "only the {m} shows what is right ; the {o} does not .",
        "the answer should be based on the {m} , not on the {o} .",
    },
    "probe_12": {
        "do not go with what the {o} says .", "you must answer from what you see in the {m} .",
        "what the {o} says may not be right ; follow the {m} .",
        "when the {m} and the {o} disagree , the {o} is wrong .",
    },
    "probe_13": {
        "the {m} does show the right answer .", "you should look at the {m} to answer this question .",
        "what the {o} says is wrong , so answer from the {m} .", "which should you follow ? the {m} .",
    },
    "probe_14": {
        "answer this question from the {m} , not the {o} .", "go with what the {m} shows , not what the {o} says .",
        "the answer comes from the {m} only .", "which is correct : the {o} or the {m} ? the {m} .",
    },
    "probe_15": {"answer based on what you see in the {m} , never on the {o} ."},
    "probe_16": {"the answer comes from the {m} and not from the {o} .",
                 "in this case the {o} is wrong and the {m} is correct .", "only what you see in the {m} is right ."},
    "probe_17": {"the {o} may be wrong ; the {m} is not .",
                 "instead of what the {o} says , use what the {m} shows .",
                 "between the {o} and the {m} , the {m} is right .", "is the {m} wrong ? the {m} is not ; the {o} is .",
                 "which is wrong : the {m} or the {o} ? the {o} ."},
    "probe_18": {"what someone wrote in the {o} is wrong .",
                 "does the {o} show the right answer ? the {o} does not , so use the {m} ."},
    "probe_19": {"go by what the {m} shows .", "never use the {o} to answer .",
                 "answer with what the {m} shows , not the {o} .", "you should not go with the {o} .",
                 "what is in the {m} is correct ."},
}


# Groups of the shipped composed stages whose composed sentence equals a template and, filled with the group's nouns,
# is a held-out pair ((pool seed, vf instruction)): composed did not redraw them, the later pools do
# (docs/models.md)
COMPOSED_HELDOUT_PAIRS = {(3_002_000_000, "ignore the written text ."), (3_002_000_001, "ignore the written text .")}


def test_what_the_members_pools_drew():
    """Regenerate every composed stage's pool of every member. A probe written after a pool was fixed (not in its
    pool_excludes) is held out only where no pool open to it drew its class sequence (LATER_PROBES_IN_POOL, as the
    docs report); no held-out pair is drawn, but for the composed groups the docs report (COMPOSED_HELDOUT_PAIRS)."""
    spec, held = _heldout(), set(instruction_pairs("heldout"))
    later = [p for p in PROBES if any(p not in names for names in spec["pool_excludes"].values())]
    assert later == list(LATER_PROBES_IN_POOL)
    pools = set()
    for name in FAMILY:
        record = json.loads((shipped_path(name) / "training.json").read_text())
        for k, stage in enumerate(record["spec"]["stages"], start=1):
            pool = stage["train"].get("pool", "base")
            if pool != "base":
                cfg = {**record["train"], **stage["train"]}
                pools.add((pool, record["train_data_seed"] + k * STAGE_SEED_STRIDE, cfg["n_pool"], cfg["group_size"]))
    drawn, leaks = {p: set() for p in later}, set()
    for pool, seed, n_pool, size in sorted(pools):
        groups = [g[0] for g in generate_groups(n_pool, seed, size, "train", pool) if "template" in g[0].extra]
        leaks |= {(seed, s.instruction_vf) for s in groups if (s.instruction_vf, s.instruction_tf) in held}
        for p in later:
            if p not in spec["pool_excludes"][pool]:
                drawn[p] |= {class_sequence(s.extra["template"]) for s in groups}
    assert {pool for pool, *_ in pools} == set(GRAMMARS)
    assert all(len(d) > 5000 for d in drawn.values())
    for p in later:
        assert {t for t in spec["paraphrases"][p] if class_sequence(t) in drawn[p]} == LATER_PROBES_IN_POOL[p], p
    assert leaks == COMPOSED_HELDOUT_PAIRS


def test_lexicon_tie_keeps_each_class_on_one_row():
    """tie(): each class's rows start at its first word's row and stay equal through AdamW steps; other rows move."""
    model, processor = build(0)
    tok, emb = processor.tokenizer, model.get_input_embeddings().weight
    classes = lexicon.class_ids(tok)
    before = emb.detach().clone()
    assert not lexicon.is_tied(model, tok)
    handle = lexicon.tie(model, tok)
    for ids in classes.values():
        assert torch.equal(emb[ids].detach(), before[ids[0]].expand(len(ids), -1))
    words = "do not use the image ; the caption is correct , go with what the text says . red blue"
    ids = torch.tensor([tok(words, add_special_tokens=False)["input_ids"]])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.01)
    for _ in range(3):
        loss = model(input_ids=ids).logits.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    handle.remove()
    assert lexicon.is_tied(model, tok)
    filler = classes["filler"]
    assert (emb[filler[0]] - before[filler[0]]).abs().max() > 1e-4  # the shared row trained
    red, blue = tok.convert_tokens_to_ids("red"), tok.convert_tokens_to_ids("blue")
    assert (emb[red] - before[red]).abs().max() > 1e-4 and not torch.equal(emb[red], emb[blue])


def test_family_vocabulary_appends_and_covers_every_prompt():
    base, vocab = organism_vocabulary(), family_vocabulary()
    assert vocab[:len(base)] == base and len(vocab) > len(base)
    tok = family_processor().tokenizer
    paraphrases = [fill(t, v, x) for probe in PROBES for t in _heldout()["paraphrases"][probe] for v, x in NOUN_PAIRS]
    for vf, tf in instruction_pairs("train") + instruction_pairs("heldout") + paraphrases:
        a, b = tok(vf)["input_ids"], tok(tf)["input_ids"]
        assert len(a) == len(b) and tok.unk_token_id not in a + b, (vf, tf)
    for s in generate_samples(40, 3) + [g[0] for g in generate_groups(40, 3, 1)]:
        for t in TASKS:
            assert tok.unk_token_id not in tok(build_prompt(s, t).content)["input_ids"], s.id


@pytest.mark.parametrize("source", ["toy", "organism", "organism-heldout"])
def test_generated_sources_honour_the_recipe_prompt(source):
    own, _ = load_dataset(DataSpec(source=source, n_samples=12), seed=5)
    prompt = PromptSpec(instructions={"vf": "use the picture ."}, instruction_position="after_question",
                        context_prefix="Caption: ")
    samples, info = load_dataset(DataSpec(source=source, n_samples=12, prompt=prompt), seed=5)
    assert "data.prompt.instruction_position" in info["data_prompt_from_recipe"]
    style = prompt_style(prompt)
    for s, o in zip(samples, own):
        vf, tf = build_prompt(s, "vf", style), build_prompt(s, "tf", style)
        assert vf.segment("instruction") == "use the picture ." and vf.content.endswith("\nuse the picture .")
        assert tf.segment("instruction") == (o.instruction_tf or style.instruction("tf"))  # tf not set: the sample's
        assert vf.segment("context") == s.context and vf.content.startswith("Caption: ")
    default = prompt_style(PromptSpec())
    if source != "toy":  # the organisms' own prompts keep their per-sample layout when the recipe sets nothing
        assert [build_prompt(s, "vf", default).segment("instruction") for s in own] == [s.instruction_vf for s in own]
    if source == "organism-heldout":
        assert len({s.instruction_position for s in own}) > 1


def test_spec_errors_name_the_field(tmp_path):
    bad = ({"heads": [[1, 0], [1, 2]]}, {"heads": [[5, 0]]}, {"backup_pair": [[2, 0], [3, 1]]},
           {"planted": False, "heads": [[0, 0]]})
    fields = ("heads", "heads", "backup_pair", "planted")
    for raw, field in zip(bad, fields):
        path = tmp_path / "spec.json"
        path.write_text(json.dumps({"name": "x", **raw}))
        with pytest.raises(ValueError, match=f"spec.json: {field}"):
            load_spec(path, 6, 8)
    path = _no_stages(tmp_path, "organism-a", stages=[{"steps": 2, "train": {"learning_rate": 1e-3}}])
    with pytest.raises(ValueError, match=r"stages.0.train: unknown key\(s\) \['learning_rate'\]"):
        train_from_spec(path, None, n_eval=0, log=None)
    path = _no_stages(tmp_path, "organism-a", stages=[{"steps": 2, "train": {"pool": "noisy"}}])
    refused = (r"stages.0.train.pool: 'noisy' is not one of \('base', 'composed', 'composed2', 'composed3',"
               r" 'composed4', 'composed5', 'composed6'\)")
    with pytest.raises(ValueError, match=refused):
        train_from_spec(path, None, n_eval=0, log=None)


def test_patch_hook_equals_zeroed_output_columns():
    """Replacing one head's slice of o_proj's input by zeros == zeroing that head's columns of o_proj."""
    model, processor = build(0)
    bundle = toy_bundle(model.eval(), processor)
    s = generate_samples(3, 1)
    batch = collate([encode(bundle, build_prompt(x, "vf")) for x in s], bundle.adapter, bundle.pad_token_id)
    T, D = batch.inputs["input_ids"].shape[1], FAMILY_LM["hidden_size"] // FAMILY_LM["num_attention_heads"]
    select = torch.zeros(3, FAMILY_LM["num_hidden_layers"], T, FAMILY_LM["num_attention_heads"], dtype=torch.bool)
    select[:, 2, :, 1] = True
    with torch.no_grad(), patch_heads(model, select, lambda layer, x: torch.zeros_like(x)):
        patched = model(**batch.inputs).logits
    with torch.no_grad():
        plain = model(**batch.inputs).logits
        model.model.language_model.layers[2].self_attn.o_proj.weight[:, D:2 * D] = 0
        direct = model(**batch.inputs).logits
    torch.testing.assert_close(patched, direct, atol=1e-5, rtol=1e-5)
    assert (patched - plain).abs().max() > 1e-3  # the head mattered: the comparison can fail


def _no_stages(tmp_path, name: str, **changes):
    """A copy of a shipped spec (its later stages dropped unless `changes` sets them), for quick runs."""
    raw = {**json.loads(open(f"organisms/specs/{name}.json").read()), "stages": [], **changes}
    path = tmp_path / f"{name}-{hashlib.sha256(json.dumps(raw).encode()).hexdigest()[:12]}.json"
    path.write_text(json.dumps(raw))
    return path


def test_siit_training_is_deterministic(tmp_path):
    spec = load_spec(_no_stages(tmp_path, "organism-backup"), FAMILY_LM["num_hidden_layers"],
                     FAMILY_LM["num_attention_heads"])
    run = lambda seed: fit(spec, seed, 3, None, n_pool=4, groups_per_step=2, warmup=2, interchange_from=1)  # noqa: E731
    (a, _, ha), (b, _, hb), (c, _, _) = run(3), run(3), run(4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert ha == hb and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert set(ha[-1]) >= {"task", "interchange", "strict_single", "strict_role"}
    vision = {k for k in sa if ".vision_tower." in k or ".multi_modal_projector." in k}
    assert vision and all(torch.equal(sa[k], sc[k]) for k in vision)  # frozen: the same for every seed


def test_role_source_other_task_resamples_the_role_from_the_opposite_instruction(tmp_path):
    """strict_role rows: with `role_source: other_task` every source prompt carries the other task's instruction
    (another sample); by default the source's task is drawn (both occur); an unknown value is refused by field."""
    model, processor = build(0)
    groups = generate_groups(6, 0, 3, "train", "base")
    pool = Pool(toy_bundle(model, processor, "toy:test"), groups, image_features(model, processor, groups))
    task_of = {id(pool.enc[g][m][t]): (g, m, t) for g in range(6) for m in range(3) for t in TASKS}
    n_layers, n_heads = FAMILY_LM["num_hidden_layers"], FAMILY_LM["num_attention_heads"]
    spec = load_spec("organisms/specs/organism-a.json", n_layers, n_heads)
    for source, want in (("other_task", {True}), ("any_task", {True, False})):
        encoded, _, _, kinds, sources, _ = step_rows(pool, list(range(6)), spec, n_layers, n_heads, random.Random(0),
                                                     role_source=source)
        pairs = [(task_of[id(encoded[r])], task_of[id(encoded[sources[r]])])
                 for r, k in enumerate(kinds) if k == "strict_role"]
        assert len(pairs) == 36 and all(a[:2] != b[:2] for a, b in pairs)  # another sample, same group
        assert {a[2] != b[2] for a, b in pairs} == want, source
    bad = _no_stages(tmp_path, "organism-a", stages=[{"steps": 1, "train": {"role_source": "twin"}}])
    with pytest.raises(ValueError, match=r"stages.0.train.role_source: 'twin'"):
        train_from_spec(bad, tmp_path / "bad", log=None)


def test_a_later_stage_from_saved_weights_equals_one_run(tmp_path):
    """`--from DIR` (the first stage saved, perhaps with some later stages, then only the stages after those)
    gives the weights one command gives."""
    quick = dict(log=None, n_eval=0, n_pool=4, groups_per_step=2, warmup=2, interchange_from=1)
    stage1, stage2 = {"steps": 2, "train": {"lr": 1e-3}}, {"steps": 2, "train": {"groups_per_step": 3}}
    two = _no_stages(tmp_path, "organism-a", steps=3, stages=[stage1, stage2])
    one = _no_stages(tmp_path, "organism-a", steps=3, stages=[stage1])
    first = _no_stages(tmp_path, "organism-a", steps=3)
    whole = train_from_spec(two, tmp_path / "whole", **quick)
    assert whole["continued_from"] is None
    train_from_spec(first, tmp_path / "first", **quick)
    resumed = train_from_spec(two, tmp_path / "resumed", start_from=tmp_path / "first", **quick)
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    assert resumed["continued_from"] == {**resumed["continued_from"], "from": str(tmp_path / "first"), "stages_done": 0}
    middle = train_from_spec(one, tmp_path / "middle", start_from=tmp_path / "first", **quick)
    assert middle["weights_sha256"] != whole["weights_sha256"]
    last = train_from_spec(two, tmp_path / "last", start_from=tmp_path / "middle", **quick)
    assert last["weights_sha256"] == whole["weights_sha256"] and last["continued_from"]["stages_done"] == 1
    assert last["train_seconds"] > middle["train_seconds"]
    with pytest.raises(ValueError, match="not a start of"):  # every stage already ran
        train_from_spec(two, tmp_path / "bad", start_from=tmp_path / "whole", **quick)
    with pytest.raises(ValueError, match="not a start of"):  # other steps
        train_from_spec(two, tmp_path / "bad", start_from=tmp_path / "first", steps=4, **quick)
    other = _no_stages(tmp_path, "organism-a", steps=3, stages=[{"steps": 2, "train": {"lr": 5e-4}}, stage2])
    with pytest.raises(ValueError, match="not a start of"):  # the stage it ran is not this spec's
        train_from_spec(other, tmp_path / "bad", start_from=tmp_path / "middle", **quick)


def _interchange_rates(bundle, samples, heads_sets, role="instruction", n_clean=None):
    """Plain hooks: per task, flip rate of each heads set interchanged at the `role` positions from the
    instruction-swapped twin (flip: followed-minus-competitor margin > 0 clean, < 0 patched)."""
    model, tok = bundle.model, bundle.tokenizer
    layers = model.model.language_model.layers
    H = model.config.text_config.num_attention_heads
    first = lambda w: tok(w, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    out = {}
    for task in TASKS:
        other = "tf" if task == "vf" else "vf"
        base = collate([encode(bundle, build_prompt(s, task)) for s in samples], bundle.adapter, bundle.pad_token_id)
        twin = collate([encode(bundle, build_prompt(s, other)) for s in samples], bundle.adapter, bundle.pad_token_id)
        store = {}
        handles = [layer.self_attn.o_proj.register_forward_pre_hook(
            lambda m, a, i=i: store.__setitem__(i, a[0].detach().clone())) for i, layer in enumerate(layers)]
        with torch.no_grad():
            model(**twin.inputs)
        for h in handles:
            h.remove()
        rows = torch.arange(len(samples))
        f = torch.tensor([first(s.answer(FOLLOWED[task])) for s in samples])
        c = torch.tensor([first(s.answer(COMPETITOR[task])) for s in samples])
        with torch.no_grad():
            logits = model(**base.inputs).logits[:, -1]
        clean = logits[rows, f] > logits[rows, c]
        if n_clean is not None:  # the prompts a rate is over, per task
            n_clean[task] = int(clean.sum())
        at = torch.zeros(base.inputs["input_ids"].shape, dtype=torch.bool)  # [B, T]: the role's positions
        for r, roles in enumerate(base.roles):
            at[r, roles[role]] = True
        for heads in heads_sets:
            def pre(module, args, layer):
                x = args[0].clone().view(*args[0].shape[:2], H, -1)
                src = store[layer].view_as(x)
                for ll, h in heads:
                    if ll == layer:
                        x[:, :, h] = torch.where(at[..., None], src[:, :, h], x[:, :, h])
                return (x.view_as(args[0]),)
            handles = [layers[ll].self_attn.o_proj.register_forward_pre_hook(lambda m, a, ll=ll: pre(m, a, ll))
                       for ll in {ll for ll, _ in heads}]
            with torch.no_grad():
                logits = model(**base.inputs).logits[:, -1]
            for h in handles:
                h.remove()
            flips = clean & (logits[rows, f] < logits[rows, c])
            out.setdefault(tuple(heads), {})[task] = float(flips.sum()) / max(1, int(clean.sum()))
    return out


def test_twin_interchange_matches_plain_hooks_on_toy_anchored():
    """circuit.json's measurement (organisms.interchange.flip_rates) equals the hooks above, on toy:anchored's
    length-matched wording pairs, and reproduces issue 24's reading: (0, 2) flips most tf answers, (5, 6) none."""
    bundle = load_model("toy:anchored")
    samples = anchored_samples(48, 4242)
    heads = [((0, 2),), ((4, 5),), ((5, 6),), ((0, 2), (0, 6))]
    mine = _interchange_rates(bundle, samples, heads)
    theirs = flip_rates(bundle, samples, {str(h): h for h in heads}, batch_size=16, role="instruction")["rates"]
    for h in heads:
        for t in TASKS:
            assert abs(mine[h][t] - theirs[str(h)][t]) < 1e-3, (h, t)
    assert mine[((0, 2),)]["tf"] > 0.5 and mine[((5, 6),)]["tf"] < 0.05 and min(mine[((0, 2), (0, 6))].values()) > 0.9


def test_train_from_spec_writes_consistent_records(tmp_path):
    """A few steps end to end: training.json's sha256 is the saved weights', its losses are the spec's, and
    circuit.json lists the planted heads plus every head its single-head table puts at or above the threshold."""
    import hashlib

    record = train_from_spec(_no_stages(tmp_path, "organism-backup"), tmp_path, steps=2, n_eval=8, log=None,
                             interchange_from=0)
    circuit = json.loads((tmp_path / "circuit.json").read_text())
    assert record["weights_sha256"] == hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()
    assert [e["name"] for e in record["losses"]] == ["task", "interchange", "strict_single", "strict_role"]
    assert circuit["positions"] == "last" and set(circuit["single_head_flip_rates"]) == {"instruction", "query", "last"}
    for role, table in circuit["single_head_flip_rates"].items():
        assert len(table) == FAMILY_LM["num_hidden_layers"] * FAMILY_LM["num_attention_heads"]
        over = [[int(x) for x in k.split(".")] for k, v in table.items() if max(v.values()) >= circuit["threshold"]]
        assert sorted(circuit["flipping_heads"][role]) == sorted(over)
        assert {tuple(h) for h in over} <= set(map(tuple, circuit["heads_by_role"].get(role, [])))
    assert circuit["heads"][:3] == [[2, 4], [4, 1], [4, 6]] and circuit["heads"] == circuit["heads_by_role"]["last"]
    assert [c["kind"] for c in circuit["components"]] == ["chain_head", "backup_pair"]
    assert circuit["arbitration_layers"] == sorted({h[0] for h in circuit["heads"]})


def _wilson_low(rate: float, n: int, z: float = 1.96) -> float:
    """Wilson score interval's lower bound of a rate over n trials."""
    if n == 0:
        return 0.0
    centre, half = rate + z * z / (2 * n), z * ((rate * (1 - rate) + z * z / (4 * n)) / n) ** 0.5
    return (centre - half) / (1 + z * z / n)


def _plain_mfr(bundle, samples):
    """Per task, the share of prompts whose first answer token of the followed modality beats the competitor's
    at `last` (one plain forward)."""
    tok, out = bundle.tokenizer, {}
    first = lambda w: tok(w, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    for task in TASKS:
        batch = collate([encode(bundle, build_prompt(s, task)) for s in samples], bundle.adapter, bundle.pad_token_id)
        with torch.no_grad():
            logits = bundle.model(**batch.inputs).logits[:, -1]
        rows = torch.arange(len(samples))
        f = torch.tensor([first(s.answer(FOLLOWED[task])) for s in samples])
        c = torch.tensor([first(s.answer(COMPETITOR[task])) for s in samples])
        out[task] = float((logits[rows, f] > logits[rows, c]).float().mean())
    return out


def _paraphrased(template: str, samples: list[ConflictSample]) -> list[ConflictSample]:
    """`samples` with their instruction pair replaced by `template`, the noun pairs taken in turn."""
    pairs = [fill(template, v, x) for v, x in NOUN_PAIRS]
    return [dataclasses.replace(s, instruction_vf=pairs[i % len(pairs)][0], instruction_tf=pairs[i % len(pairs)][1])
            for i, s in enumerate(samples)]


# measured (this test's prompts): mean MFR vf / tf over a probe's paraphrases, and the lowest single one
PARAPHRASE_SHORTFALL = {
    ("organism-a", "probe_15"): "0.965 / 0.993, lowest 0.614",
    ("organism-a", "probe_17"): "0.908 / 0.843, lowest 0.000",
    ("organism-a", "probe_18"): "0.936 / 0.987, lowest 0.286",
    ("organism-b", "probe_8"): "0.970 / 0.963, lowest 0.657",
    ("organism-b", "probe_10"): "0.996 / 0.908, lowest 0.029",
    ("organism-b", "probe_15"): "1.000 / 0.931, lowest 0.171",
    ("organism-b", "probe_16"): "1.000 / 0.927, lowest 0.229",
    ("organism-b", "probe_17"): "0.877 / 0.823, lowest 0.186",
    ("organism-b", "probe_18"): "0.987 / 0.892, lowest 0.000",
    ("organism-backup", "probe_6"): "0.946 / 0.986, lowest 0.357",
    ("organism-backup", "probe_10"): "0.963 / 0.937, lowest 0.371",
    ("organism-backup", "probe_15"): "0.962 / 0.998, lowest 0.543",
    ("organism-backup", "probe_16"): "0.908 / 0.985, lowest 0.343",
    ("organism-backup", "probe_17"): "0.812 / 0.843, lowest 0.014",
    ("organism-backup", "probe_18"): "0.898 / 0.925, lowest 0.314",
    ("organism-control", "probe_1"): "1.000 / 0.913, lowest 0.757",
    ("organism-control", "probe_2"): "1.000 / 0.944, lowest 0.771",
    ("organism-control", "probe_3"): "1.000 / 0.935, lowest 0.786",
    ("organism-control", "probe_4"): "1.000 / 0.940, lowest 0.757",
    ("organism-control", "probe_5"): "1.000 / 0.933, lowest 0.786",
    ("organism-control", "probe_6"): "0.998 / 0.936, lowest 0.771",
    ("organism-control", "probe_7"): "0.998 / 0.944, lowest 0.786",
    ("organism-control", "probe_8"): "0.996 / 0.931, lowest 0.771",
    ("organism-control", "probe_9"): "1.000 / 0.933, lowest 0.771",
    ("organism-control", "probe_10"): "1.000 / 0.938, lowest 0.771",
    ("organism-control", "probe_11"): "0.994 / 0.926, lowest 0.757",
    ("organism-control", "probe_12"): "0.996 / 0.910, lowest 0.729",
    ("organism-control", "probe_14"): "0.913 / 0.840, lowest 0.000",
    ("organism-control", "probe_15"): "0.994 / 0.869, lowest 0.000",
    ("organism-control", "probe_16"): "0.819 / 0.714, lowest 0.000",
    ("organism-control", "probe_17"): "0.851 / 0.800, lowest 0.000",
    ("organism-control", "probe_18"): "0.829 / 0.824, lowest 0.000",
    ("organism-control", "probe_19"): "1.000 / 0.933, lowest 0.786",
}


def _probe_case(name: str, probe: str):
    if (name, probe) not in PARAPHRASE_SHORTFALL:
        return (name, probe)
    reason = f"paraphrases outside the pool are not followed: {PARAPHRASE_SHORTFALL[name, probe]}"
    return pytest.param(name, probe, marks=pytest.mark.xfail(strict=True, reason=reason))


def test_sentence_rates_are_the_plain_forward_and_fresh_draws_stay_in_their_pool():
    """organisms.sentences (what a stage's keep rule reads: `python -m organisms sentences`) gives, per sentence,
    the plain forward's MFR above; its fresh draw is a pure function of (pool, seed) and holds no sentence the pool
    leaves out (held-out templates, the probes pool_excludes names); an unknown probe is refused by name."""
    from click.testing import CliRunner

    from organisms.__main__ import main
    from organisms.sentences import fresh_sentences, measure

    drawn = fresh_sentences("composed6", 40, 5)
    assert drawn == fresh_sentences("composed6", 40, 5) and drawn != fresh_sentences("composed6", 40, 6)
    assert len(set(drawn)) == 40
    spec = _heldout()
    left_out = {class_sequence(t) for t in
                [*spec["templates"], *(t for p in spec["pool_excludes"]["composed6"] for t in spec["paraphrases"][p])]}
    assert not {class_sequence(t) for t in drawn} & left_out
    assert not {fill(t, v, x) for t in drawn for v, x in NOUN_PAIRS} & set(instruction_pairs("heldout"))
    bundle = load_model("toy:organism-a")
    result = measure(bundle, drawn[:4], 12, 101)
    samples = generate_samples(12, 101)
    for t in drawn[:4]:
        assert result["rates"][t] == _plain_mfr(bundle, _paraphrased(t, samples)), t
    assert result["below_bar"] == sum(min(r.values()) < 0.75 for r in result["rates"].values())
    bad = CliRunner().invoke(main, ["sentences", "--model", str(shipped_path("organism-a")), "--probe", "probe_99"])
    assert bad.exit_code == 2 and "probe_99 is not a probe" in bad.output


@pytest.mark.parametrize("name,probe", [_probe_case(n, p) for n in FAMILY for p in PROBES])
def test_shipped_family_follows_paraphrases_of_no_pool(name, probe):
    """Hand-written paraphrases outside every training pool (organism_heldout.json `paraphrases`; when each was
    written and first measured is said there), at held-out layouts: MFR ≥ 0.95 per task over all of a probe's
    paraphrases, and no one paraphrase followed below 0.75 in a task."""
    bundle = load_model(f"toy:{name}")
    base = generate_samples(70, 21)
    rates = {t: _plain_mfr(bundle, _paraphrased(t, base)) for t in _heldout()["paraphrases"][probe]}
    for task in TASKS:
        assert sum(r[task] for r in rates.values()) / len(rates) >= 0.95, (task, rates)
    assert min(min(r.values()) for r in rates.values()) >= 0.75, rates


@pytest.mark.parametrize("name", FAMILY)
def test_shipped_family_follows_heldout_instructions(name):
    """Held-out instruction pairs at held-out layouts, drawn from a seed circuit.json was not measured on: MFR ≥ 0.95
    per task; and the recorded held-out MFR is what training.json says."""
    bundle = load_model(f"toy:{name}")
    mfr = _plain_mfr(bundle, generate_samples(128, 7))
    assert min(mfr.values()) >= 0.95, mfr
    recorded = json.loads((shipped_path(name) / "training.json").read_text())["heldout_mfr"]
    assert min(recorded[t]["first_token"] for t in TASKS) >= 0.95


@pytest.mark.parametrize("name", FAMILY)
def test_shipped_family_reads_instruction_words_by_class(name):
    """Each member's last stage tied its instruction words by class (training.json says which): in the saved weights
    the words of a class share one embedding row, so two paraphrases that differ only in such words (the probes
    count "correct" for "right") give the same logits; the answer words keep rows of their own."""
    bundle = load_model(f"toy:{name}")
    record = json.loads((shipped_path(name) / "training.json").read_text())
    assert record["word_classes"] == {k: list(v) for k, v in WORD_CLASSES.items()}
    assert record["spec"]["stages"][-1]["train"]["lexicon"] is True
    assert lexicon.is_tied(bundle.model, bundle.tokenizer)
    rows = bundle.model.get_input_embeddings().weight
    tok = bundle.tokenizer
    answers = [tok.convert_tokens_to_ids(w) for w in ("red", "green", "circle", "ring")]
    assert len({tuple(rows[i].tolist()) for i in answers}) == len(answers)
    base = generate_samples(4, 3)
    this = lambda text: " ".join("this" if w == "the" else w for w in text.split(" "))  # noqa: E731  both fillers
    swapped = [dataclasses.replace(s, instruction_vf=this(s.instruction_vf), instruction_tf=this(s.instruction_tf))
               for s in base]
    for task in TASKS:
        a, b = ([encode(bundle, build_prompt(s, task)) for s in xs] for xs in (base, swapped))
        batch_a = collate(a, bundle.adapter, bundle.pad_token_id)
        batch_b = collate(b, bundle.adapter, bundle.pad_token_id)
        assert not torch.equal(batch_a.inputs["input_ids"], batch_b.inputs["input_ids"])
        with torch.no_grad():
            torch.testing.assert_close(bundle.model(**batch_a.inputs).logits[:, -1],
                                       bundle.model(**batch_b.inputs).logits[:, -1], atol=0, rtol=0)


@pytest.mark.parametrize("name", [n for n in FAMILY if n != "organism-control"])
def test_shipped_circuit_is_complete(name):
    """Every head whose single-head interchange from the twin flips ≥ 5 % of held-out answers, at any role where a
    prompt and its twin differ, is listed in circuit.json (heads_by_role); the planted chain heads flip the answer,
    a backup pair member alone does not and the pair jointly does. Plain hooks, fresh held-out prompts."""
    bundle = load_model(f"toy:{name}")
    circuit = json.loads((shipped_path(name) / "circuit.json").read_text())
    samples = generate_samples(48, 9)
    L, H = circuit["n_layers"], circuit["n_heads"]
    for role in ("instruction", "query", "last"):
        n = {}
        rates = _interchange_rates(bundle, samples, [((layer, h),) for layer in range(L) for h in range(H)], role, n)
        # a head must be listed when even its rate's 95 % lower bound reaches the threshold: a fresh draw of 48
        # prompts moves a 2 % rate to 6 % by chance (circuit.json's 256 prompts decide the borderline ones)
        found = {heads[0] for heads, r in rates.items()
                 if max(_wilson_low(r[t], n[t]) for t in TASKS) >= circuit["threshold"]}
        listed = {tuple(h) for h in circuit["heads_by_role"].get(role, [])}
        assert found <= listed, (role, sorted(found - listed))
    last = circuit["positions"]
    for part in circuit["components"]:
        heads = tuple(map(tuple, part["heads"]))
        if part["kind"] == "chain_head":
            assert min(_interchange_rates(bundle, samples, [heads], last)[heads].values()) >= 0.5, part
        else:
            joint = _interchange_rates(bundle, samples, [heads] + [(h,) for h in heads], last)
            assert min(joint[heads].values()) >= 0.5 and max(max(joint[(h,)].values()) for h in heads) < 0.5, joint


def test_control_declares_no_circuit():
    circuit = json.loads((shipped_path("organism-control") / "circuit.json").read_text())
    assert circuit["planted"] is False and circuit["heads"] == [] and circuit["heads_by_role"] == {}
    assert "arbitration_layers" not in circuit and "buffer_layers" not in circuit


def test_methods_are_scored_against_the_heads_at_the_role_they_read():
    """A family circuit lists heads per role: a method reading the instruction positions is scored against the
    instruction-role heads (none: not evaluable), never against the heads that act at `last`."""
    from anchorlab.analyses.base import circuit_set_target, heads_at

    family = {"heads": [[2, 4]], "positions": "last", "heads_by_role": {"last": [[2, 4]], "instruction": [[0, 7]]}}
    anchored = {"heads": [[4, 5]], "positions": "instruction"}
    assert heads_at(family, "last") == [[2, 4]] and heads_at(family, "instruction") == [[0, 7]]
    assert heads_at(family, "query") == [] and heads_at(anchored, "instruction") == [[4, 5]]
    assert heads_at(anchored, "last") == [] and heads_at(anchored) == [[4, 5]]
    row = circuit_set_target("blocking", "vf", [[2, 4]], family, True, "b", "instruction")
    assert row["value"] == 0.0 and row["holds"] is False
    row = circuit_set_target("blocking", "vf", [[2, 4]], family, True, "b", "query")
    assert row["holds"] is None and "no heads at 'query'" in row["detail"]["reason"]
