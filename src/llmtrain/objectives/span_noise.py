"""T5's span corruption: drop random spans, mark each with a sentinel, predict the spans.

The counts follow ``random_spans_noise_mask`` of the T5 code base: for a sequence of n
tokens, noise density r and mean span length s̄,

    n_noise = clip(round(n r), 1, n - 1),   n_span = max(round(n_noise / s̄), 1),

and the mask is a random alternation of n_span non-noise and n_span noise spans, starting with a
non-noise span, all such masks being equally likely. (``round`` is round-half-to-even, as in
T5.) Sentinel k is the id ``vocab_size - 1 - k``, as T5's ``<extra_id_k>``.
"""

from __future__ import annotations

import itertools

import torch

from .._checks import check_int, check_real
from ._tokens import as_ids, torch_generator

__all__ = [
    "noise_span_counts",
    "random_spans_noise_mask",
    "raw_length_for_inputs",
    "span_corruption",
    "undo_span_corruption",
]


def noise_span_counts(n: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """Number of noise tokens n_noise and of noise spans n_span for a sequence of ``n`` tokens.

    As T5's ``random_spans_noise_mask``, with one safeguard: n_span is capped at the number of
    non-noise tokens, so that every non-noise span can be non-empty (T5 fails there). One
    difference: at ``noise_density = 0`` T5 returns an empty mask, while the formula used here
    still gives one noise token.
    """
    n = check_int("n", n, 2)
    r = check_real("noise_density", noise_density, 0.0, 1.0)
    s̄ = check_real("mean_span_length", mean_span_length, 1.0)
    n_noise = min(max(round(n * r), 1), n - 1)
    n_span = max(round(n_noise / s̄), 1)
    return n_noise, min(n_span, n - n_noise)


def raw_length_for_inputs(
    inputs_length: int, noise_density: float = 0.15, mean_span_length: float = 3.0
) -> tuple[int, int]:
    """Raw sequence length n and target length that fill an input of ``inputs_length`` tokens.

    As T5's ``random_spans_helper`` with one sentinel per span: corruption shortens a sequence,
    so T5 cuts the raw text into chunks of the largest n whose input, the n - n_noise kept
    tokens, n_span sentinels and one end-of-sequence token, fits in ``inputs_length``. The
    target length counts the n_noise tokens, the n_span sentinels and an end-of-sequence token.
    (At ``noise_density = 0.5`` T5 also trims one token so that the target is no longer than the
    input; that adjustment is not made here.)
    """
    length = check_int("inputs_length", inputs_length, 3)

    def input_and_target(n: int) -> tuple[int, int]:
        n_noise, n_span = noise_span_counts(n, noise_density, mean_span_length)
        return n - n_noise + n_span + 1, n_noise + n_span + 1

    # n = length - 1 always fits (n_span <= n_noise); walk up while the next n still fits.
    n = length - 1
    while input_and_target(n + 1)[0] <= length:
        n += 1
    return n, input_and_target(n)[1]


def _random_segmentation(items: int, segments: int, g: torch.Generator) -> torch.Tensor:
    """Lengths of a uniformly random split of ``items`` into ``segments`` non-empty parts."""
    # Choose segments - 1 of the items - 1 gaps between consecutive items as cut points.
    cuts = torch.randperm(items - 1, generator=g)[: segments - 1].sort().values + 1
    edges = torch.cat([torch.tensor([0]), cuts, torch.tensor([items])])
    return edges.diff()


def random_spans_noise_mask(
    n: int, *, noise_density: float = 0.15, mean_span_length: float = 3.0, generator=0
) -> torch.Tensor:
    """A boolean mask of length ``n``, True on the noise tokens, made of random spans.

    Implements :prf:ref:`alg-span-corruption`.

    See :func:`noise_span_counts` for the number of noise tokens and spans.
    """
    n_noise, n_span = noise_span_counts(n, noise_density, mean_span_length)
    g = torch_generator(generator)
    noise_lengths = _random_segmentation(n_noise, n_span, g)
    keep_lengths = _random_segmentation(n - n_noise, n_span, g)
    # Interleave: keep_0, noise_0, keep_1, noise_1, ...
    lengths = torch.stack([keep_lengths, noise_lengths], dim=1).reshape(-1)
    is_noise = torch.tensor([False, True]).repeat(n_span)
    return torch.repeat_interleave(is_noise, lengths)


def span_corruption(
    ids,
    *,
    vocab_size: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    num_sentinels: int = 100,
    generator=0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """T5's span-corruption example from one sequence: ``(inputs, targets)``.

    Implements :prf:ref:`alg-span-corruption`.

    The noise spans of :func:`random_spans_noise_mask` are cut out of ``ids``; in the
    input, span k is replaced by the single sentinel ``vocab_size - 1 - k``; the target is
    each sentinel followed by the span it replaced, in order. :func:`undo_span_corruption`
    inverts it.

    Parameters
    ----------
    ids : 1-D tensor or sequence of int
        At least 2 tokens, ids in ``[0, vocab_size - num_sentinels)`` (the top
        ``num_sentinels`` ids of the vocabulary are the sentinels).
    vocab_size : int
        Vocabulary size V, sentinels included.
    noise_density : float
        Fraction r in [0, 1] of the tokens to corrupt (0.15 in T5).
    mean_span_length : float
        Mean length s̄ >= 1 of a noise span (3 in T5).
    num_sentinels : int
        Number of sentinel ids reserved at the top of the vocabulary (100 in T5).
    generator : int or torch.Generator
        Seed or generator of the random draws.
    """
    V = check_int("vocab_size", vocab_size, 2)
    n_sent = check_int("num_sentinels", num_sentinels, 1, V - 1)
    x = as_ids("ids", ids, V - n_sent, ndim=1)
    n = x.numel()
    if n < 2:
        raise ValueError(f"ids must hold at least 2 tokens, got {n}")
    mask = random_spans_noise_mask(
        n, noise_density=noise_density, mean_span_length=mean_span_length, generator=generator
    )
    # Span number of every position: which noise span (or which gap before one) it is in.
    starts = mask & ~torch.cat([torch.tensor([False]), mask[:-1]])
    span = torch.cumsum(starts.long(), 0) - 1  # index k of the noise span a token belongs to
    n_span = int(starts.sum())
    if n_span > n_sent:
        raise ValueError(
            f"num_sentinels must be at least the number of noise spans ({n_span}), got {n_sent}"
        )
    sentinel = V - 1 - span
    # Input: keep the non-noise tokens; at a span's first token write its sentinel.
    inputs = torch.where(starts, sentinel, x)[~mask | starts]
    # Target: at a span's first token, the sentinel then the token; other noise tokens as is.
    pieces = []
    for k in range(n_span):
        pieces += [torch.tensor([V - 1 - k]), x[mask & (span == k)]]
    targets = torch.cat(pieces)
    return inputs, targets


def undo_span_corruption(
    inputs, targets, *, vocab_size: int, num_sentinels: int = 100
) -> torch.Tensor:
    """The original sequence from a :func:`span_corruption` pair ``(inputs, targets)``."""
    V = check_int("vocab_size", vocab_size, 2)
    n_sent = check_int("num_sentinels", num_sentinels, 1, V - 1)
    x̃ = as_ids("inputs", inputs, V, ndim=1)
    y = as_ids("targets", targets, V, ndim=1)
    first = V - n_sent
    # Split the target at its sentinels: spans[k] is what sentinel k stood for.
    positions = [*(y >= first).nonzero().flatten().tolist(), y.numel()]
    if not positions or positions[0] != 0:
        raise ValueError("targets must start with a sentinel")
    spans = {}
    for a, b in itertools.pairwise(positions):
        spans[V - 1 - int(y[a])] = y[a + 1 : b]
    out = []
    for token in x̃.tolist():
        if token >= first:
            k = V - 1 - token
            if k not in spans:
                raise ValueError(f"inputs hold sentinel {token} that targets lack")
            out.append(spans[k])
        else:
            out.append(torch.tensor([token]))
    return torch.cat(out)
