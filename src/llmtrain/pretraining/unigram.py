"""The unigram language-model tokenizer's segmentation: the most likely split of a text."""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["unigram_segment"]


def unigram_segment(text: str, log_probs: Mapping[str, float]) -> tuple[list[str], float]:
    """The split of ``text`` into pieces of the vocabulary ``log_probs`` (piece -> ln p)
    with the largest total log-probability, found by the Viterbi algorithm, and that total.

    Implements :prf:ref:`alg-unigram-viterbi`.
    """
    if not text:
        raise ValueError("text must be non-empty")
    longest = max((len(piece) for piece in log_probs), default=0)
    # best[j]: the best log-probability of text[:j]; back[j]: where its last piece starts.
    best = [0.0] + [-math.inf] * len(text)
    back = [0] * (len(text) + 1)
    for j in range(1, len(text) + 1):
        for i in range(max(0, j - longest), j):
            lp = log_probs.get(text[i:j])
            if lp is not None and best[i] + lp > best[j]:
                best[j], back[j] = best[i] + lp, i
    if best[-1] == -math.inf:
        raise ValueError(f"text {text!r} cannot be split into pieces of the vocabulary")
    pieces, j = [], len(text)
    while j > 0:
        pieces.append(text[back[j] : j])
        j = back[j]
    return pieces[::-1], best[-1]
