"""Exact deduplication: documents that are equal after normalisation are kept once."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ExactDedup", "exact_dedup", "normalize_document"]

_SPACE = re.compile(r"\s+")


def normalize_document(text: str) -> str:
    """The form two documents must share to count as exact duplicates.

    Unicode NFKC (so that ligatures, full-width letters and non-breaking spaces become their
    plain forms), case folding, removal of every punctuation character (Unicode category P*),
    and every run of whitespace collapsed to one space, with none at the ends.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class ExactDedup:
    """The outcome of exact deduplication: the indices kept (first occurrences, in order),
    and for every removed document the index of the kept one it duplicates."""

    keep: list[int]
    duplicate_of: dict[int, int]


def exact_dedup(documents: Iterable[str]) -> ExactDedup:
    """Keep the first of every group of documents equal after :func:`normalize_document`.

    Implements :prf:ref:`alg-exact-dedup`. Each normalised document is hashed with SHA-256
    (UTF-8 bytes); a hash seen before marks a duplicate. Only the 32-byte digests are kept in
    memory, which is what makes the method work on billions of documents; a collision of
    SHA-256 has never been observed.
    """
    seen: dict[bytes, int] = {}
    keep, duplicate_of = [], {}
    for i, text in enumerate(documents):
        digest = hashlib.sha256(normalize_document(text).encode("utf-8")).digest()
        first = seen.setdefault(digest, i)
        if first == i:
            keep.append(i)
        else:
            duplicate_of[i] = first
    return ExactDedup(keep, duplicate_of)
