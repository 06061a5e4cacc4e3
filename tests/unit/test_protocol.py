"""The analysis protocol (docs/architecture.md): every registered kind implements every hook, and a new
analysis is one module plus one registry entry — the run, its figures, summary.md, verify and
`anchorlab estimate` all pick it up with no other edit (a dummy analysis, registered only here)."""
from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pytest
import xarray as xr

from anchorlab.analyses import ANALYSES, REGISTRY
from anchorlab.analyses.base import Analysis, AnalysisSpec, OnePlainPass, target, verdict
from anchorlab.labels.capture import first_token_margin
from anchorlab.rows.layout import by_task_sample


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_every_registered_kind_implements_every_hook(kind):
    cls = REGISTRY[kind]
    missing = [hook for hook in Analysis.HOOKS if getattr(cls, hook) is getattr(Analysis, hook)]
    assert not missing, f"{kind} does not implement {missing}"
    assert cls.spec_cls.model_fields["kind"].annotation is not None and ANALYSES[kind] is cls.spec_cls
    knob = cls.pass_knob
    assert knob is None or knob in cls.spec_cls.model_fields, f"{kind}.pass_knob {knob!r} is not a spec field"


class MarginSpec(AnalysisSpec):
    kind: Literal["margin_probe"] = "margin_probe"


class MarginProbe(OnePlainPass, Analysis):
    """The decision margin logit(y_f) - logit(y_c) at `last`, per prompt: the smallest real analysis (its
    price hooks come with OnePlainPass, as signal's and attribution's do)."""

    kind = "margin_probe"
    spec_cls = MarginSpec

    def run_batch(self, batch, rows):
        return {"margin": first_token_margin(self.ctx.bundle, self.ctx.backend, batch, rows)}

    def reduce(self, rows, results, selected):
        tasks, samples, grid = by_task_sample(rows)
        ds = xr.Dataset({"margin": (("task", "sample"), grid(results["margin"]))},
                        coords={"task": tasks, "sample": samples})
        ds["margin_mean"] = ("task", ds["margin"].mean("sample").values)
        ds.attrs["analysis"] = self.kind
        return ds

    @classmethod
    def figures(cls, ds, fig_dir):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig_dir.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots()
        ax.bar(list(ds["task"].values), ds["margin_mean"].values)
        path = fig_dir / "margin_probe.png"
        fig.savefig(path)
        plt.close(fig)
        return [path]

    @classmethod
    def claims(cls, ds):
        return [f"- Margin probe ({t}): mean margin {float(ds['margin_mean'].sel(task=t)):.3f}: "
                f"{verdict(float(ds['margin_mean'].sel(task=t)) > 0)}." for t in ds["task"].values]

    @classmethod
    def targets(cls, ds, circuit):
        return [target("margin_positive", "model", t, float(ds["margin_mean"].sel(task=t)), "> 0",
                       float(ds["margin_mean"].sel(task=t)) > 0) for t in ds["task"].values]


RECIPE = """name: probe
model: {id: "toy:anchored"}
data: {source: organism, n_samples: 6, filter: all}
analyses: [{kind: margin_probe}, {kind: signal, n_bootstrap: 10}]
batch_size: 4
"""


def test_a_new_analysis_needs_only_its_module_and_a_registry_entry(tmp_path, monkeypatch, one_thread):
    import anchorlab
    from anchorlab.estimate import estimate_recipe
    from anchorlab.models.loading import load_model
    from anchorlab.report.verify import verify

    monkeypatch.setitem(REGISTRY, MarginProbe.kind, MarginProbe)  # the "one registry line"
    monkeypatch.setitem(ANALYSES, MarginProbe.kind, MarginSpec)
    (tmp_path / "r.yaml").write_text(RECIPE)
    out = tmp_path / "out"
    results = anchorlab.run(tmp_path / "r.yaml", out=out)
    ds = xr.load_dataset(out / "margin_probe.nc")
    # the run: the margins equal an independent plain-torch forward of the same prompts
    bundle = load_model("toy:anchored")
    from anchorlab.data.sources import load_dataset
    from anchorlab.recipe import load_recipe
    from anchorlab.rows.compiler import compile_rows, prompt_style

    recipe, _ = load_recipe(tmp_path / "r.yaml")
    samples, _ = load_dataset(recipe.data, recipe.seed)
    rows = compile_rows(bundle, samples, recipe.data.tasks, prompt_style(recipe.data.prompt), on_unusable="skip")
    import torch

    from anchorlab.rows.batching import collate
    from anchorlab.rows.layout import decision_rows

    for row in rows[:4]:
        batch = collate([row.encoded], bundle.adapter, bundle.pad_token_id)
        with torch.no_grad():
            logits = bundle.model(**batch.inputs).logits[0, -1]
        y_f, y_c = (int(i) for i in decision_rows([row])[0])
        got = float(ds["margin"].sel(task=row.task, sample=row.sample.id))
        assert abs(got - float(logits[y_f] - logits[y_c])) < 1e-4
    assert "margin_probe" in results and ds.attrs["model_id"] == "toy:anchored"  # stamped like every result
    # its figure, its summary claim, its verify target
    assert (out / "figures" / "margin_probe.png").is_file()
    summary = (out / "summary.md").read_text()
    assert "Margin probe (vf)" in summary and "LDAR phase transition (vf)" in summary
    (tmp_path / "circuit.json").write_text(json.dumps({"heads": []}))
    scores = verify(out, tmp_path / "circuit.json")
    mine = [r for r in scores["results"] if r["analysis"] == "margin_probe"]
    assert [r["task"] for r in mine] == ["vf", "tf"] and all(r["holds"] == (r["value"] > 0) for r in mine)
    # estimate prices it: one plain pass of every prompt, the cells the run's batches hold
    est = estimate_recipe(tmp_path / "r.yaml")
    line = next(a for a in est["analyses"] if a["analysis"] == "margin_probe")
    assert line["cells_fast"] == line["cells_naive"] == est["forward_cells"] > 0
    assert line["passes_fast"] == est["batches"]
    assert np.isfinite(line["peak_bytes"]) and line["peak_bytes"] > est["weights_bytes"]
