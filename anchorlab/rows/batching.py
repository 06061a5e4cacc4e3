"""Left-padded batches of encoded prompts; role positions move with the padding."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..adapters.base import Adapter, Encoded


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # kwargs for the HF model's forward
    roles: list[dict[str, torch.Tensor]]  # per row, positions in the padded sequence
    pad: torch.Tensor  # [B] left padding per row

    def __len__(self) -> int:
        return len(self.roles)


def collate(encoded: list[Encoded], adapter: Adapter, pad_token_id: int) -> Batch:
    lengths = torch.tensor([len(e.input_ids) for e in encoded])
    width = int(lengths.max())
    pad = width - lengths
    ids = torch.full((len(encoded), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, pad[row]:] = e.input_ids
        mask[row, pad[row]:] = 1
    inputs: dict[str, torch.Tensor] = {"input_ids": ids, "attention_mask": mask}
    for name in encoded[0].extras:
        values = [e.extras[name] for e in encoded]
        if name in adapter.per_position_extras:
            padded = torch.zeros((len(encoded), width), dtype=values[0].dtype)
            for row, v in enumerate(values):
                padded[row, pad[row]:] = v
            inputs[name] = padded
        else:
            inputs[name] = torch.cat(values, dim=0)
    if adapter.explicit_position_ids:
        inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    roles = [{role: pos + pad[row] for role, pos in e.roles.items()} for row, e in enumerate(encoded)]
    return Batch(inputs, roles, pad)


def layer_chunks(n_layers: int, per_layer_elements: int, budget_elements: int) -> list[range]:
    """Split layers so one chunk's [B, Lc, H, P, d] block stays under the budget (at least 1 layer)."""
    size = max(1, budget_elements // max(1, per_layer_elements))
    return [range(s, min(s + size, n_layers)) for s in range(0, n_layers, size)]


def no_logits(inputs: dict) -> dict:
    """Model inputs that compute no full-vocabulary logits at all (an empty `logits_to_keep` index):
    every analysis reads the decision / dictionary tokens through the restricted lens instead, and
    152k × 1,000 positions of fp32 logits would be 0.6 GB per prompt."""
    return dict(inputs, logits_to_keep=torch.zeros(0, dtype=torch.long))
