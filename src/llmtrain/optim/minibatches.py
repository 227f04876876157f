"""Splitting a data set of N examples into minibatches of B, epoch after epoch.

One *epoch* is one pass over the data: the N indices are shuffled (or kept in order) and cut
into consecutive batches of B. When B does not divide N the last batch is smaller, holding
N mod B examples, and an epoch takes ⌈N/B⌉ iterations; ``drop_last=True`` discards that short
batch instead, for ⌊N/B⌋ iterations of exactly B examples. This is the batch composition of
``torch.utils.data.DataLoader`` with the same order of indices.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int

__all__ = ["iterations_per_epoch", "minibatches"]


def _check_sizes(n: int, batch_size: int) -> tuple[int, int]:
    N = check_int("n", n, 1)
    # A batch larger than the data set is refused rather than silently shortened: the
    # DataLoader would return one batch of N (drop_last=False) or, worse, no batch at all.
    B = check_int("batch_size", batch_size, 1, N)
    return N, B


def iterations_per_epoch(n: int, batch_size: int, *, drop_last: bool = False) -> int:
    """The number of minibatches (iterations) in one epoch of ``n`` examples.

    ⌈N/B⌉ by default, ⌊N/B⌋ with ``drop_last=True``.

    Parameters
    ----------
    n : int
        Number of examples N ≥ 1.
    batch_size : int
        Batch size B in [1, N].
    drop_last : bool
        Discard the last, smaller batch when B does not divide N.
    """
    N, B = _check_sizes(n, batch_size)
    return N // B if drop_last else -(-N // B)


def minibatches(
    n: int,
    batch_size: int,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int | np.random.Generator = 0,
) -> list[np.ndarray]:
    """The minibatches of one epoch, as arrays of example indices.

    Implements :prf:ref:`alg-minibatch-epoch` (steps 2.1 and 2.2: order the data and cut it into
    batches).

    Parameters
    ----------
    n : int
        Number of examples N ≥ 1; the examples are the indices 0, ..., N - 1.
    batch_size : int
        Batch size B in [1, N].
    shuffle : bool
        Visit the examples in a random order (a fresh permutation from ``seed``); with
        ``False`` the batches are 0..B-1, B..2B-1, ...
    drop_last : bool
        Discard the last batch when it holds fewer than B examples (when B does not divide N).
    seed : int or numpy.random.Generator
        Seed of the permutation, or a generator to draw it from (pass the same generator on
        every epoch to get a new order each epoch, reproducibly).

    Returns
    -------
    list of numpy.ndarray
        ⌈N/B⌉ index arrays (⌊N/B⌋ with ``drop_last``); all have B entries except possibly
        the last, which has N - B⌊N/B⌋. Together they hold every index once (without
        ``drop_last``).
    """
    N, B = _check_sizes(n, batch_size)
    if shuffle:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        order = rng.permutation(N)
    else:
        order = np.arange(N)
    stop = B * (N // B) if drop_last else N
    return [order[i : min(i + B, stop)] for i in range(0, stop, B)]
