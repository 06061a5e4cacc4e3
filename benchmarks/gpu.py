"""GPU benchmark (`python -m benchmarks --gpu`): the paper's models at full depth and width in bf16
with sdpa, random weights initialised on the GPU (anchorlab/models/shapes.py; nothing downloaded).

Per shape, per prompt: seconds and peak GPU memory (torch.cuda.max_memory_allocated, weights
included) of the knockout sweep (8 default pathways × every centre layer, window 3) fast vs naive,
the attribution (sublayers + every head) vs one plain forward (logits at every position, as
`model(**inputs)`), and the head sweep (33 blocking settings, first-token rule) fast vs naive;
ratios, decoder cells and forward-equivalents (cells ÷ cells of one plain forward).

The reduced form (`--reduced`, what the test suite runs on CPU) uses the tiny Qwen2.5-VL test model,
one sample and 4 pathways, so that every code path above runs in seconds.

    python -m benchmarks --gpu [--shapes qwen2.5-vl-7b,llava-1.5-7b,internvl3-8b] [--samples N] [--image PX]
    python benchmarks/gpu.py --reduced
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table  # noqa: E402

SHAPES = ("qwen2.5-vl-7b", "llava-1.5-7b", "internvl3-8b")
COLUMNS = ["model", "device", "prompts", "seq", "what", "fast_s", "baseline_s", "ratio", "target", "cells_fast",
           "cells_baseline", "fwd_eq_fast", "fwd_eq_baseline", "peak_fast_gib", "peak_baseline_gib"]


def random_bundle(name: str, device: str, layers: int | None = None, vision_layers: int | None = None):
    """A full-size shape with random weights built directly on `device` (no checkpoint on disk)."""
    import transformers

    from anchorlab.adapters import adapter_for
    from anchorlab.models.loading import ModelBundle, _optional
    from anchorlab.models.shapes import build_shape

    folder = Path(tempfile.mkdtemp(prefix=f"anchorlab-{name}-"))
    build_shape(name, folder, layers, vision_layers, config_only=True)
    config = transformers.AutoConfig.from_pretrained(folder)
    config._attn_implementation = "sdpa"
    adapter = adapter_for(config)
    cls = getattr(transformers, adapter.model_class)
    torch.manual_seed(0)
    with torch.device(device):
        model = cls._from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    processor = _optional(transformers.AutoProcessor, str(folder), {})
    image_processor = getattr(processor, "image_processor", None) or _optional(transformers.AutoImageProcessor, str(folder), {})
    return ModelBundle(model, tok, processor, image_processor, adapter, f"shape:{name}", str(folder))


def tiny_bundle():
    from anchorlab.models.loading import load_model
    from anchorlab.models.tiny import tiny_model_path

    return load_model(str(tiny_model_path("qwen2_5_vl")))


def clock(fn, cuda: bool):
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.inference_mode():
        out = fn()
    if cuda:
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return time.perf_counter() - start, peak, out


def sweep_tables(n_layers: int, n_heads: int) -> torch.Tensor:
    """benchmarks/heads.py's blocking sweep (G in 1, 4, 8, 16 x targeted, next-ranked, 3 random, 3
    layer-matched + original), with the G values a small model has heads for."""
    from anchorlab.interventions.head_scaling import layer_matched_heads, random_heads, scale_table

    tables = [torch.ones(n_layers, n_heads)]
    ranked = [(n_layers - 1 - i % min(4, n_layers), i // min(4, n_layers)) for i in range(min(4, n_layers) * n_heads)]
    for g in (x for x in (1, 4, 8, 16) if 2 * x <= len(ranked)):
        targeted = ranked[:g]
        sets = [targeted, ranked[g : 2 * g]]
        sets += [random_heads(g, n_layers, n_heads, s, set(targeted)) for s in range(3)]
        sets += [layer_matched_heads(targeted, n_heads, s, set(targeted)) for s in range(3)]
        tables += [scale_table(h, 0.0, n_layers, n_heads) for h in sets]
    return torch.stack(tables)


def bench_bundle(bundle, label: str, n_samples: int, side: int, pathways_names) -> list[dict]:
    from common import mc2_samples

    from anchorlab.analyses import Context
    from anchorlab.analyses.attribution import AttributionAnalysis, AttributionSpec
    from anchorlab.backends import LocalBackend
    from anchorlab.rows.batching import collate
    from anchorlab.rows.compiler import compile_rows
    from anchorlab.engines.head_sweep import HeadEngine
    from anchorlab.engines.knockout import KnockoutEngine
    from anchorlab.interventions.knockout import parse_pathway
    from anchorlab.rows.prompts import PromptStyle

    cuda = bundle.device.type == "cuda"
    backend = LocalBackend(bundle)
    rows = compile_rows(bundle, mc2_samples(n_samples, side), ["vf", "tf"], PromptStyle())
    batch = collate([r.encoded for r in rows], bundle.adapter, bundle.pad_token_id)
    inputs = {k: v.to(bundle.device) if isinstance(v, torch.Tensor) else v for k, v in batch.inputs.items()}
    b, s = batch.inputs["input_ids"].shape
    n = len(rows)
    plain_cells = bundle.n_layers * s * b
    base = {"model": label, "device": torch.cuda.get_device_name() if cuda else "cpu", "prompts": n, "seq": s}
    out = []

    fwd_s, fwd_peak, _ = clock(lambda: bundle.model(**inputs).logits.shape, cuda)
    pathways = [(p, *parse_pathway(p)) for p in pathways_names]
    centres = list(range(bundle.n_layers))
    runs = {}
    for mode in ("fast", "naive"):
        engine = KnockoutEngine(bundle, backend, mode)
        runs[mode] = clock(lambda: engine.sweep(batch, rows, pathways, centres, 3), cuda)
    (fs, fp, fast), (ns, np_, naive) = runs["fast"], runs["naive"]
    err = float((fast.logits - naive.logits).abs().max())
    out.append({**base, "what": f"knockout sweep ({len(pathways)} pathways x {len(centres)} centres), max|diff| {err:.2g}",
                "fast_s": f"{fs / n:.3f}", "baseline_s": f"{ns / n:.3f}", "ratio": round(fs / ns, 3), "target": "<= 0.10",
                "cells_fast": fast.cells, "cells_baseline": naive.cells,
                "fwd_eq_fast": round(fast.cells / plain_cells, 2), "fwd_eq_baseline": round(naive.cells / plain_cells, 2),
                "peak_fast_gib": _g(fp), "peak_baseline_gib": _g(np_)})

    analysis = AttributionAnalysis(AttributionSpec(kind="attribution"), Context(bundle, backend, seed=0))
    as_, ap, _ = clock(lambda: [analysis.run_batch(collate([r.encoded], bundle.adapter, bundle.pad_token_id), [r])
                                for r in rows], cuda)
    single_s, single_peak, _ = clock(lambda: [bundle.model(**{k: v.to(bundle.device) if isinstance(v, torch.Tensor) else v
                                                              for k, v in collate([r.encoded], bundle.adapter,
                                                                                  bundle.pad_token_id).inputs.items()}).logits.shape
                                              for r in rows], cuda)
    out.append({**base, "what": "attribution vs plain forward (each prompt alone)", "fast_s": f"{as_ / n:.3f}",
                "baseline_s": f"{single_s / n:.3f}", "ratio": round(as_ / single_s, 3), "target": "<= 1.0",
                "cells_fast": plain_cells, "cells_baseline": plain_cells, "fwd_eq_fast": 1.0, "fwd_eq_baseline": 1.0,
                "peak_fast_gib": _g(ap), "peak_baseline_gib": _g(single_peak)})

    tables = sweep_tables(bundle.n_layers, bundle.n_heads)
    heads = {}
    for mode in ("fast", "naive"):
        engine = HeadEngine(bundle, backend, mode)
        heads[mode] = clock(lambda: engine.run(batch, rows, tables, "instruction", "first_token"), cuda)
    (hs, hp, hf), (hn, hnp, hnv) = heads["fast"], heads["naive"]
    out.append({**base, "what": f"head sweep ({len(tables)} settings, first token)", "fast_s": f"{hs / n:.3f}",
                "baseline_s": f"{hn / n:.3f}", "ratio": round(hs / hn, 3), "target": "<= 0.25",
                "cells_fast": hf.cells, "cells_baseline": hnv.cells,
                "fwd_eq_fast": round(hf.cells / plain_cells, 2), "fwd_eq_baseline": round(hnv.cells / plain_cells, 2),
                "peak_fast_gib": _g(hp), "peak_baseline_gib": _g(hnp)})
    out.append({**base, "what": "plain forward (batch)", "fast_s": f"{fwd_s / n:.3f}", "peak_fast_gib": _g(fwd_peak)})
    return out


def _g(x):
    return "-" if x is None else f"{x:.1f}"


def run(reduced: bool = False, shapes=SHAPES, n_samples: int = 1, side: int = 672) -> list[dict]:
    from anchorlab.analyses.knockout import DEFAULT_PATHWAYS

    if reduced:
        torch.set_num_threads(1)
        return bench_bundle(tiny_bundle(), "tiny qwen2_5_vl (reduced)", 1, 64, DEFAULT_PATHWAYS[:4])
    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device (use --reduced for the CPU form)")
    rows = []
    for name in shapes:
        bundle = random_bundle(name, "cuda")
        rows += bench_bundle(bundle, f"{name} bf16 ({bundle.n_layers}L)", n_samples, side, DEFAULT_PATHWAYS)
        del bundle
        torch.cuda.empty_cache()
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks --gpu")
    parser.add_argument("--reduced", action="store_true", help="the CPU form: tiny model, 4 pathways")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--image", type=int, default=672, help="image side (672 px: 576 Qwen2.5-VL tokens)")
    args = parser.parse_args(argv)
    rows = run(args.reduced, args.shapes.split(","), args.samples, args.image)
    print(table(rows, COLUMNS))
    print("seconds per prompt; peak = torch.cuda.max_memory_allocated (GiB, weights included); cells = decoder "
          "layer x position; fwd_eq = cells / cells of one plain forward")
    return rows


if __name__ == "__main__":
    main()
