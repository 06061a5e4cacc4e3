"""Prefix reuse shared by the fast engines: one clean pass keeps what a suffix pass needs (decoder
inputs, KV cache, hidden states), and a suffix pass over g copies of the batch starts from it."""
from __future__ import annotations

import torch
from transformers import DynamicCache

from ..adapters.paths import envoy_at
from ..method.lens import restricted_logits


def model_paths(adapter) -> dict[str, str]:
    return {"layers": adapter.layers, "attention": adapter.attention, "norm": adapter.final_norm,
            "unembed": adapter.unembed, "decoder": adapter.decoder, "embed": adapter.embed, "o_proj": adapter.o_proj}


def final_logits(envoy, norm_path, unembed_path, dec_w, skip_unembed):
    """The model's own logits of the decision tokens at the last position (final norm applied);
    the full-vocabulary unembedding is skipped where its output is not needed."""
    normed = envoy_at(envoy, norm_path).output[:, -1:]
    if skip_unembed:
        envoy_at(envoy, unembed_path).skip(torch.zeros((normed.shape[0], 1, 1), dtype=normed.dtype, device=normed.device))
    return restricted_logits(normed, dec_w)[:, 0]


def clean_capture(envoy, paths, multimodal, start, n_layers, dec_w):
    """One clean pass: decoder inputs (embeddings after image merge, position ids), every layer's
    output from `start` on, the decision logits, and the KV cache."""
    decoder = envoy_at(envoy, paths["decoder"])
    _, kwargs = decoder.inputs
    positions = kwargs.get("position_ids")
    embeds = kwargs["inputs_embeds"] if multimodal else envoy_at(decoder, paths["embed"]).output
    layers = envoy_at(envoy, paths["layers"])
    hidden = [layers[j].output[:, start:] for j in range(n_layers)]
    logits = final_logits(envoy, paths["norm"], paths["unembed"], dec_w, False)
    return embeds, positions, hidden, logits, envoy.output.past_key_values


def prefix_cache(cache, p0: int, g: int, lm_config):
    """A fresh cache holding the first p0 positions, repeated for g copies of the batch."""
    if p0 == 0:
        return None
    prefix = DynamicCache(config=lm_config)
    for j, layer in enumerate(cache.layers):
        prefix.update(layer.keys[:, :, :p0].repeat(g, 1, 1, 1), layer.values[:, :, :p0].repeat(g, 1, 1, 1), j)
    return prefix


def suffix_inputs(embeds, positions, key_mask, cache, p0: int, g: int, lm_config) -> dict:
    """Model inputs for positions p0.. of g stacked copies of the batch, on the prefix cache."""
    inputs = {
        "inputs_embeds": embeds[:, p0:].repeat(g, 1, 1),
        "attention_mask": key_mask.repeat(g, 1),
        "past_key_values": prefix_cache(cache, p0, g, lm_config),
        "use_cache": True,
    }
    if positions is not None:
        inputs["position_ids"] = positions[..., p0:].repeat(*([1] * (positions.dim() - 2)), g, 1)
    return inputs
