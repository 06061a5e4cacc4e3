"""Word classes of the organism family's instructions: each class shares one embedding row, so an instruction is read
as a sequence of classes and a paraphrase made of the vocabulary's words is a sequence the training pool covers.

A stand-in for a pretrained LM's word meanings: a 6-layer toy trained on 39 templates learns each word only where
the templates use it ("correct", "by", "this" never appear in one), and reads a reworded instruction as the opposite
one. Tying is a constraint on the embedding (rows set to their class's first row, gradients summed per class, so
AdamW keeps them equal); the saved weights are a plain embedding matrix. Answer words, question and context nouns,
punctuation other than the full stop and the prompt's special tokens are not in any class.
"""
from __future__ import annotations

import torch

from anchorlab.data.organism_family import WORD_CLASSES


def class_ids(tokenizer) -> dict[str, list[int]]:
    """Token ids of each class of WORD_CLASSES (words the tokenizer lacks are left out)."""
    vocab = tokenizer.get_vocab()
    return {name: [vocab[w] for w in words if w in vocab] for name, words in WORD_CLASSES.items()}


def tie(model: torch.nn.Module, tokenizer) -> torch.utils.hooks.RemovableHandle:
    """Set each class's rows of the input embedding (tied to the unembedding) to its first word's row (the word a
    trained model reads best: fewer rows change than with a mean) and keep them equal while training: the
    returned hook sums the rows' gradients per class (remove it when training ends)."""
    weight = model.get_input_embeddings().weight
    groups = [ids for ids in class_ids(tokenizer).values() if len(ids) > 1]
    with torch.no_grad():
        for ids in groups:
            weight[ids] = weight[ids[0]].clone()

    def shared(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        for ids in groups:
            grad[ids] = grad[ids].sum(0)
        return grad

    return weight.register_hook(shared)


def is_tied(model: torch.nn.Module, tokenizer) -> bool:
    """Whether every class's rows are exactly equal."""
    weight = model.get_input_embeddings().weight
    return all(bool((weight[ids] == weight[ids[0]]).all()) for ids in class_ids(tokenizer).values() if ids)
