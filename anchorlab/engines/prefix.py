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
        envoy_at(envoy, unembed_path).skip(
            torch.zeros((normed.shape[0], 1, 1), dtype=normed.dtype, device=normed.device)
        )
    return restricted_logits(normed, dec_w)[:, 0]



def clean_capture(envoy, paths, multimodal, start, n_layers, dec_w, keep=None):
    """One clean pass: decoder inputs (embeddings after image merge, position ids), the outputs of
    the layers in `keep` (default: all) from `start` on as {layer: [B, S - start, d]}, the decision
    logits, and the KV cache. Run it on `no_logits(inputs)`: the lm_head is not needed."""
    decoder = envoy_at(envoy, paths["decoder"])
    _, kwargs = decoder.inputs
    positions = kwargs.get("position_ids")
    embeds = kwargs["inputs_embeds"] if multimodal else envoy_at(decoder, paths["embed"]).output
    layers = envoy_at(envoy, paths["layers"])
    keep = range(n_layers) if keep is None else sorted(keep)
    hidden = {j: layers[j].output[:, start:] for j in keep}
    logits = final_logits(envoy, paths["norm"], paths["unembed"], dec_w, False)
    return embeds, positions, hidden, logits, envoy.output.past_key_values


def stack_rows(x: torch.Tensor, g: int) -> torch.Tensor:
    """g stacked copies of x along dim 0 (copy k = rows k*B..(k+1)*B), as `x.repeat(g, ...)` gives,
    but a zero-copy view (`expand`) when B = 1: all copies then share x's memory."""
    if x.shape[0] == 1:
        return x.expand(g, *x.shape[1:])
    return x.repeat(g, *([1] * (x.dim() - 1)))


def placeholder(like: torch.Tensor, shape) -> torch.Tensor:
    """A tensor of `shape` that nothing reads (zero bytes: one element, expanded)."""
    return like.new_zeros(()).expand(*shape)


def prefix_cache(cache, p0: int, g: int, lm_config, first_layer: int = 0):
    """A fresh cache holding the first p0 positions for g stacked copies of the batch.

    Layers below `first_layer` are skipped in the pass and never read their cache: they get a
    zero-byte placeholder of the right length (layer 0's length is what the model reads for the
    cache position). The others get the clean prefix, a view shared by all copies when B = 1; it
    is set on the layer directly (`update` would concatenate it into a second copy)."""
    if p0 == 0:
        return None
    prefix = DynamicCache(config=lm_config)
    for j, layer in enumerate(cache.layers):
        k, v = layer.keys[:, :, :p0], layer.values[:, :, :p0]
        shape = (g * k.shape[0], *k.shape[1:])
        keys, values = ((placeholder(k, shape), placeholder(v, shape)) if j < first_layer
                        else (stack_rows(k, g), stack_rows(v, g)))
        target = prefix.layers[j] if j < len(prefix.layers) else None
        if type(target).__name__ == "DynamicLayer":
            target.lazy_initialization(keys, values)
            target.keys, target.values = keys, values
        else:  # another layer type (sliding window, ...): its own update
            prefix.update(keys, values, j)
    return prefix


def suffix_inputs(embeds, positions, key_mask, cache, p0: int, g: int, lm_config, first_layer: int = 0) -> dict:
    """Model inputs for positions p0.. of g stacked copies of the batch, on the prefix cache. When
    layers below `first_layer` are skipped, the embeddings are never read: a zero-byte placeholder."""
    e = embeds[:, p0:]
    inputs = {
        "inputs_embeds": (placeholder(e, (g * e.shape[0], *e.shape[1:])) if first_layer > 0 else stack_rows(e, g)),
        "attention_mask": key_mask.repeat(g, 1),
        "past_key_values": prefix_cache(cache, p0, g, lm_config, first_layer),
        "use_cache": True,
    }
    if positions is not None:
        inputs["position_ids"] = positions[..., p0:].repeat(*([1] * (positions.dim() - 2)), g, 1)
    return inputs
