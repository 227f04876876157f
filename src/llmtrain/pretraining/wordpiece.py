"""Which pair to merge: BPE's count against WordPiece's likelihood-based score.

Both algorithms grow a vocabulary by merging two units a, b into ab. BPE merges the most
frequent pair. WordPiece merges the pair whose merge raises the likelihood of the training
data under a unigram model of the units most; the popular score
n(ab) / (n(a) n(b)) ranks pairs by that gain per merged occurrence, to first order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from itertools import pairwise

from .._checks import check_int

__all__ = ["likelihood_gain", "merge_scores", "wordpiece_score"]

Word = tuple[str, ...]


def wordpiece_score(n_ab: int, n_a: int, n_b: int) -> float:
    """WordPiece's merge score n(ab) / (n(a) n(b)) from the count of the pair and of its two
    units.

    Implements :prf:ref:`alg-wordpiece-score`.
    """
    n_ab = check_int("n_ab", n_ab, 1)
    n_a = check_int("n_a", n_a, 1)
    n_b = check_int("n_b", n_b, 1)
    return n_ab / (n_a * n_b)


def _unit_and_pair_counts(words: Mapping[Word, int]) -> tuple[Counter, Counter]:
    units, pairs = Counter(), Counter()
    for word, count in words.items():
        check_int("word count", count, 1)
        for unit in word:
            units[unit] += count
        for pair in pairwise(word):
            pairs[pair] += count
    return units, pairs


def merge_scores(words: Mapping[Word, int], *, rule: str = "wordpiece") -> dict:
    """The score of every adjacent pair of units in ``words`` (a word, as a tuple of its
    current units, mapped to its count): ``rule="bpe"`` gives the pair count n(ab),
    ``rule="wordpiece"`` gives :func:`wordpiece_score`.

    Implements :prf:ref:`alg-wordpiece-score`.
    """
    if rule not in ("bpe", "wordpiece"):
        raise ValueError(f"rule must be 'bpe' or 'wordpiece', got {rule!r}")
    units, pairs = _unit_and_pair_counts(words)
    if rule == "bpe":
        return {pair: float(n) for pair, n in pairs.items()}
    return {(a, b): wordpiece_score(n, units[a], units[b]) for (a, b), n in pairs.items()}


def _log_likelihood(units: Counter) -> float:
    """Σ_x n(x) ln(n(x) / N): the maximised log-likelihood of a unigram model of the units."""
    N = sum(units.values())
    return sum(n * math.log(n / N) for n in units.values() if n)


def likelihood_gain(words: Mapping[Word, int], pair: tuple[str, str]) -> float:
    """The exact change of the unigram log-likelihood Σ_x n(x) ln(n(x)/N) (in nats) when
    every occurrence of ``pair`` in ``words`` is merged, left to right, into one unit."""
    a, b = pair
    before, _ = _unit_and_pair_counts(words)
    merged: Counter = Counter()
    for word, count in words.items():
        out, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(word[i])
                i += 1
        merged[tuple(out)] += count
    after, _ = _unit_and_pair_counts(merged)
    return _log_likelihood(after) - _log_likelihood(before)
