"""How much of a dictionary a tokenizer can use: usable forms per answer (docs/method.md §1's first-token rule).

A form is usable in a sample when it has a first token (bare or after a space) that the competing
answer's forms do not also reach; entities.split_forms applies the rule, as a run does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .entities import first_token_ids, split_forms

THRESHOLDS = (1, 3, 10)


@dataclass
class Coverage:
    model: str
    slots: int = 0  # answers counted: samples × 2 (the vision and the text answer of each)
    at_least: dict[int, int] = field(default_factory=lambda: {t: 0 for t in THRESHOLDS})
    dropped_forms: int = 0
    samples_with_drops: int = 0
    unusable_samples: list[str] = field(default_factory=list)  # a side with no usable form left
    examples: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        n = max(self.slots, 1)
        out = [f"coverage with the tokenizer of {self.model}: {self.slots} answers ({self.slots // 2} samples × 2)"]
        out += [
            f"  >= {t:2d} usable forms: {self.at_least[t]:5d} ({100 * self.at_least[t] / n:5.1f}%)" for t in THRESHOLDS
        ]
        out.append(
            f"  forms dropped (first token shared with the competing answer): {self.dropped_forms} "
            f"in {self.samples_with_drops} samples" + (f", e.g. {'; '.join(self.examples)}" if self.examples else "")
        )
        if self.unusable_samples:
            shown = ", ".join(self.unusable_samples[:5]) + (" ..." if len(self.unusable_samples) > 5 else "")
            out.append(f"  samples a run would leave out (an answer with no usable form): "
                       f"{len(self.unusable_samples)}: {shown}")
        return out


def coverage(tokenizer, model: str, pairs, forms: dict[str, list[str]]) -> Coverage:
    """`pairs`: (sample id, answer_vision, answer_text) per sample; `forms`: the dictionary."""
    memo: dict[str, list[int]] = {}

    def first(form: str) -> list[int]:
        if form not in memo:
            memo[form] = first_token_ids(tokenizer, form)
        return memo[form]

    def of(answer: str) -> list[str]:
        return [answer, *[f for f in forms.get(answer, []) if f != answer]]

    report = Coverage(model)
    for sample_id, vision, text in pairs:
        split = split_forms(tokenizer, of(vision), of(text), first)
        for m in ("vision", "text"):
            report.slots += 1
            for t in THRESHOLDS:
                report.at_least[t] += len(split.forms[m]) >= t
        if split.dropped:
            report.dropped_forms += len(split.dropped)
            report.samples_with_drops += 1
            if len(report.examples) < 3:
                report.examples.append(f"{sample_id} {vision!r} vs {text!r}: {split.dropped[:3]}")
        if not split.forms["vision"] or not split.forms["text"]:
            report.unusable_samples.append(sample_id)
    return report
