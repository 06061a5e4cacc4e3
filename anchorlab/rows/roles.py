"""Token roles (docs/method.md §1) from character spans of the rendered prompt and tokenizer offsets.

The rendered prompt holds one placeholder per image; the processor expands it into many tokens.
We tokenize the rendered text with offsets, drop the image tokens on both sides, check that the
remaining ids agree one to one, and carry each text token's char span across.
"""
from __future__ import annotations

import torch

from ..errors import UserError
from .prompts import Prompt, Span

TEXT_ROLES = ("context", "instruction", "query")
ROLES = ("vision", "context", "instruction", "query", "text", "last")


class RoleError(UserError):
    pass


def spans_in_rendered(rendered: str, prompt: Prompt) -> dict[str, Span]:
    """Locate the prompt content inside the chat-templated text and shift its spans there."""
    start = rendered.find(prompt.content)
    if start < 0:
        raise RoleError(
            f"sample {prompt.sample_id!r} ({prompt.task}): the chat template changed the prompt text, "
            "so token roles cannot be located in the rendered prompt"
        )
    if rendered.find(prompt.content, start + 1) >= 0:
        raise RoleError(
            f"sample {prompt.sample_id!r} ({prompt.task}): prompt content occurs twice in the rendered prompt"
        )
    return {role: (start + s, start + e) for role, (s, e) in prompt.spans.items()}


def assign_tokens(offsets: list[tuple[int, int]], spans: dict[str, Span]) -> dict[str, list[int]]:
    """Each token goes to the span it overlaps most (ties: the earlier span); tokens in no span to none."""
    out: dict[str, list[int]] = {role: [] for role in spans}
    ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
    for i, (s, e) in enumerate(offsets):
        if e <= s:
            continue
        best, best_overlap = None, 0
        for role, (a, b) in ordered:
            overlap = min(e, b) - max(s, a)
            if overlap > best_overlap:
                best, best_overlap = role, overlap
        if best is not None:
            out[best].append(i)
    return out


def token_roles(
    prompt: Prompt,
    rendered: str,
    expanded_ids: torch.Tensor,
    tokenizer,
    image_token_id: int | None,
    expansion_ids: set[int] = frozenset(),
    add_special_tokens: bool = False,
) -> dict[str, torch.Tensor]:
    """Roles over the positions of `expanded_ids` (the ids the model will see, unpadded).

    `expansion_ids`: tokens the processor adds around an image (besides `image_token_id`); they
    are skipped when matching the two tokenizations and belong to the `text` role.
    """
    enc = tokenizer(rendered, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
    raw_ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    expanded = expanded_ids.tolist()
    skip = set(expansion_ids) | ({image_token_id} if image_token_id is not None else set())
    keep_raw = [i for i, t in enumerate(raw_ids) if t not in skip]
    keep_exp = [i for i, t in enumerate(expanded) if t not in skip]
    if [raw_ids[i] for i in keep_raw] != [expanded[i] for i in keep_exp]:
        raise RoleError(
            f"sample {prompt.sample_id!r} ({prompt.task}): the model's input ids differ from the tokenized "
            "rendered prompt outside the image tokens; token roles would be misplaced"
        )
    spans = spans_in_rendered(rendered, prompt)
    by_raw = assign_tokens([offsets[i] for i in keep_raw], spans)
    roles: dict[str, list[int]] = {role: [keep_exp[j] for j in idx] for role, idx in by_raw.items()}
    roles["vision"] = [i for i, t in enumerate(expanded) if t == image_token_id]
    vision = set(roles["vision"])
    roles["text"] = [i for i in range(len(expanded)) if i not in vision]
    roles["last"] = [len(expanded) - 1]
    for role in TEXT_ROLES:
        if role in spans and not roles[role]:
            raise RoleError(f"sample {prompt.sample_id!r} ({prompt.task}): role {role!r} has no tokens")
    return {role: torch.tensor(sorted(pos), dtype=torch.long) for role, pos in roles.items()}
