"""Benchmark contamination: word n-grams a test example shares with the training data."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .._checks import check_int

__all__ = ["NgramOverlap", "ngram_overlap", "word_ngrams"]

_WORD = re.compile(r"[^\W_]+")  # letters and digits: punctuation and underscores split words


def word_ngrams(text: str, n: int = 13) -> set[tuple[str, ...]]:
    """The set of ``n``-grams of lower-cased words of ``text``, words being runs of letters and
    digits. GPT-3 (Brown et al., 2020, appendix C) splits at whitespace and then deletes the
    punctuation, so that "don't" is one word there and two ("don", "t") here; the two agree on
    text without punctuation inside words."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    n = check_int("n", n, 1)
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class NgramOverlap:
    """How much of a test text appears in the training data, as word ``n``-grams."""

    n: int
    test_ngrams: int  # number of distinct n-grams of the test text
    shared: frozenset  # the test n-grams that also occur in the training data

    @property
    def fraction(self) -> float:
        """Fraction of the test text's n-grams found in the training data (0 if it has none)."""
        return len(self.shared) / self.test_ngrams if self.test_ngrams else 0.0

    @property
    def dirty(self) -> bool:
        """GPT-3's definition: an example is dirty if it shares any n-gram with training."""
        return bool(self.shared)


def ngram_overlap(test_text: str, train_texts: str | Iterable[str], n: int = 13) -> NgramOverlap:
    """The word ``n``-grams of ``test_text`` that also occur in ``train_texts``.

    Implements :prf:ref:`alg-ngram-contamination`. ``train_texts`` is one text or many; an
    n-gram counts only within one training text, never across the boundary between two.
    GPT-3 used n = 13 to filter its training data (Brown et al., 2020).
    """
    n = check_int("n", n, 1)
    test = word_ngrams(test_text, n)
    if isinstance(train_texts, str):
        train_texts = [train_texts]
    shared: set = set()
    for text in train_texts:
        shared |= test & word_ngrams(text, n)
        if len(shared) == len(test):
            break
    return NgramOverlap(n, len(test), frozenset(shared))
