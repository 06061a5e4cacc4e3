"""The answer entity dictionary: build rules, manual file, verifiers, coverage, determinism, CLI."""
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from data_support import write_jsonl

from anchorlab.cli import main
from anchorlab.data import dictionary_file
from anchorlab.data.sources import load_dataset
from anchorlab.dictionary import build as dictionary
from anchorlab.dictionary.coverage import coverage
from anchorlab.dictionary.entities import entity_ids
from anchorlab.dictionary.verifiers import from_callable, from_url
from anchorlab.errors import UserError
from anchorlab.recipe import DataSpec

CANDIDATES = {"red": ["reddish", "ruby", "crimson", "scarlet"], "blue": ["azure", "navy", "cobalt"]}


def stub(answer):
    return list(CANDIDATES.get(answer, []))


def keep_short(answer, candidates):  # a verifier: --verifier tests.test_dictionary:keep_short
    return [c for c in candidates if len(c) <= 5]


def returns_text(answer, candidates):
    return "ruby"


def broken(answer, candidates):
    return 1 / 0


def test_build_orders_caps_and_lets_manual_win():
    manual = {"red": {"add": ["rouge", "红色"], "remove": ["ruby"]}, "Blue": {"add": ["bleu"], "remove": []}}
    forms = dictionary.build(["red", "blue", "red"], max_forms=4, manual=manual, candidates=stub)
    assert forms == {"blue": ["blue", "bleu", "azure", "navy"], "red": ["red", "rouge", "红色", "reddish"]}
    many = {"red": {"add": ["a1", "a2", "a3", "a4"], "remove": []}}
    assert dictionary.build(["red"], max_forms=3, manual=many, candidates=stub)["red"] == [
        "red",
        "a1",
        "a2",
        "a3",
        "a4",
    ]
    assert dictionary.build(["red"], max_forms=1, candidates=stub)["red"] == ["red"]


def test_verifier_filters_candidates_only():
    manual = {"red": {"add": ["vermilion"], "remove": []}}
    forms = dictionary.build(["red"], 10, manual, from_callable("test_dictionary:keep_short"), stub)
    assert forms["red"] == ["red", "vermilion", "ruby"]  # manual kept despite the verifier
    with pytest.raises(UserError, match="--verifier 'nope': expected MODULE:FUNCTION"):
        from_callable("nope")
    with pytest.raises(UserError, match="verifier test_dictionary:returns_text must return a list .* 'ruby'"):
        dictionary.build(["red"], 10, None, from_callable("test_dictionary:returns_text"), stub)
    with pytest.raises(UserError, match="verifier test_dictionary:broken failed on answer 'red': ZeroDivisionError"):
        dictionary.build(["red"], 10, None, from_callable("test_dictionary:broken"), stub)


def test_http_verifier_speaks_openai_chat_completions():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body))
            reply = {"choices": [{"message": {"content": 'Keep these: ["crimson", "scarlet", "invented"]'}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        verify = from_url(f"http://127.0.0.1:{server.server_port}/v1", model="checker")
        forms = dictionary.build(["red"], 10, None, verify, stub)
    finally:
        server.shutdown()
    assert forms["red"] == ["red", "crimson", "scarlet"]  # only real candidates, in candidate order
    path, body = seen[0]
    assert path == "/v1/chat/completions" and body["model"] == "checker" and body["temperature"] == 0
    assert '"red"' in body["messages"][0]["content"] and "reddish" in body["messages"][0]["content"]
    with pytest.raises(UserError, match="--verifier-url http://127.0.0.1:9/chat/completions: no usable reply"):
        from_url("http://127.0.0.1:9", timeout=2)("red", ["ruby"])


class TwoLetters:
    """A tokenizer whose first token is a word's first two letters (with a marker after a space)."""

    unk_token_id = None

    def __call__(self, text, add_special_tokens=False):
        word = text.split()[0]
        return {"input_ids": [hash(("Ġ" if text.startswith(" ") else "") + word[:2]) % 10007]}


def test_shared_first_tokens_are_dropped_with_a_warning_and_counted(caplog):
    forms = {"red": ["red", "reddish", "ruby", "blush"], "blue": ["blue", "azure", "navy"]}
    report = coverage(TwoLetters(), "two-letters", [("s1", "red", "blue"), ("s2", "blue", "navy blue")], forms)
    # s1: "blush" reaches "bl" like "blue": both dropped, red keeps 3 forms, blue 2;
    # s2: "navy blue" (no entry: the answer alone) vs blue's "navy": both dropped, text keeps none
    assert report.slots == 4 and report.dropped_forms == 4 and report.samples_with_drops == 2
    assert report.at_least == {1: 3, 3: 1, 10: 0} and report.unusable_samples == ["s2"]
    lines = "\n".join(report.lines())
    assert ">=  1 usable forms:     3 ( 75.0%)" in lines and ">=  3 usable forms:     1 ( 25.0%)" in lines
    assert "samples a run would leave out (an answer with no usable form): 1: s2" in lines
    with caplog.at_level(logging.WARNING, logger="anchorlab"):
        ents = entity_ids(TwoLetters(), forms["red"], forms["blue"], "s1")
    assert set(ents.dropped) == {"blush", "blue"} and "dropped forms sharing a first token" in caplog.text


def test_manual_file_and_dictionary_file_errors_name_the_entry(tmp_path):
    manual = tmp_path / "m.yaml"
    manual.write_text("red: [rouge]\nblue: {add: [bleu], remove: [navy]}\n")
    assert dictionary.load_manual(manual) == {"red": {"add": ["rouge"], "remove": []},
                                              "blue": {"add": ["bleu"], "remove": ["navy"]}}
    manual.write_text("red: {add: [rouge], drop: [x]}\n")
    with pytest.raises(UserError, match=r"m.yaml: entry 'red': expected a list of forms"):
        dictionary.load_manual(manual)
    plain = tmp_path / "d.json"
    plain.write_text(json.dumps({"red": ["red", "crimson"], "blue": "azure"}))
    with pytest.raises(UserError, match=r"d.json: entry 'blue': expected a list of non-empty strings"):
        dictionary_file.load(plain)


def test_run_picks_up_the_dictionary_beside_the_data(tmp_path):
    path = write_jsonl(tmp_path)
    dictionary.write(
        dictionary_file.default_path(path), {"anchorlab_dictionary": 1, "forms": {"red": ["red", "crimson"]}}
    )
    samples, info = load_dataset(DataSpec(source="jsonl", path=str(path)), seed=0)
    assert samples[0].forms("vision") == ("red", "crimson") and samples[0].forms("text") == ("blue",)
    assert info["data_dictionary"] == str(tmp_path / "samples.dictionary.json")
    with pytest.raises(
        UserError, match=r"data.dictionary: no file .*missing.json \(build one with: anchorlab dict build"
    ):
        load_dataset(DataSpec(source="jsonl", path=str(path), dictionary=str(tmp_path / "missing.json")), seed=0)


def test_cli_build_is_deterministic_and_reports_coverage(tmp_path, tiny_paths):
    path = write_jsonl(tmp_path, images=False)
    manual = tmp_path / "manual.yaml"
    manual.write_text("red: [红色]\n")
    args = ["dict", "build", str(path), "--manual", str(manual), "--max-forms", "5", "--model", tiny_paths["llava"]]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    out = tmp_path / "samples.dictionary.json"
    written = out.read_bytes()
    doc = json.loads(written)
    assert doc["forms"]["red"][:2] == ["red", "红色"] and all(len(v) <= 5 for v in doc["forms"].values())
    assert doc["forms"]["eating"][:2] == ["eating", "eat"]  # a WordNet lemma variant
    assert doc["candidates"] == "WordNet 3.0 via NLTK" and doc["manual"] == "manual.yaml"
    assert f"coverage with the tokenizer of {tiny_paths['llava']}: 6 answers (3 samples × 2)" in first.output
    assert ">=  1 usable forms:" in first.output and ">= 10 usable forms:     0" in first.output
    second = CliRunner().invoke(main, [*args, "--force"])
    assert second.exit_code == 0 and out.read_bytes() == written  # byte-identical rebuild


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "conflicts"


def test_dict_build_never_overwrites_and_force_keeps_every_form(tmp_path, caplog):
    """The shipped example's dictionary (built with --manual manual.yaml) is refused; with --force it is
    rebuilt without --manual, after hand edits: nothing it held is dropped."""
    for name in ("samples.jsonl", "samples.dictionary.json", "manual.yaml"):
        (tmp_path / name).write_bytes((EXAMPLES / name).read_bytes())
    data, target = tmp_path / "samples.jsonl", tmp_path / "samples.dictionary.json"
    shipped = target.read_bytes()
    refused = CliRunner().invoke(main, ["dict", "build", str(data), "--model", "toy:anchored"])
    assert refused.exit_code == 2 and refused.output == (
        f"error: {target} already exists and may hold hand edits; pass --out PATH to write elsewhere, or --force to "
        "rebuild it (every form it holds is kept; --manual and WordNet only add)\n")
    assert target.read_bytes() == shipped
    doc = json.loads(shipped)
    doc["forms"]["blue"].append("cobalt")  # a hand edit: a form of its own...
    doc["forms"]["teal"] = ["teal", "bluish green"]  # ...and an answer the data does not have
    target.write_text(json.dumps(doc))
    manual = tmp_path / "more.yaml"
    manual.write_text("blue: {add: [bleu], remove: [navy, cobalt]}\n")  # removes a hand-edited form: the file wins
    rebuilt = CliRunner().invoke(main, ["dict", "build", str(data), "--max-forms", "3", "--manual", str(manual),
                                        "--force"])
    assert rebuilt.exit_code == 0, rebuilt.output
    forms = json.loads(target.read_text())["forms"]
    assert forms["blue"] == ["blue", "bleu", "azure", "navy", "cobalt"]  # answer, --manual, the file's forms
    assert forms["teal"] == ["teal", "bluish green"]
    for answer, held in doc["forms"].items():  # every form the file held (manual.yaml's included) is still there
        assert forms[answer][: len(held) + (answer == "blue")] == (
            [answer, "bleu", *held[1:]] if answer == "blue" else held)
    assert "removes 'navy' from 'blue', but the existing dictionary holds it: kept" in caplog.text
    assert "merged with the existing samples.dictionary.json: all 24 of its forms kept" in rebuilt.output  # 7 × 3 + 3
    elsewhere = CliRunner().invoke(main, ["dict", "build", str(data), "--out", str(tmp_path / "new.json")])
    assert elsewhere.exit_code == 0 and (tmp_path / "new.json").is_file()


SHARED_MC2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "mc2" / "evaluate_final.json"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MC2.is_file(), reason="MC² text data not present")
def test_dict_build_over_all_2000_mc2_samples_offline(tmp_path, tiny_paths):
    out = tmp_path / "mc2.dictionary.json"
    result = CliRunner().invoke(main, ["dict", "build", str(SHARED_MC2), "--out", str(out),
                                       "--model", tiny_paths["qwen2_5_vl"]])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["samples"] == 2000 and doc["answers"] == len(doc["forms"]) > 700
    assert all(1 <= len(v) <= 10 and v[0] == k for k, v in doc["forms"].items())
    assert "4000 answers (2000 samples × 2)" in result.output
