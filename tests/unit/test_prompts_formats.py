"""Open and two-option prompts (MC²'s formats), instruction positions, roles exact on tiny models."""
import pytest
from tiny_support import ORDER, POSITIONS, sample, squash

from anchorlab.data.prompt_text import MC2_INSTRUCTIONS, OPTION_PROMPT, two_option_samples
from anchorlab.data.sample import ConflictSample
from anchorlab.recipe import PromptSpec
from anchorlab.rows.compiler import compile_rows, prompt_style
from anchorlab.rows.encoding import encode
from anchorlab.rows.prompts import build_prompt
from anchorlab.rows.roles import TEXT_ROLES

pytestmark = pytest.mark.usefixtures("one_thread")

def test_two_option_samples_in_both_orders():
    base = sample(long=False)
    vA, tA = two_option_samples([base], "both")
    assert (vA.id, tA.id) == ("dogs#vA", "dogs#tA")
    assert (vA.answer_vision, vA.answer_text, vA.extra["options"]) == ("A", "B", ("three", "two"))
    assert (tA.answer_vision, tA.answer_text, tA.extra["options"]) == ("B", "A", ("two", "three"))
    assert vA.extra["answers"] == {"vision": "three", "text": "two"} and vA.forms("vision") == ("A",)
    assert [s.id for s in two_option_samples([base], "text_first")] == ["dogs#tA"]
    texts = ConflictSample(**{**base.__dict__, "extra": {"option_texts": {"vision": "3 dogs", "text": "2 dogs"}}})
    assert two_option_samples([texts], "vision_first")[0].extra["options"] == ("3 dogs", "2 dogs")


def test_two_option_prompt_is_mc2s_format():
    base = sample(long=False)
    prompt = build_prompt(two_option_samples([base], "vision_first")[0], "tf")
    expected = (f"Text context: {base.context}\n{MC2_INSTRUCTIONS['tf']}\n{base.question}\n"
                f"A. three\nB. two\n{OPTION_PROMPT}")
    assert prompt.content == expected
    assert prompt.segment("query") == f"{base.question}\nA. three\nB. two\n{OPTION_PROMPT}"
    assert prompt.segment("instruction") == MC2_INSTRUCTIONS["tf"]


def test_user_instructions_and_position_from_the_recipe():
    style = prompt_style(PromptSpec(instructions={"vf": "Trust the picture."}, instruction_position="after_question"))
    prompt = build_prompt(sample(long=False), "vf", style)
    assert prompt.content.endswith(f"{sample(long=False).question}\nTrust the picture.")
    assert build_prompt(sample(long=False), "tf", style).segment("instruction") == MC2_INSTRUCTIONS["tf"]


@pytest.mark.parametrize("fmt", ["open", "two_option"])
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
def test_roles_exact_through_the_chat_template(tiny, family, position, fmt):
    bundle = tiny(family)
    base = sample(position=position)
    variants = two_option_samples([base], "both") if fmt == "two_option" else [base]
    for s in variants:
        for task in ("vf", "tf"):
            prompt = build_prompt(s, task)
            enc = encode(bundle, prompt)
            for role in TEXT_ROLES:
                assert squash(bundle.tokenizer.decode(enc.input_ids[enc.roles[role]])) == squash(prompt.segment(role))
            firsts = [int(enc.roles[r][0]) for r in ORDER[position]]
            lasts = [int(enc.roles[r][-1]) for r in ORDER[position]]
            assert lasts[0] < firsts[1] and lasts[1] < firsts[2]
            assert len(enc.roles["vision"]) > 0 and enc.roles["last"].tolist() == [len(enc.input_ids) - 1]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
def test_two_option_answer_tokens_are_the_letters(tiny, family):
    bundle = tiny(family)
    tok = bundle.tokenizer
    rows = compile_rows(bundle, two_option_samples([sample()], "both"), ["vf", "tf"], prompt_style(PromptSpec()))
    for row in rows:
        space = "" if row.encoded.rendered[-1:].isspace() else " "
        letter = {m: row.sample.answer(m) for m in ("vision", "text")}
        for m in ("vision", "text"):
            assert row.answer_ids[m] == tok(space + letter[m], add_special_tokens=False)["input_ids"][0]
            assert set(row.entities.of(m)) == {tok(t + letter[m], add_special_tokens=False)["input_ids"][0]
                                               for t in ("", " ")}
    by_id = {(r.sample.id, r.task): r for r in rows}
    # the followed answer's letter swaps with the order: vf follows A in #vA and B in #tA
    assert by_id[("sheep#vA", "vf")].answer_ids["vision"] == by_id[("sheep#tA", "tf")].answer_ids["text"]
