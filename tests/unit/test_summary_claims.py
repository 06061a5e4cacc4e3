"""summary.md's instruction-anchors claim (docs/method.md §6): the cues' routes into the instruction
against their routes into context/last, on synthetic knockout results with a known answer."""
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
