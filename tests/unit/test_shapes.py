"""Real shapes (issue 13): the published configs, checked against the hub models' parameter counts;
tokenizers covering the vocabulary with specials at the hub's ids; a build loads through
from_pretrained and encodes prompts whose vision-token counts follow the image-processor settings."""
import json

import pytest
import torch
import transformers as T
from click.testing import CliRunner

from anchorlab.cli import main
from anchorlab.models.loading import load_model
from anchorlab.models.shapes import MODEL_CLASSES, SHAPES, shape_config, shape_tokenizer

# parameter counts of the hub checkpoints (model cards / safetensors index)
PUBLISHED = {"qwen2.5-vl-7b": 8_292_166_656, "qwen2.5-7b": 7_615_616_512, "llava-1.5-7b": 7_063_427_072,
             "internvl3-8b": 7.94e9}


@pytest.mark.parametrize("name", list(SHAPES))
def test_full_depth_parameter_count_is_the_hub_models(name):
    config = shape_config(name)
    with torch.device("meta"):
        model = getattr(T, MODEL_CLASSES[SHAPES[name].family])(config)
    n = sum(p.numel() for p in model.parameters())
    if isinstance(PUBLISHED[name], int):
        assert n == PUBLISHED[name]
    else:  # the model card rounds to 7.94B
        assert abs(n - PUBLISHED[name]) < 0.005e9


def test_real_dimensions():
    q = shape_config("qwen2.5-vl-7b")
    t = q.text_config
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads, t.vocab_size) == \
        (3584, 28, 28, 4, 152064)
    assert t.rope_parameters["mrope_section"] == [16, 24, 24] and t.rope_parameters["rope_theta"] == 1e6
    assert q.vision_config.depth == 32 and q.vision_config.fullatt_block_indexes == [7, 15, 23, 31]
    small = shape_config("qwen2.5-vl-7b", layers=2, vision_layers=1)
    assert small.text_config.num_hidden_layers == 2 and small.vision_config.fullatt_block_indexes == [0]
    assert small.text_config.hidden_size == 3584  # few layers, full width
    i = shape_config("internvl3-8b")
    assert (i.image_seq_length, i.downsample_ratio, i.text_config.vocab_size) == (256, 0.5, 151674)
    v = shape_config("llava-1.5-7b")
    assert (v.text_config.hidden_size, v.text_config.num_hidden_layers, v.image_seq_length) == (4096, 32, 576)
    assert (v.vision_config.image_size // v.vision_config.patch_size) ** 2 == 576


HUB_IDS = {  # special tokens at the hub tokenizers' ids
    "qwen2.5-vl-7b": {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
                      "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|image_pad|>": 151655},
    "internvl3-8b": {"<|im_end|>": 151645, "<img>": 151665, "</img>": 151666, "<IMG_CONTEXT>": 151667},
    "llava-1.5-7b": {"<unk>": 0, "<s>": 1, "</s>": 2, "<image>": 32000, "<pad>": 32001},
}


@pytest.mark.parametrize("name", list(HUB_IDS))
def test_tokenizer_covers_the_vocabulary_with_hub_special_ids(name):
    tok = shape_tokenizer(SHAPES[name])
    vocab = shape_config(name).text_config.vocab_size
    assert SHAPES[name].n_regular + len(SHAPES[name].specials) <= vocab
    assert len(tok) == SHAPES[name].n_regular + len(SHAPES[name].specials)
    for token, idx in HUB_IDS[name].items():
        assert tok.convert_tokens_to_ids(token) == idx
    ids = tok("The picture shows two people walking.", add_special_tokens=False)["input_ids"]
    assert max(ids) < 16384 and tok.decode(ids) == "The picture shows two people walking."
    assert tok.decode([SHAPES[name].n_regular - 1])  # the last filler decodes


@pytest.mark.slow
def test_cli_build_loads_through_from_pretrained(tmp_path):
    """`anchorlab shapes build` (1 layer of LLaVA-1.5-7B at full width, the smallest vocabulary)."""
    out = tmp_path / "llava"
    result = CliRunner().invoke(main, ["shapes", "build", "llava-1.5-7b", "--out", str(out), "--layers", "1",
                                       "--vision-layers", "2"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "anchorlab_shape.json").read_text())
    assert meta["shape"] == "llava-1.5-7b" and meta["random_weights"]
    bundle = load_model(str(out), dtype="bfloat16")
    assert bundle.adapter.family == "llava" and bundle.n_layers == 1 and bundle.n_heads == 32
    assert bundle.model.dtype == torch.bfloat16 and bundle.model.lm_head.weight.shape == (32064, 4096)
    from tiny_support import sample

    from anchorlab.rows.compiler import compile_rows
    from anchorlab.rows.prompts import PromptStyle

    rows = compile_rows(bundle, [sample(True, size=(500, 400))], ["vf"], PromptStyle())
    assert len(rows[0].encoded.roles["vision"]) == 576  # CLIP ViT-L/14 at 336 px


def test_cli_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["shapes", "build", "qwen-nope", "--out", "/tmp/never"])
    assert result.exit_code == 2 and "unknown shape 'qwen-nope'" in result.output
    result = CliRunner().invoke(main, ["shapes", "build", "qwen2.5-7b", "--out", "/tmp/never", "--layers", "0"])
    assert result.exit_code == 2 and "--layers 0: qwen2.5-7b (Qwen/Qwen2.5-7B-Instruct) has 28 decoder layers; " \
        "give 1..28" in result.output
    out = tmp_path / "deep"
    result = CliRunner().invoke(main, ["shapes", "build", "qwen2.5-vl-7b", "--out", str(out), "--layers", "99"])
    assert result.exit_code == 2 and "--layers 99: qwen2.5-vl-7b (Qwen/Qwen2.5-VL-7B-Instruct) has 28 decoder " \
        "layers; give 1..28" in result.output and "Traceback" not in result.output
    assert not out.exists()  # refused before anything is written
    for name, flag, full in (("qwen2.5-vl-7b", "--vision-layers", 32), ("llava-1.5-7b", "--layers", 32),
                             ("internvl3-8b", "--vision-layers", 24)):
        result = CliRunner().invoke(main, ["shapes", "build", name, "--out", str(out), flag, str(full + 1)])
        assert result.exit_code == 2 and f"has {full} " in result.output and f"give 1..{full}" in result.output
    result = CliRunner().invoke(main, ["shapes", "build", "qwen2.5-7b", "--out", str(out), "--vision-layers", "2"])
    assert result.exit_code == 2 and "qwen2.5-7b has no vision tower" in result.output
    assert not out.exists()
