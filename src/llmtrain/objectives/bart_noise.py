"""BART's noising functions: corrupt a document, train a model to restore it.

Lewis et al. (2020) compare five transformations of the input document; the decoder always
reconstructs the original. Each function here takes a 1-D sequence of token ids and a seed
or generator and returns the corrupted sequence.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .._checks import check_int, check_real
from ._tokens import as_ids, torch_generator

__all__ = [
    "Infilled",
    "document_rotation",
    "sentence_permutation",
    "text_infilling",
    "token_deletion",
    "token_masking",
]


def token_masking(ids, *, mask_id: int, probability: float = 0.15, generator=0) -> torch.Tensor:
    """Replace each token by ``mask_id`` independently with probability ``probability``.

    Implements :prf:ref:`alg-bart-noise`.
    """
    x = as_ids("ids", ids, ndim=1)
    mask_id = check_int("mask_id", mask_id, 0)
    p = check_real("probability", probability, 0.0, 1.0)
    g = torch_generator(generator)
    hit = torch.rand(x.shape, generator=g, dtype=torch.float64) < p
    return torch.where(hit, torch.tensor(mask_id), x)


def token_deletion(ids, *, probability: float = 0.15, generator=0) -> torch.Tensor:
    """Delete each token independently with probability ``probability``; keep the order.

    Implements :prf:ref:`alg-bart-noise`.
    """
    x = as_ids("ids", ids, ndim=1)
    p = check_real("probability", probability, 0.0, 1.0)
    g = torch_generator(generator)
    return x[torch.rand(x.shape, generator=g, dtype=torch.float64) >= p]


def sentence_permutation(ids, *, end_ids: Sequence[int], generator=0) -> torch.Tensor:
    """Split the document after every token in ``end_ids`` (full stops) and shuffle the
    sentences uniformly at random. A trailing piece without an end token is a sentence too.

    Implements :prf:ref:`alg-bart-noise`.
    """
    x = as_ids("ids", ids, ndim=1)
    ends = [check_int("end_ids", e, 0) for e in end_ids]
    if not ends:
        raise ValueError("end_ids must name at least one sentence-ending token id")
    g = torch_generator(generator)
    after_end = torch.isin(x, torch.tensor(ends)).nonzero().flatten() + 1
    cuts = [0, *after_end.tolist()]
    if cuts[-1] != x.numel():
        cuts.append(x.numel())
    sentences = [x[a:b] for a, b in itertools.pairwise(cuts)]
    order = torch.randperm(len(sentences), generator=g).tolist()
    return torch.cat([sentences[i] for i in order])


def document_rotation(ids, *, generator=0) -> torch.Tensor:
    """Choose a token uniformly at random and rotate the document to start with it.

    Implements :prf:ref:`alg-bart-noise`.
    """
    x = as_ids("ids", ids, ndim=1)
    g = torch_generator(generator)
    start = int(torch.randint(0, x.numel(), (), generator=g))
    return torch.roll(x, -start)


class Infilled(NamedTuple):
    """Result of :func:`text_infilling`.

    ``ids`` is the corrupted sequence; ``lengths[k]`` and ``starts[k]`` are the length of span
    k and its first position in the original sequence; span k became the k-th mask token.
    """

    ids: torch.Tensor
    lengths: torch.Tensor
    starts: torch.Tensor


def text_infilling(
    ids, *, mask_id: int, mask_ratio: float = 0.3, span_rate: float = 3.0, generator=0
) -> Infilled:
    """BART's text infilling: replace random spans, of Poisson(w̄) lengths, by one mask each.

    Implements :prf:ref:`alg-text-infilling`.

    Span lengths w_k are drawn from a Poisson distribution with mean w̄ = ``span_rate`` until
    they cover n_noise = ceil(r n) tokens (the last one is shortened to make the total exactly
    n_noise). The spans and the n - n_noise kept tokens are then arranged in a uniformly
    random order, so spans are disjoint; each span, including a span of length 0, leaves one
    ``mask_id`` in the output, and a span of length 0 therefore inserts a mask.

    Parameters
    ----------
    ids : 1-D tensor or sequence of int
        The document, at least one token.
    mask_id : int
        Id of the mask token.
    mask_ratio : float
        Fraction r of the tokens to cover with spans, in [0, 1] (0.3 for BART-large).
    span_rate : float
        Mean w̄ > 0 of the Poisson span lengths (3 in BART).
    generator : int or torch.Generator
        Seed or generator of the random draws.
    """
    x = as_ids("ids", ids, ndim=1)
    mask_id = check_int("mask_id", mask_id, 0)
    ratio = check_real("mask_ratio", mask_ratio, 0.0, 1.0)
    w̄ = check_real("span_rate", span_rate, 0.0, 100.0, low_open=True)
    g = torch_generator(generator)
    n = x.numel()
    n_noise = math.ceil(ratio * n - 1e-9)

    lengths: list[int] = []  # the span lengths w_k
    total = 0
    while total < n_noise:
        # Poisson draws in batches; stop as soon as the spans cover n_noise tokens.
        for w in torch.poisson(torch.full((16,), w̄, dtype=torch.float64), generator=g).tolist():
            lengths.append(min(int(w), n_noise - total))
            total += lengths[-1]
            if total >= n_noise:
                break
    n_span = len(lengths)
    # A random order of the n - n_noise kept tokens and the n_span spans: choose the span slots.
    slots = torch.zeros(n - n_noise + n_span, dtype=torch.bool)
    slots[torch.randperm(n - n_noise + n_span, generator=g)[:n_span]] = True
    out, starts, i, k = [], [], 0, 0
    for is_span in slots.tolist():
        if is_span:
            starts.append(i)
            out.append(mask_id)
            i += lengths[k]
            k += 1
        else:
            out.append(int(x[i]))
            i += 1
    return Infilled(
        torch.tensor(out, dtype=torch.int64),
        torch.tensor(lengths, dtype=torch.int64),
        torch.tensor(starts, dtype=torch.int64),
    )
