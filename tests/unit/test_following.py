"""Follow/fail: answer matching, greedy generation on every family, labels stored once and reused."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr
from data_support import write_jsonl
from tiny_support import sample

import anchorlab
from anchorlab.data.prompt_text import two_option_samples
from anchorlab.errors import UserError
from anchorlab.labels import capture
from anchorlab.labels import rules as following
from anchorlab.rows.batching import collate
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt


@pytest.mark.parametrize("text,expected", [
    ("Red.", "follows"),
    ("The car is RED", "follows"),
    ("crimson, clearly", "follows"),
    ("It is blue.", "fails"),
    ("red or blue", "neither"),
    ("reddish-brown? no: redness", "neither"),  # whole words only
    ("I cannot tell.", "neither"),
    ("the   dark  red", "follows"),
])
def test_classify_open_answers(text, expected):
    assert following.classify_answer(text, ("red", "crimson", "dark red"), ("blue", "navy")) == expected


def test_single_letters_match_case_sensitively():
    assert following.classify_answer("A. two dogs", ("A", "two dogs"), ("B", "three dogs")) == "follows"
    assert following.classify_answer("a dog. B", ("A",), ("B",)) == "fails"  # the article is not option A
    assert following.classify_answer("The answer is B.", ("A",), ("B",)) == "fails"


def test_answer_forms_of_two_option_rows():
    vA = two_option_samples([sample(long=False)], "vision_first")[0]  # A = three (vision), B = two (text)
    row = SimpleNamespace(sample=vA, followed="text", competitor="vision")
    assert following.answer_forms(row) == (("B", "two"), ("A", "three"))


def manual_greedy(bundle, batch, steps):
    """Reference: a full forward per step, positions from the mask, image-token types extended with 0."""
    inputs = dict(batch.inputs)
    ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
    inputs.pop("position_ids", None)
    out = []
    for step in range(steps):
        kw = dict(inputs)
        if "mm_token_type_ids" in kw:
            kw["mm_token_type_ids"] = torch.cat(
                [kw["mm_token_type_ids"], torch.zeros(len(ids), step, dtype=torch.long)], 1
            )
        if bundle.adapter.explicit_position_ids:
            kw["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            token = bundle.model(input_ids=ids, attention_mask=mask, **kw).logits[:, -1].argmax(-1)
        out.append(token)
        ids = torch.cat([ids, token[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return torch.stack(out, 1)


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl", "internvl", "qwen2"])
def test_generate_answers_is_greedy_and_padding_safe(tiny, family, one_thread, monkeypatch):
    bundle = tiny(family)
    encoded = [encode(bundle, build_prompt(sample(True), "vf")), encode(bundle, build_prompt(sample(False), "tf"))]
    batch = collate(encoded, bundle.adapter, bundle.pad_token_id)
    tokens = {}
    original = bundle.model.generate

    def spy(**kwargs):
        out = original(**kwargs)
        tokens["ids"] = out[:, kwargs["input_ids"].shape[1]:]
        return out

    monkeypatch.setattr(bundle.model, "generate", spy)
    texts = capture.generate_answers(bundle, batch, max_new_tokens=3)
    reference = manual_greedy(bundle, batch, 3)
    assert torch.equal(tokens["ids"], reference)  # (these tiny models emit no EOS in 3 steps)
    assert texts == [t.strip() for t in bundle.tokenizer.batch_decode(reference, skip_special_tokens=True)]
    for i, e in enumerate(encoded):  # batched (left-padded) == alone
        alone = capture.generate_answers(bundle, collate([e], bundle.adapter, bundle.pad_token_id), 3)
        assert alone == [texts[i]]
    # through a backend (nnsight traces, what recipes use): the same answers
    from anchorlab.backends import LocalBackend

    assert capture.generate_answers(bundle, batch, 3, backend=LocalBackend(bundle)) == texts


def recipe_overrides(model_path, **extra):
    items = {"model.id": model_path, "model.attn_implementation": "eager", "data.max_new_tokens": 3,
             "analyses.0.n_bootstrap": 20, "batch_size": 4, **extra}
    return [f"{k}={v}" for k, v in items.items()]


@pytest.fixture
def dataset(tmp_path):
    rows = [
        {"id": "s1", "image": "img/1.png", "question": "What color is the car?", "context": "The car is blue.",
         "answer_vision": "red", "answer_text": "blue"},
        {"id": "s2", "image": "img/2.png", "question": "What color is the bus?", "context": "The bus is red.",
         "answer_vision": "blue", "answer_text": "red"},
        {"id": "s3", "image": "img/3.png", "question": "What color is the cup?", "context": "The cup is yellow.",
         "answer_vision": "green", "answer_text": "yellow"},
    ]
    path = write_jsonl(tmp_path / "data", rows)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: f\nmodel: {{id: x}}\ndata: {{source: jsonl, path: {path}, filter: follows}}\n"
                      "analyses: [{kind: signal}]\n")
    return recipe


def test_labels_are_stored_and_reused_without_generating(tmp_path, tiny, dataset, one_thread, monkeypatch):
    calls = []

    def always_red(bundle, batch, max_new_tokens=16, **kw):  # the model "answers red" to every prompt
        calls.append(len(batch))
        return ["Red." for _ in range(len(batch))]

    monkeypatch.setattr(capture, "generate_answers", always_red)
    model = str(tiny("qwen2_5_vl").path)
    first = anchorlab.run(dataset, out=tmp_path / "one", overrides=recipe_overrides(model))["signal"]
    assert sum(calls) == 6  # 3 samples × 2 tasks, once each
    labels = xr.open_dataset(tmp_path / "one" / "labels.nc")
    expected = {"vf": ["follows", "fails", "neither"], "tf": ["fails", "follows", "neither"]}
    for task, values in expected.items():
        assert list(labels["label"].sel(task=task).values) == values
    assert (labels["answer"].values == "Red.").all()
    assert labels["counts"].sel(task="vf").values.tolist() == [1, 1, 1]
    assert labels.attrs["label_rule"] == "generation" and labels.attrs["count_tf_follows"] == 1
    assert labels.attrs["model_id"] == model
    np.testing.assert_array_equal(first["selected"].values, labels["label"].values == "follows")
    assert first.attrs["data_filter_counts"] == "vf: 1 follows, 1 fails, 1 neither; tf: 1 follows, 1 fails, 1 neither"

    calls.clear()
    second = anchorlab.run(dataset, out=tmp_path / "two", overrides=recipe_overrides(
        model, **{"data.filter": "fails", "data.labels": tmp_path / "one"}))["signal"]
    assert calls == [] and not (tmp_path / "two" / "labels.nc").exists()
    np.testing.assert_array_equal(second["selected"].values, labels["label"].values == "fails")
    assert second.attrs["data_labels"] == str(tmp_path / "one" / "labels.nc")
    assert second.attrs["data_filter"] == "fails" and second.attrs["data_filter_rule"] == "generation"

    with pytest.raises(UserError, match=r"data.labels: .* was computed with data.prompt = "
                       r".*\"instruction_position\": null.*before_context"):
        anchorlab.run(dataset, out=tmp_path / "three", overrides=recipe_overrides(
            model, **{"data.labels": tmp_path / "one", "data.prompt.instruction_position": "before_context"}))
    with pytest.raises(UserError, match=r"data.labels: .* was computed with model.id = "):
        anchorlab.run(dataset, out=tmp_path / "four", overrides=recipe_overrides(
            str(tiny("llava").path), **{"data.labels": tmp_path / "one"}))
    assert calls == []


def test_first_token_rule_agrees_with_the_signal_decision(tmp_path, tiny, dataset, one_thread):
    model = str(tiny("llava").path)
    result = anchorlab.run(dataset, out=tmp_path / "ft", overrides=recipe_overrides(
        model, **{"data.filter": "all", "data.filter_rule": "first_token"}))["signal"]
    assert result.attrs["data_filter"] == "all"
    try:
        anchorlab.run(dataset, out=tmp_path / "ft2", overrides=recipe_overrides(
            model, **{"data.filter_rule": "first_token"}))
    except UserError as exc:  # a random model may follow nothing in one task: the labels are still stored
        assert "no sample passes the data filter" in str(exc)
    labels = xr.open_dataset(tmp_path / "ft2" / "labels.nc")
    assert labels.attrs["label_rule"] == "first_token" and "margin" in labels
    # labels.py's first-token margin and the signal analysis' own decision margin: same rule, same answer
    np.testing.assert_array_equal(labels["label"].values == "follows", result["followed_first_token"].values)
    assert set(np.unique(labels["label"].values)) <= {"follows", "fails"}


def test_resumed_run_keeps_its_labels(tmp_path, tiny, dataset, one_thread, monkeypatch):
    from anchorlab.analyses.signal import SignalAnalysis

    calls = []
    monkeypatch.setattr(capture, "generate_answers",
                        lambda bundle, batch, max_new_tokens=16, **kw: calls.append(len(batch)) or ["red"] * len(batch))
    original = SignalAnalysis.run_batch

    def interrupted(self, batch, rows):
        raise KeyboardInterrupt("simulated")

    monkeypatch.setattr(SignalAnalysis, "run_batch", interrupted)
    overrides = recipe_overrides(str(tiny("qwen2_5_vl").path))
    with pytest.raises(KeyboardInterrupt):
        anchorlab.run(dataset, out=tmp_path / "run", overrides=overrides)
    assert sum(calls) == 6 and (tmp_path / "run" / "labels.nc").is_file()
    monkeypatch.setattr(SignalAnalysis, "run_batch", original)
    calls.clear()
    ds = anchorlab.run(dataset, out=tmp_path / "run", overrides=overrides, resume=True)["signal"]
    assert calls == [] and ds.attrs["data_filter_counts"].startswith("vf: 1 follows, 1 fails, 1 neither")
