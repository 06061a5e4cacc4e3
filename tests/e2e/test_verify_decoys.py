"""verify can fail: one real study on the organism, scored against its circuit and against random decoys.

Every target reads the circuit, so decoy circuits (random heads; separately, random layer roles) must
almost never hold one (false-positive rate <= 5% per target over 20 decoys each), the true circuit must
hold the targets its method detects, and a model without the circuit (the unplanted control) must
hold none of them."""
from __future__ import annotations

import json
import random

import pytest

pytestmark = pytest.mark.slow

STUDY = """name: study
model: {{id: "{model}"}}
data: {{source: {source}, n_samples: 32, filter: follows, filter_rule: first_token}}
analyses:
  - {{kind: signal, n_bootstrap: 200}}
  - {{kind: knockout, n_bootstrap: 200}}
  - {{kind: attribution, n_bootstrap: 200}}
  - {{kind: heads_block, n_heads: [{g}], seeds: 4, rule: first_token, n_bootstrap: 200, general_check: false}}
  - {{kind: head_patching, n_bootstrap: 200, positions: {positions}}}
batch_size: 16
"""
N_DECOYS, FPR = 20, 0.05


def run_study(tmp_path_factory, model: str, g: int, source: str = "organism", positions: str = "instruction"):
    import anchorlab

    folder = tmp_path_factory.mktemp(model.replace(":", "_"))
    (folder / "study.yaml").write_text(STUDY.format(model=model, g=g, source=source, positions=positions))
    anchorlab.run(folder / "study.yaml", out=folder / "out")
    return folder / "out"


@pytest.fixture(scope="module")
def organism(tmp_path_factory):
    from anchorlab.toy import shipped_path

    circuit = json.loads((shipped_path("anchored") / "circuit.json").read_text())
    return run_study(tmp_path_factory, "toy:anchored", len(circuit["heads"])), circuit


def score(run_dir, circuit: dict, tmp_path, name: str) -> list[dict]:
    from anchorlab.report.verify import verify

    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(circuit))
    return verify(run_dir, path)["results"]


def head_decoys(circuit: dict, n: int, seed: int = 0) -> list[dict]:
    """Random head sets of the circuit's size that share no head with it; layer roles kept."""
    rng = random.Random(seed)
    true = {tuple(h) for h in circuit["heads"]}
    pool = [(l, h) for l in range(circuit["n_layers"]) for h in range(circuit["n_heads"]) if (l, h) not in true]
    out = []
    for _ in range(n):
        heads = [list(x) for x in sorted(rng.sample(pool, len(true)))]
        by_role = {"heads_by_role": {circuit["positions"]: heads}} if "heads_by_role" in circuit else {}
        out.append(dict(circuit, heads=heads, **by_role))
    return out


def layer_decoys(circuit: dict, n: int, seed: int = 1) -> list[dict]:
    """Random buffer and arbitration layer sets of the circuit's sizes, each differing from the true set."""
    rng = random.Random(seed)
    layers = list(range(circuit["n_layers"]))
    out = []
    while len(out) < n:
        decoy = dict(circuit)
        for key in ("buffer_layers", "arbitration_layers"):
            pick = sorted(rng.sample(layers, len(circuit[key])))
            while pick == sorted(circuit[key]):
                pick = sorted(rng.sample(layers, len(circuit[key])))
            decoy[key] = pick
        out.append(decoy)
    return out


def layer_matched_decoys(circuit: dict, n: int, seed: int = 2) -> list[dict]:
    """Random heads with the circuit's number of heads in each of its layers, at every role of heads_by_role
    (never the true set): decoys that a score favouring whole layers (layer 0 at the instruction) cannot tell
    from the circuit."""
    rng, out = random.Random(seed), []
    while len(out) < n:
        by_role = {}
        for role, heads in circuit["heads_by_role"].items():
            by_role[role] = sorted([layer, h] for layer in sorted({x[0] for x in heads})
                                   for h in rng.sample(range(circuit["n_heads"]), sum(x[0] == layer for x in heads)))
        if all(sorted(map(list, circuit["heads_by_role"][r])) != by_role[r] for r in by_role):
            out.append(dict(circuit, heads=by_role.get(circuit["positions"], []), heads_by_role=by_role))
    return out


def holding(rows: list[dict], level: str) -> dict[tuple, bool]:
    return {(r["target"], r["task"]): bool(r["holds"]) for r in rows if r["level"] == level}


def false_positive_rates(run_dir, decoys: list[dict], tmp_path, level: str) -> dict[tuple, float]:
    """(target, task) -> the share of `decoys` for which the target holds at `level`."""
    counts: dict[tuple, int] = {}
    for i, decoy in enumerate(decoys):
        for key, holds in holding(score(run_dir, decoy, tmp_path, f"decoy{i}"), level).items():
            counts[key] = counts.get(key, 0) + holds
    return {k: v / len(decoys) for k, v in counts.items()}


def test_true_circuit_holds_what_its_methods_detect(organism, tmp_path):
    run_dir, circuit = organism
    rows = score(run_dir, circuit, tmp_path, "true")
    by = {(r["target"], r["task"]): r for r in rows}
    for task in ("vf", "tf"):
        for name in ("attribution_head_auc", "patching_head_auc", "attribution_patching_head_auc", "blocking",
                     "knockout_arbitration_auc"):
            assert by[(name, task)]["holds"], by[(name, task)]
    print(json.dumps([(r["target"], r["task"], r["value"], r["holds"]) for r in rows]))


@pytest.mark.parametrize("level,make", [("heads", head_decoys), ("layers", layer_decoys)])
def test_decoy_circuits_rarely_hold(organism, tmp_path, level, make):
    run_dir, circuit = organism
    rates = false_positive_rates(run_dir, make(circuit, N_DECOYS), tmp_path, level)
    assert rates, f"no {level}-level target was scored"
    print(level, "false-positive rates", rates)
    assert all(rate <= FPR for rate in rates.values()), rates


# The organism family (SIIT-trained; circuits at `last`, measured by single-head interchange): the same study on
# held-out instructions, with head patching at the circuits' role.
@pytest.fixture(scope="module")
def family_a(tmp_path_factory):
    from anchorlab.toy import shipped_path

    circuit = json.loads((shipped_path("organism-a") / "circuit.json").read_text())
    return run_study(tmp_path_factory, "toy:organism-a", len(circuit["heads"]), "organism-heldout", "last"), circuit


@pytest.fixture(scope="module")
def family_control(tmp_path_factory):
    return run_study(tmp_path_factory, "toy:organism-control", 2, "organism-heldout", "last")


def test_family_circuit_is_found_by_patching_and_decoys_are_not(family_a, tmp_path):
    run_dir, circuit = family_a
    rows = score(run_dir, circuit, tmp_path, "true")
    by = {(r["target"], r["task"]): r for r in rows}
    for task in ("vf", "tf"):
        assert by[("patching_head_auc", task)]["holds"], by[("patching_head_auc", task)]
    print(json.dumps([(r["target"], r["task"], r["value"], r["holds"]) for r in rows]))
    rates = false_positive_rates(run_dir, head_decoys(circuit, N_DECOYS), tmp_path, "heads")
    print("family head decoys: false-positive rates", rates)
    assert rates and all(rate <= FPR for rate in rates.values()), rates


def test_family_control_holds_nothing(family_control, family_a, tmp_path):
    """The unplanted control: against its own circuit.json (no circuit) nothing is evaluable, and against
    organism-a's circuit (a circuit it was never given) no target holds."""
    from anchorlab.report.verify import verify
    from anchorlab.toy import shipped_path

    own = verify(family_control)["results"]
    assert own and all(r["holds"] is None for r in own), [r for r in own if r["holds"] is not None]
    _, circuit = family_a
    borrowed = score(family_control, circuit, tmp_path, "borrowed")
    assert not [r for r in borrowed if r["holds"]], [r for r in borrowed if r["holds"]]
    assert (shipped_path("organism-control") / "circuit.json").is_file()


@pytest.mark.parametrize("member", ["organism-a", "organism-b", "organism-backup"])
def test_family_control_holds_no_member_circuit_nor_its_layer_matched_decoys(family_control, member, tmp_path):
    """Every planted member's circuit.json (organism-b's and organism-backup's name layer-0 heads at the
    instruction, which every model's attribution ranks high) and 20 layer-matched decoys of it, scored on the
    unplanted control: no target holds for the circuit, and each holds for at most 5 % of the decoys."""
    from anchorlab.toy import shipped_path

    circuit = json.loads((shipped_path(member) / "circuit.json").read_text())
    rows = score(family_control, circuit, tmp_path, "borrowed")
    assert not [r for r in rows if r["holds"]], [r for r in rows if r["holds"]]
    rates = false_positive_rates(family_control, layer_matched_decoys(circuit, N_DECOYS), tmp_path, "heads")
    print(member, "layer-matched decoys on the control: false-positive rates", rates)
    assert rates and all(rate <= FPR for rate in rates.values()), rates
