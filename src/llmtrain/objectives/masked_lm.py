"""BERT's pretraining data: masked language modelling and next-sentence-prediction pairs.

The masked-language-modelling (MLM) loss is ``-sum_i log p_θ(x_i | x̃)`` over the selected
positions ``i``: the model sees the corrupted sequence ``x̃`` and predicts the original
tokens. :func:`mask_tokens` builds ``x̃`` and the labels; ``-100`` marks the positions that
carry no loss, the value ``torch.nn.functional.cross_entropy`` ignores by default.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch

from .._checks import check_int, check_real
from ._tokens import as_ids, torch_generator

__all__ = ["IGNORE_INDEX", "SentencePair", "mask_tokens", "masked_epochs", "nsp_pairs"]

#: Label of a position that carries no loss (the ``ignore_index`` of ``cross_entropy``).
IGNORE_INDEX = -100


def mask_tokens(
    ids,
    *,
    vocab_size: int,
    mask_id: int,
    mlm_probability: float = 0.15,
    special_ids: Sequence[int] = (),
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
    generator=0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch of token ids for masked language modelling, BERT's way.

    Implements :prf:ref:`alg-mlm-masking`.

    Each position that does not hold a special token is selected independently with
    probability ``mlm_probability`` (p_mask). A selected position becomes ``mask_id`` with
    probability ``mask_fraction`` (0.8), a token drawn uniformly from the vocabulary with
    probability ``random_fraction`` (0.1), and keeps its token otherwise (0.1).

    Parameters
    ----------
    ids : tensor or sequence of int
        Token ids of any shape, each in ``[0, vocab_size)``.
    vocab_size : int
        Size V of the vocabulary; random replacements are drawn from ``[0, V)``.
    mask_id : int
        Id of the ``[MASK]`` token, in ``[0, V)``.
    mlm_probability : float
        Probability p_mask in [0, 1] that a non-special position is selected.
    special_ids : sequence of int
        Ids that are never selected (``[CLS]``, ``[SEP]``, padding).
    mask_fraction, random_fraction : float
        Shares of the selected positions replaced by ``[MASK]`` and by a random token; their
        sum must not exceed 1.
    generator : int or torch.Generator
        Seed or generator of the random draws.

    Returns
    -------
    inputs : torch.Tensor
        The corrupted ids x̃, same shape as ``ids``.
    labels : torch.Tensor
        The original id at selected positions, ``-100`` elsewhere.
    """
    V = check_int("vocab_size", vocab_size, 1)
    x = as_ids("ids", ids, V)
    mask_id = check_int("mask_id", mask_id, 0, V - 1)
    p_mask = check_real("mlm_probability", mlm_probability, 0.0, 1.0)
    f_mask = check_real("mask_fraction", mask_fraction, 0.0, 1.0)
    f_random = check_real("random_fraction", random_fraction, 0.0, 1.0)
    if f_mask + f_random > 1.0 + 1e-12:
        raise ValueError(
            f"mask_fraction + random_fraction must be in [0, 1], got {f_mask + f_random:g}"
        )
    special = [check_int("special_ids", s, 0, V - 1) for s in special_ids]
    g = torch_generator(generator)

    # One uniform draw per position decides selection, a second (υ_i) how a selected token
    # changes.
    υ_select = torch.rand(x.shape, generator=g, dtype=torch.float64)
    υ_action = torch.rand(x.shape, generator=g, dtype=torch.float64)
    random_tokens = torch.randint(0, V, x.shape, generator=g)

    candidate = ~torch.isin(x, torch.tensor(special, dtype=torch.int64))
    selected = candidate & (υ_select < p_mask)
    to_mask = selected & (υ_action < f_mask)
    to_random = selected & (υ_action >= f_mask) & (υ_action < f_mask + f_random)

    x̃ = torch.where(to_mask, torch.tensor(mask_id), x)
    x̃ = torch.where(to_random, random_tokens, x̃)
    labels = torch.where(selected, x, torch.tensor(IGNORE_INDEX))
    return x̃, labels


def masked_epochs(
    ids,
    epochs: int,
    *,
    dynamic: bool = True,
    duplicates: int = 10,
    generator=0,
    **mask_kwargs,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(inputs, labels)`` for each of ``epochs`` passes over ``ids``.

    With ``dynamic=True`` (RoBERTa), :func:`mask_tokens` draws a fresh mask on every pass.
    With ``dynamic=False`` (BERT), the data are masked once in ``duplicates`` different ways
    before training and epoch ``e`` reuses copy ``e mod duplicates``, so the same mask
    comes back every ``duplicates`` epochs. Further keyword arguments go to
    :func:`mask_tokens`.
    """
    epochs = check_int("epochs", epochs, 0)
    duplicates = check_int("duplicates", duplicates, 1)
    g = torch_generator(generator)
    if dynamic:
        for _ in range(epochs):
            yield mask_tokens(ids, generator=g, **mask_kwargs)
        return
    copies = [mask_tokens(ids, generator=g, **mask_kwargs) for _ in range(duplicates)]
    for e in range(epochs):
        yield copies[e % duplicates]


class SentencePair(NamedTuple):
    """One next-sentence-prediction example: segments A and B and whether B follows A."""

    first: object
    second: object
    is_next: bool


def nsp_pairs(documents: Sequence[Sequence], *, generator=0) -> list[SentencePair]:
    """Build BERT's next-sentence-prediction pairs from a corpus of documents.

    Implements :prf:ref:`alg-nsp-pairs`.

    Every segment that has a successor in its document becomes a first segment A (upright
    names, as in BERT's ``[CLS] A [SEP] B [SEP]``). With probability 1/2, B is that successor
    (``is_next=True``, "IsNext"); otherwise B is a segment drawn uniformly from a different
    document, chosen uniformly among the others (``is_next=False``, "NotNext").

    Parameters
    ----------
    documents : sequence of sequences
        Each document is a sequence of segments (sentences); a segment may be anything
        (a string, a list of ids). At least two documents, none of them empty.
    generator : int or torch.Generator
        Seed or generator of the random draws.
    """
    if isinstance(documents, str) or not isinstance(documents, Sequence):
        raise TypeError(f"documents must be a sequence of documents, got {documents!r}")
    if len(documents) < 2:
        raise ValueError(
            f"documents must hold at least 2 documents (NotNext segments come from another "
            f"document), got {len(documents)}"
        )
    for i_doc, doc in enumerate(documents):
        if isinstance(doc, str) or not isinstance(doc, Sequence) or len(doc) == 0:
            raise ValueError(f"documents[{i_doc}] must be a non-empty sequence of segments")
    g = torch_generator(generator)
    n_docs = len(documents)
    pairs = []
    for i_doc, doc in enumerate(documents):
        for i in range(len(doc) - 1):
            if torch.rand((), generator=g).item() < 0.5:
                pairs.append(SentencePair(doc[i], doc[i + 1], True))
                continue
            # A document other than this one, uniformly: draw from n_docs - 1, skip over i_doc.
            other = int(torch.randint(0, n_docs - 1, (), generator=g))
            other += other >= i_doc
            j = int(torch.randint(0, len(documents[other]), (), generator=g))
            pairs.append(SentencePair(doc[i], documents[other][j], False))
    return pairs
