"""batch_size: auto with a memory_budget (issue 13): the chosen batches are predicted to fit, and a
run given a small budget stays under it, measured as the process's peak RSS above the loaded model."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from anchorlab.engines.autobatch import choose, parse_bytes, predicted_bytes
from anchorlab.errors import UserError
from anchorlab.models.tiny import tiny_model_path
from anchorlab.rows.batching import collate

HERE = Path(__file__).resolve().parents[1]  # tests/, where autobatch_worker.py is
# a text model wide enough that activations, not Python, dominate memory
WIDE = dict(num_layers=4, num_heads=8, hidden_size=512, intermediate_size=16384)
BUDGET = "320MiB"
RECIPE = """
name: budget
model: {{id: "{model}"}}
data: {{source: toy, n_samples: 32, tasks: [vf, tf], filter: all}}
analyses:
  - {{kind: knockout, layers: [1, 2], n_bootstrap: 10, pathways: [context->instruction, query->last,
      context->query, instruction->last]}}
  - {{kind: signal, n_bootstrap: 10}}
batch_size: {batch}
memory_budget: {budget}
"""


def test_parse_bytes():
    assert parse_bytes("512MiB") == 512 * 2**20 and parse_bytes("1.5GB") == 1_500_000_000 and parse_bytes(1024) == 1024
    with pytest.raises(UserError, match="memory_budget 'lots'"):
        parse_bytes("lots")


@pytest.mark.slow
def test_small_budget_is_never_exceeded(tmp_path):
    model = tiny_model_path("qwen2", **WIDE)
    data = HERE.parent / "examples" / "conflicts" / "samples.jsonl"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(model=model, data=data, batch="auto", budget=BUDGET))
    out = subprocess.run([sys.executable, str(HERE / "autobatch_worker.py"), str(recipe), str(tmp_path / "out")],
                         check=True, capture_output=True, text=True, cwd=HERE.parent)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    added = res["peak_mib"] - res["base_mib"]
    print("autobatch", res, "added MiB", added)
    assert added <= parse_bytes(BUDGET) / 2**20, res
    assert res["batch_size_used"]["knockout"] >= 1

    # the budget mattered: 32 prompts with 16 variants per pass are predicted not to fit
    from anchorlab.data.sources import load_dataset
    from anchorlab.models.loading import load_model
    from anchorlab.recipe import load_recipe
    from anchorlab.rows.compiler import compile_rows
    from anchorlab.rows.prompts import PromptStyle

    r, _ = load_recipe(recipe)
    bundle = load_model(str(model))
    samples, _ = load_dataset(r.data, 0)
    rows = compile_rows(bundle, samples, ["vf", "tf"], PromptStyle(), on_unusable="skip")
    from anchorlab.analyses import REGISTRY, Context

    spec = r.analyses[0]
    analysis = REGISTRY[spec.kind](spec, Context(bundle=bundle, backend=None, seed=0))
    longest = sorted(rows, key=lambda x: len(x.encoded.input_ids), reverse=True)[:32]
    batch = collate([x.encoded for x in longest], bundle.adapter, bundle.pad_token_id)
    assert predicted_bytes(bundle, analysis, batch, longest, 16) > parse_bytes(BUDGET)
    n, g = choose(bundle, rows, analysis, parse_bytes(BUDGET))
    assert n * g < 32 * 16 and res["batch_size_used"]["knockout"] == n


FREED = """
import sys, torch
from anchorlab.backends.local import return_freed_tensors_to_os
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
if sys.argv[1] == "set":
    assert return_freed_tensors_to_os()
big = torch.ones(30 * 2**18); del big  # a freed 30 MiB tensor: glibc raises its mmap threshold to it
before = rss()
xs = [torch.ones(2**20) for _ in range(10)]; del xs  # ten 4 MiB tensors, freed
print(rss() - before)
"""


@pytest.mark.slow
def test_freed_cpu_tensors_leave_the_process():
    """The local backend's allocator setting is what lets a budget hold: without it the ten freed
    4 MiB tensors stay in the heap (the control proves the test can tell)."""
    def retained(mode):
        out = subprocess.run([sys.executable, "-c", FREED, mode], check=True, capture_output=True, text=True)
        return float(out.stdout.split()[-1])

    assert retained("set") < 4 and retained("default") >= 36


def test_impossible_budget_is_a_clear_error(tmp_path):
    from anchorlab.api import run

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_path("qwen2", **WIDE),
                                    data=HERE.parent / "examples" / "conflicts" / "samples.jsonl",
                                    batch="auto", budget="1KiB"))
    with pytest.raises(UserError, match="less than one prompt needs"):
        run(recipe, out=tmp_path / "out")
