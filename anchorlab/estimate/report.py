"""The printed report of `anchorlab estimate`: one line per analysis and the total."""
from __future__ import annotations


def format_report(est: dict) -> str:
    gib = 2**30
    head = (f"{est['model']} ({est['dtype']}, {est['layers']} layers, weights {est['weights_bytes'] / gib:.1f} GiB): "
            f"{est['prompts']} prompts, mean {est['mean_seq']:.0f} tokens, {est['batches']} batches of "
            f"{est['batch_size']}; one plain forward of every prompt = {est['forward_cells']:,} decoder cells")
    timed = bool(est["tokens_per_s"])
    cols = ["analysis", "variants", "passes fast", "cells fast", "cells naive", "fwd-eq fast", "fwd-eq naive",
            "fast/naive", "peak GiB/batch"]
    if timed:
        cols += ["time fast", "time naive"]
    lines = []
    for a in est["analyses"]:
        ratio = a["cells_fast"] / a["cells_naive"] if a["cells_naive"] else 0.0
        row = [a["analysis"], str(a["variants"]), f"{a['passes_fast']:,}", f"{a['cells_fast']:,}",
               f"{a['cells_naive']:,}", f"{a['forward_equivalents_fast']:.1f}", f"{a['forward_equivalents_naive']:.1f}",
               f"{ratio:.3f}", f"{a['peak_bytes'] / gib:.1f}"]
        if timed:
            row += [_hours(a["seconds_fast"]), _hours(a["seconds_naive"])]
        lines.append(row)
    widths = [max(len(c), *(len(r[i]) for r in lines)) for i, c in enumerate(cols)]
    text = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    text += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in lines]
    p = est.get("probe")
    tables = ("as the run draws them (the pilot's, from the recipe's attribution over every prompt)" if p
              else "as if every random draw differs (an upper bound)")
    text.append(f"passes and cells count generation at max_new_tokens (an upper bound), head tables {tables}")
    if p:
        text.append(
            f"time from a probe: {est['tokens_per_s']:,.0f} tokens/s ({p['seconds_per_cell'] * 1e9:.1f} ns per "
            f"decoder cell) + per pass {p['seconds_per_pass'] * 1e3:.1f} ms (plain) to "
            f"{max([p['seconds_per_pass']] + [v['seconds_per_pass'] for v in p['steps'].values()]) * 1e3:.1f} ms "
            f"(an analysis's own, from a pilot run of {p['pilot']['prompts']} prompts), generation steps as the "
            f"pilot ran them, {est['analyses'][-1]['notes'][0]}; figures not included"
        )
    elif timed:
        text.append(f"time at {est['tokens_per_s']:,.0f} tokens/s (decoder cells ÷ (tokens/s × layers); no per-pass "
                    "cost: use --probe on a small model, where it dominates)")
    return "\n".join(text)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.1f} s"
