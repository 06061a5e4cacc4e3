"""Greedy generation through nnsight traces, step by step on a KV cache, so an intervention can act
at every generated position (path blocking keeps the instruction from reaching generated tokens)."""
from __future__ import annotations

from typing import Callable

import torch

from ..adapters.paths import envoy_at

# intervene(envoy, step, n_keys) runs inside each step's trace before the layers it touches
Intervene = Callable[..., None]


def step_capture(envoy, decoder_path, intervene, step, n_keys, want_positions):
    _, kwargs = envoy_at(envoy, decoder_path).inputs
    positions = kwargs.get("position_ids") if want_positions else None
    if intervene is not None:
        intervene(envoy, step, n_keys)
    logits = envoy.output.logits[:, -1]
    return logits.argmax(-1), positions, envoy.output.past_key_values


def greedy_generate(bundle, backend, inputs: dict, max_new_tokens: int, intervene: Intervene | None = None
                    ) -> list[list[int]]:
    """Token ids generated per row (stopping at EOS), from model `inputs` for the first pass (a
    collated batch, or a suffix on a prefix KV cache). Positions continue from the first pass's last
    position in every rope dimension (Qwen2.5-VL's 3-D positions included). One backend.run: on NDIF
    the whole loop is one request, so the KV cache never leaves the server."""
    decoder = bundle.adapter.layers.rsplit(".", 1)[0]
    return backend.run(generate_loop, dict(inputs), decoder, max_new_tokens, intervene, sorted(_eos_ids(bundle)))


def generate_loop(backend, inputs: dict, decoder: str, max_new_tokens: int, intervene, eos) -> list[list[int]]:
    mask = inputs["attention_mask"].cpu()
    inputs = dict(inputs, use_cache=True, logits_to_keep=1)
    b = mask.shape[0]
    done = torch.zeros(b, dtype=torch.bool)
    out: list[list[int]] = [[] for _ in range(b)]
    positions = None
    for step in range(max_new_tokens):
        token, pos, cache = backend.trace(inputs, step_capture, decoder, intervene, step, mask.shape[1], step == 0)
        token = token.cpu()
        if step == 0:
            positions = pos[..., -1:].cpu() if pos is not None else (mask.sum(-1, keepdim=True) - 1)
        for i in range(b):
            if not done[i]:
                out[i].append(int(token[i]))
                done[i] = int(token[i]) in eos
        if done.all():
            break
        mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype)], dim=1)
        inputs = {"input_ids": token[:, None], "attention_mask": mask, "past_key_values": cache,
                  "position_ids": positions + step + 1, "use_cache": True, "logits_to_keep": 1}
    return out


def step_cells(ids: list[list[int]], n_layers: int) -> int:
    """Cells of the generation steps after the prompt pass: every row takes part in each step the
    loop runs (it stops when the last row is done)."""
    return max(0, max((len(t) for t in ids), default=0) - 1) * n_layers * len(ids)


def _eos_ids(bundle) -> set[int]:
    ids = set()
    for source in (bundle.tokenizer, getattr(bundle.model, "generation_config", None)):
        value = getattr(source, "eos_token_id", None)
        ids.update(value if isinstance(value, (list, tuple)) else ([value] if value is not None else []))
    return ids
