"""MinHash: short signatures whose agreement estimates the Jaccard similarity of two sets.

A document becomes the set of its word n-grams (*shingles*). For a random permutation of all
possible shingles, the probability that two sets have the same smallest element is exactly
their Jaccard similarity (Broder, 1997). A MinHash signature keeps the smallest element under
each of ``num_perm`` random hash functions, which stand in for random permutations; the
fraction of positions where two signatures agree is an unbiased estimate of the similarity,
with variance J(1 - J) / num_perm.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from .._checks import check_int

__all__ = [
    "MERSENNE_61",
    "estimated_jaccard",
    "jaccard",
    "minhash_signature",
    "minhash_signatures",
    "word_shingles",
]

MERSENNE_61 = (1 << 61) - 1  # the prime p of the hash family h(x) = (a x + c) mod p
_P = np.uint64(MERSENNE_61)
_LOW32 = np.uint64(0xFFFFFFFF)
_LOW29 = np.uint64((1 << 29) - 1)

_WORD = re.compile(r"\w+")


def word_shingles(text: str, ngram: int = 5) -> set[str]:
    """The set of word ``ngram``-grams of ``text``, lower-cased, words joined by one space.

    Words are runs of letters, digits and underscores (punctuation and layout are dropped, so
    re-wrapped or re-punctuated copies of a text share their shingles). A text of fewer than
    ``ngram`` words (but at least one) is a single shingle.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    ngram = check_int("ngram", ngram, 1)
    words = _WORD.findall(text.lower())
    if 0 < len(words) < ngram:
        return {" ".join(words)}
    return {" ".join(words[i : i + ngram]) for i in range(len(words) - ngram + 1)}


def jaccard(a: Iterable, b: Iterable) -> float:
    """Jaccard similarity ``len(a & b) / len(a | b)`` of two sets (1 for two empty sets)."""
    a, b = set(a), set(b)
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


def _hash64(shingle) -> int:
    """A 64-bit hash of one shingle, the same on every machine and run (unlike ``hash``)."""
    data = shingle if isinstance(shingle, bytes) else str(shingle).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


@lru_cache(maxsize=16)
def _coefficients(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``num_perm`` hash functions: a_i in [1, p) and c_i in [0, p)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, MERSENNE_61, size=num_perm, dtype=np.uint64)
    c = rng.integers(0, MERSENNE_61, size=num_perm, dtype=np.uint64)
    a.flags.writeable = c.flags.writeable = False
    return a, c


def _reduce(v: np.ndarray) -> np.ndarray:
    """v mod p for any uint64 v, using 2^61 ≡ 1 (mod p): fold the top three bits down."""
    v = (v & _P) + (v >> np.uint64(61))
    return np.where(v >= _P, v - _P, v)


def _mulmod(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(a * x) mod p for a, x < p without overflowing uint64.

    Split a = a1 2^32 + a0 and x = x1 2^32 + x0 (a1, x1 < 2^29). Then
    a x = a1 x1 2^64 + (a1 x0 + a0 x1) 2^32 + a0 x0, and modulo p = 2^61 - 1, 2^64 ≡ 8 and
    m 2^32 ≡ (m >> 29) + (m mod 2^29) 2^32. Every term then fits in 64 bits.
    """
    a1, a0 = a >> np.uint64(32), a & _LOW32
    x1, x0 = x >> np.uint64(32), x & _LOW32
    high = (a1 * x1) << np.uint64(3)  # < 2^61
    mid = a1 * x0 + a0 * x1  # < 2^62
    mid = (mid >> np.uint64(29)) + ((mid & _LOW29) << np.uint64(32))  # < 2^61 + 2^33
    low = _reduce(a0 * x0)  # a0 x0 < 2^64 exactly; reduced below p
    return _reduce(_reduce(high + mid) + low)


def _shingle_values(shingles_or_text, ngram: int) -> np.ndarray:
    shingles = (
        word_shingles(shingles_or_text, ngram)
        if isinstance(shingles_or_text, str)
        else set(shingles_or_text)
    )
    return np.fromiter(
        (_hash64(s) % MERSENNE_61 for s in shingles), dtype=np.uint64, count=len(shingles)
    )


def minhash_signature(
    shingles_or_text, num_perm: int = 128, *, seed: int = 0, ngram: int = 5
) -> np.ndarray:
    """The MinHash signature of a text (its word ``ngram``-gram shingles) or of a set.

    Implements :prf:ref:`alg-minhash-signature`. Each shingle is hashed to a 64-bit integer
    x (BLAKE2b) and reduced modulo p = 2^61 - 1; the i-th of ``num_perm`` hash functions is
    h_i(x) = (a_i x + c_i) mod p with a_i, c_i drawn from ``seed``, and the signature is
    ``sig[i] = min over shingles of h_i(x)``, a ``uint64`` array of length ``num_perm``. Two
    signatures are comparable only if they were made with the same ``num_perm`` and ``seed``.
    The empty set has the signature p everywhere.
    """
    num_perm = check_int("num_perm", num_perm, 1)
    seed = check_int("seed", seed, 0)
    ngram = check_int("ngram", ngram, 1)
    a, c = _coefficients(num_perm, seed)
    x = _shingle_values(shingles_or_text, ngram)
    if x.size == 0:
        return np.full(num_perm, MERSENNE_61, dtype=np.uint64)
    h = _reduce(_mulmod(a[:, None], x[None, :]) + c[:, None])  # (num_perm, number of shingles)
    return h.min(axis=1)


def minhash_signatures(
    documents: Iterable, num_perm: int = 128, *, seed: int = 0, ngram: int = 5
) -> np.ndarray:
    """Signatures of many documents (texts or shingle sets), one row each: ``(N, num_perm)``."""
    rows = [minhash_signature(d, num_perm, seed=seed, ngram=ngram) for d in documents]
    if not rows:
        return np.zeros((0, check_int("num_perm", num_perm, 1)), dtype=np.uint64)
    return np.stack(rows)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The MinHash estimate of the Jaccard similarity: the fraction of equal entries."""
    sig_a, sig_b = np.asarray(sig_a), np.asarray(sig_b)
    if sig_a.shape != sig_b.shape or sig_a.ndim != 1:
        raise ValueError(
            f"sig_a and sig_b must be signatures of the same length, got shapes "
            f"{sig_a.shape} and {sig_b.shape}"
        )
    return float(np.mean(sig_a == sig_b))
