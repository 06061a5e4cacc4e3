"""summary.md's claims (docs/method.md §7): each analysis's rule on synthetic results, one that holds and
one that does not; the instruction-anchors claim compares the cues' routes into the instruction with those into
context/last."""

import numpy as np
import xarray as xr

from anchorlab.analyses.knockout import KnockoutAnalysis

_knockout = KnockoutAnalysis.claims

PATHS = ["vision->last", "text->last", "vision->text", "context->instruction", "vision->instruction",
         "context->last", "instruction->last", "vision->context"]


def knockout_result(effect: dict[str, float], n: int = 40, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    nssd = np.stack([[[effect.get(p, 0.0) + 0.01 * rng.standard_normal() for _ in range(n)] for _ in range(4)]
                     for p in PATHS])[None]  # [task, pathway, layer, n]
    return xr.Dataset({"nssd": (("task", "pathway", "layer", "n"), nssd),
                       "selected": (("task", "n"), np.ones((1, n), dtype=bool))},
                      coords={"task": ["tf"], "pathway": PATHS, "layer": [0, 1, 2, 3]})


def test_the_anchors_readout_does_not_count_against_them():
    """A planted anchor: cues into the instruction matter (0.3), the direct cue routes do not, and the
    readout instruction->last (and text->last, which holds it) matters most (1.2). The claim holds;
    counting the readout among the 'other' routes, as summary.py once did, read it as does not hold."""
    line, = _knockout(knockout_result({"context->instruction": 0.3, "vision->instruction": 0.0,
                                       "instruction->last": 1.2, "text->last": 1.2}))
    assert "**holds**" in line and "instruction->last" not in line.split("(", 2)[2].split(")")[0]
    diff = float(line.split("difference ")[1].split(" ")[0])
    assert abs(diff - 0.15) < 0.01  # mean of (0.3, 0.0) minus the mean of vision->context, vision/context->last


def test_no_anchor_does_not_hold():
    line, = _knockout(knockout_result({"vision->last": 0.4, "context->last": 0.4}))
    assert "**does not hold**" in line


# ------------------------------------------------------------------ every claim: one that holds, one that does not
from anchorlab.analyses.attribution import AttributionAnalysis  # noqa: E402
from anchorlab.analyses.head_interventions import HeadsAmplifyAnalysis, HeadsAnalysis  # noqa: E402
from anchorlab.analyses.path_blocking import PathBlockingAnalysis  # noqa: E402
from anchorlab.analyses.signal import SignalAnalysis  # noqa: E402

BOUND = ["lo", "hi"]


def with_ci(values: np.ndarray, dims: tuple, coords: dict, name: str) -> dict:
    """`name` and a ±0.01 `name_ci` around it."""
    ci = np.stack([values - 0.01, values + 0.01], axis=-1)
    return {name: (dims, values), f"{name}_ci": (dims + ("bound",), ci)}


def signal_result(ldar: list[float], sync_last: float) -> xr.Dataset:
    layers = list(range(len(ldar)))
    ldar_ = np.array([ldar])
    sync = np.full((1, len(ldar)), 0.5)
    sync[0, -1] = sync_last
    coords = {"task": ["vf"], "layer": layers, "bound": BOUND}
    return xr.Dataset({**with_ci(ldar_, ("task", "layer"), coords, "ldar"),
                       **with_ci(sync, ("task", "layer"), coords, "sync_rate")}, coords=coords,
                      attrs={"param_positions": "instruction"})


def verdicts(lines: list[str]) -> list[bool]:
    assert all(("**holds**" in line) != ("**does not hold**" in line) for line in lines), lines
    return ["**holds**" in line for line in lines]


def test_ldar_transition_rule():
    """~0.5 early (≤ 0.65 at the first layer read), > 0.95 deep (at the last): a rising curve holds; a curve
    that starts at 1.0 and falls to 0.375 (issue 25's case, which a peak-only rule called 'holds') does not,
    nor does one that starts near chance and never gets past 0.95."""
    assert verdicts(SignalAnalysis.claims(signal_result([0.5, 0.7, 0.98], 0.95)))[0]
    assert not verdicts(SignalAnalysis.claims(signal_result([1.0, 0.6, 0.375], 0.95)))[0]
    assert not verdicts(SignalAnalysis.claims(signal_result([0.5, 0.9, 0.94], 0.95)))[0]
    assert not verdicts(SignalAnalysis.claims(signal_result([0.7, 0.9, 1.0], 0.95)))[0]  # high from the start


def test_synchrony_rule_names_its_positions():
    line = SignalAnalysis.claims(signal_result([0.5, 0.7, 0.98], 0.95))[1]
    assert verdicts([line]) == [True] and "instruction vs last" in line
    assert verdicts([SignalAnalysis.claims(signal_result([0.5, 0.7, 0.98], 0.85))[1]]) == [False]


def path_blocking_result(inst: float, ctx: float) -> xr.Dataset:
    coords = {"task": ["tf"], "setting": ["original", "instruction->last", "followed_context->last"], "bound": BOUND}
    return xr.Dataset(with_ci(np.array([[1.0, inst, ctx]]), ("task", "setting"), coords, "mfr"), coords=coords)


def test_path_blocking_rule():
    assert verdicts(PathBlockingAnalysis.claims(path_blocking_result(0.2, 0.9))) == [True]
    assert verdicts(PathBlockingAnalysis.claims(path_blocking_result(0.9, 0.2))) == [False]


def attribution_result(attn: float, mlp: float) -> xr.Dataset:
    delta = np.zeros((1, 2, 2, 4))  # task, metric, sublayer, layer
    delta[0, 1, 0, 2:] = attn / 2
    delta[0, 1, 1, 2:] = mlp / 2
    delta[0, 1, 0, :2] = -5.0  # the shallow half does not count
    return xr.Dataset(
        {"delta_mean": (("task", "metric", "sublayer", "layer"), delta)},
        coords={"task": ["vf"], "metric": ["S_f", "dS"], "sublayer": ["attn", "mlp"], "layer": [0, 1, 2, 3]},
    )


def test_attention_arbitrates_mlps_resist_rule():
    assert verdicts(AttributionAnalysis.claims(attribution_result(2.0, -1.0))) == [True]
    assert verdicts(AttributionAnalysis.claims(attribution_result(2.0, 0.5))) == [False]  # MLPs help: no resistance
    assert verdicts(AttributionAnalysis.claims(attribution_result(-1.0, -1.0))) == [False]


def heads_result(kind: str, original: float, targeted: float, random_: float) -> xr.Dataset:
    dim = "n_heads" if kind == "heads_block" else "alpha"
    coords = {"task": ["vf"], "setting": ["original", "targeted", "random"], dim: [3], "bound": BOUND}
    mfr = np.array([[[original], [targeted], [random_]]])
    ds = xr.Dataset({**with_ci(mfr, ("task", "setting", dim), coords, "mfr"),
                     "n_neutral": ("task", [0])}, coords=coords, attrs={"analysis": kind, "sweep_dim": dim})
    return ds


def test_blocking_rule():
    assert verdicts(HeadsAnalysis.claims(heads_result("heads_block", 1.0, 0.5, 0.98))) == [True]
    assert verdicts(HeadsAnalysis.claims(heads_result("heads_block", 1.0, 0.99, 0.98))) == [False]


def test_amplification_rule():
    """Restores following: above both random heads and the original."""
    assert verdicts(HeadsAmplifyAnalysis.claims(heads_result("heads_amplify", 0.0, 0.7, 0.05))) == [True]
    assert verdicts(HeadsAmplifyAnalysis.claims(heads_result("heads_amplify", 0.0, 0.05, 0.1))) == [False]
    assert verdicts(HeadsAmplifyAnalysis.claims(heads_result("heads_amplify", 0.8, 0.7, 0.05))) == [False]
