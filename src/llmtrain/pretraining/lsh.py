"""Locality-sensitive hashing of MinHash signatures by banding.

Comparing every pair of N signatures costs N²/2 comparisons. Banding cuts each signature into
``bands`` bands of ``rows`` consecutive entries and makes two documents a *candidate pair* when
they agree on every entry of at least one band; only candidates are compared. A pair with
Jaccard similarity s becomes a candidate with probability 1 - (1 - s^rows)^bands, an S-shaped
curve that rises around s ≈ (1/bands)^(1/rows) (Leskovec, Rajaraman and Ullman, *Mining of
Massive Datasets*, ch. 3).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .._checks import check_int, check_real

__all__ = ["lsh_candidate_pairs", "lsh_probability", "lsh_threshold"]


def lsh_candidate_pairs(signatures, bands: int, rows: int) -> set[tuple[int, int]]:
    """Candidate pairs ``(i, j)``, ``i < j``, of the rows of ``signatures`` under banding.

    Implements :prf:ref:`alg-lsh-candidates`. ``signatures`` is an ``(N, k)`` array of MinHash
    signatures with ``k >= bands * rows``; its first ``bands * rows`` columns are cut into
    ``bands`` bands of ``rows`` columns. Each band hashes every document into a bucket keyed
    by the band's values; two documents are a candidate pair when they share a bucket in at
    least one band. The work is one pass over the signatures per band plus the size of the
    buckets, not N²/2 comparisons.
    """
    signatures = np.asarray(signatures)
    if signatures.ndim != 2:
        raise ValueError(f"signatures must be a 2-d array (N, k), got shape {signatures.shape}")
    bands = check_int("bands", bands, 1)
    rows = check_int("rows", rows, 1)
    k = signatures.shape[1]
    if bands * rows > k:
        raise ValueError(
            f"bands * rows must be at most the signature length {k}, got {bands} * {rows}"
        )
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        block = np.ascontiguousarray(signatures[:, band * rows : (band + 1) * rows])
        buckets: dict[bytes, list[int]] = defaultdict(list)
        for i, key in enumerate(block):
            buckets[key.tobytes()].append(i)
        for members in buckets.values():
            for x, i in enumerate(members):
                pairs.update((i, j) for j in members[x + 1 :])
    return pairs


def lsh_probability(s, bands: int, rows: int):
    """The S-curve 1 - (1 - s^rows)^bands: the probability that a pair with Jaccard
    similarity ``s`` becomes a candidate (a float for a number, an array for an array)."""
    bands = check_int("bands", bands, 1)
    rows = check_int("rows", rows, 1)
    if np.ndim(s) == 0:
        s = check_real("s", s, 0.0, 1.0)
        return 1.0 - (1.0 - s**rows) ** bands
    s = np.asarray(s, dtype=float)
    if np.any(~((s >= 0) & (s <= 1))):
        raise ValueError("s must be in [0, 1] everywhere")
    return 1.0 - (1.0 - s**rows) ** bands


def lsh_threshold(bands: int, rows: int) -> float:
    """(1/bands)^(1/rows), the similarity near which the S-curve rises most steeply."""
    bands = check_int("bands", bands, 1)
    rows = check_int("rows", rows, 1)
    return (1.0 / bands) ** (1.0 / rows)
