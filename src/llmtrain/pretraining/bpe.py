"""Byte-level byte-pair encoding (BPE): training, encoding and decoding, as in GPT-2 and GPT-4.

Text is first cut into chunks by a regular expression (pre-tokenisation), so that no token
spans two words, a word and its punctuation, or letters and digits. Training then starts from
the 256 byte values and repeatedly merges the most frequent adjacent pair of tokens into a new
token. Encoding replays the merges, lowest rank first, inside each chunk.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import pairwise

import numpy as np
import regex

from .._checks import check_int
from .tokenizer import Tokenizer

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "BPETokenizer",
    "bytes_per_token",
    "compression_curve",
]

# GPT-2's pattern (openai/gpt-2, encoder.py): contractions, a letter run or a digit run or a
# punctuation run with at most one leading space, then whitespace.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4's pattern (cl100k_base in tiktoken, as minbpe writes it): contractions in any case, a
# letter run that may take one leading character other than a letter, digit or newline, digits
# in groups of at most three, punctuation runs that take the newlines after them, and
# whitespace runs that end after their last newline.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
_PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}
_ALLOWED_SPECIAL = "allowed_special must be 'none_raise', 'none', 'all' or a set of special tokens"

Pair = tuple[int, int]


def _compile(pattern: str) -> regex.Pattern:
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be 'gpt2', 'gpt4' or a regex string, got {pattern!r}")
    pattern = _PATTERNS.get(pattern, pattern)
    try:
        return regex.compile(pattern)
    except regex.error as error:
        raise ValueError(f"pattern is not a valid regular expression: {error}") from None


def _merge(ids: list[int], pair: Pair, new: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right, by ``new``."""
    a, b = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _train_merges(chunk_counts: Counter, n_merges: int) -> list[Pair]:
    """The BPE merges of a multiset of chunks, counted incrementally.

    Every distinct chunk is a "word" (a list of ids, with its count). ``counts`` holds the
    number of occurrences of every adjacent pair; ``where`` the words each pair occurs in. A
    merge rewrites only the words that contain its pair and adjusts the counts of the pairs of
    those words. The most frequent pair comes from a heap of (-count, pair) entries whose
    counts may be stale: a popped entry whose count is out of date is pushed back with its
    current count (counts only fall, except for pairs with the new token, which are pushed
    when they appear). Ties go to the smallest pair (a, b) of ids.
    """
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    freq = list(chunk_counts.values())
    counts: defaultdict[Pair, int] = defaultdict(int)
    where: defaultdict[Pair, set[int]] = defaultdict(set)
    for w, (ids, f) in enumerate(zip(words, freq, strict=True)):
        for pair in pairwise(ids):
            counts[pair] += f
            where[pair].add(w)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)
    merges: list[Pair] = []
    while len(merges) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        current = counts.get(pair, 0)
        if current != -neg:  # stale entry
            if current > 0:
                heapq.heappush(heap, (-current, pair))
            continue
        new = 256 + len(merges)
        merges.append(pair)
        appeared: set[Pair] = set()
        for w in where.pop(pair):
            ids = words[w]
            merged = _merge(ids, pair, new)
            if len(merged) == len(ids):  # the index is lazy: the pair left this word earlier
                continue
            f = freq[w]
            for p in pairwise(ids):
                counts[p] -= f
            for p in pairwise(merged):
                counts[p] += f
                if new in p:
                    where[p].add(w)
                    appeared.add(p)
            words[w] = merged
        del counts[pair]
        for p in appeared:
            heapq.heappush(heap, (-counts[p], p))
    return merges


class BPETokenizer(Tokenizer):
    """A byte-level BPE tokenizer: ids 0-255 are the bytes, id 256 + i is the i-th merge, and
    the special tokens come after the merges.

    Implements :prf:ref:`alg-bpe-train` (:meth:`train`).

    Implements :prf:ref:`alg-bpe-encode` (:meth:`encode`, :meth:`decode`).
    """

    kind = "bpe"

    def __init__(self, merges: Iterable[Pair] = (), pattern: str = "gpt4", special_tokens=()):
        self._regex = _compile(pattern)
        self.pattern: str = self._regex.pattern
        self.merges: list[Pair] = []
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        for i, pair in enumerate(merges):
            a, b = (int(x) for x in pair)
            new = 256 + i
            if not (0 <= a < new and 0 <= b < new):
                raise ValueError(f"merge {i} joins ids ({a}, {b}); each must be in [0, {new})")
            self.merges.append((a, b))
            self.vocab[new] = self.vocab[a] + self.vocab[b]
        self.ranks: dict[Pair, int] = {pair: i for i, pair in enumerate(self.merges)}
        self.special_tokens: dict[str, int] = {}
        for token in special_tokens:
            if not isinstance(token, str) or not token:
                raise ValueError(f"special tokens must be non-empty strings, got {token!r}")
            if token in self.special_tokens:
                raise ValueError(f"special token {token!r} is given twice")
            self.special_tokens[token] = 256 + len(self.merges) + len(self.special_tokens)
            self.vocab[self.special_tokens[token]] = token.encode("utf-8")
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(
        cls, text: str, vocab_size: int, *, pattern: str = "gpt4", special_tokens=()
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        ``pattern`` is ``"gpt2"``, ``"gpt4"`` or a regular expression (for the ``regex``
        module) whose matches are the chunks that tokens never cross. Among pairs with the same
        count, the smallest pair of ids (a, b) is merged first, the rule of HuggingFace
        ``tokenizers``. Training stops early if no pair is left to merge.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("text must be non-empty to train a tokenizer")
        special_tokens = tuple(special_tokens)
        low = 256 + len(special_tokens)
        vocab_size = check_int("vocab_size", vocab_size, low, 2**31 - 1)
        compiled = _compile(pattern)
        chunk_counts = Counter(compiled.findall(text))
        merges = _train_merges(chunk_counts, vocab_size - low)
        return cls(merges, compiled.pattern, special_tokens)

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges) + len(self.special_tokens)

    def truncated(self, vocab_size: int) -> BPETokenizer:
        """The tokenizer made of the first ``vocab_size - 256`` merges (without special
        tokens): what training to that smaller size would have produced, since BPE's merges
        are learned in order."""
        vocab_size = check_int("vocab_size", vocab_size, 256, 256 + len(self.merges))
        return BPETokenizer(self.merges[: vocab_size - 256], self.pattern)

    # -- encoding ---------------------------------------------------------------------------

    def _encode_chunk(self, chunk: str) -> list[int]:
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        ids = list(chunk.encode("utf-8"))
        ranks = self.ranks
        while len(ids) >= 2:
            pair = min(pairwise(ids), key=lambda p: ranks.get(p, 1 << 62))
            if pair not in ranks:
                break
            ids = _merge(ids, pair, 256 + ranks[pair])
        if len(self._cache) < 1 << 18:
            self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` treating special-token strings as ordinary text."""
        out: list[int] = []
        for chunk in self._regex.findall(text):
            out.extend(self._encode_chunk(chunk))
        return out

    def encode(self, text: str, *, allowed_special="none_raise") -> list[int]:
        """The ids of ``text``.

        ``allowed_special`` follows tiktoken: ``"none_raise"`` (the default) raises if ``text``
        contains a special token's string, ``"none"`` encodes such strings as ordinary text,
        ``"all"`` encodes every special token's string as its id, and a set encodes those
        special tokens as ids and raises on any other special token in the text.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if isinstance(allowed_special, str):
            if allowed_special == "none":
                return self.encode_ordinary(text)
            if allowed_special == "none_raise":
                allowed = set()
            elif allowed_special == "all":
                allowed = set(self.special_tokens)
            else:
                raise ValueError(f"{_ALLOWED_SPECIAL}, got {allowed_special!r}")
        elif isinstance(allowed_special, set | frozenset):
            unknown = sorted(set(allowed_special) - set(self.special_tokens))
            if unknown:
                raise ValueError(f"allowed_special names unknown special tokens {unknown}")
            allowed = set(allowed_special)
        else:
            raise TypeError(f"{_ALLOWED_SPECIAL}, got {allowed_special!r}")
        for token in self.special_tokens:
            if token not in allowed and token in text:
                raise ValueError(
                    f"text contains the special token {token!r}; pass "
                    "allowed_special='all' (or a set naming it) to encode it as its id, or "
                    "'none' to encode it as ordinary text"
                )
        if not allowed:
            return self.encode_ordinary(text)
        # Longest first, so that a special token that contains another one wins.
        alternatives = sorted(allowed, key=len, reverse=True)
        splitter = "(" + "|".join(regex.escape(s) for s in alternatives) + ")"
        out: list[int] = []
        for i, part in enumerate(regex.split(splitter, text)):
            if i % 2:  # the captured separators are the special tokens
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self.encode_ordinary(part))
        return out

    def decode(self, ids) -> str:
        """Join the bytes of the tokens and decode them as UTF-8; a byte sequence that is not
        valid UTF-8 (a cut through a character) becomes U+FFFD."""
        parts = []
        V = self.vocab_size
        for i in ids:
            i = int(i)
            token = self.vocab.get(i)
            if token is None:
                raise ValueError(f"id {i} is not in [0, {V})")
            parts.append(token)
        return b"".join(parts).decode("utf-8", errors="replace")

    # -- saving -----------------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "pattern": self.pattern,
            "merges": [list(pair) for pair in self.merges],
            "special_tokens": list(self.special_tokens),
        }

    @classmethod
    def _from_state(cls, state: dict) -> BPETokenizer:
        merges = state["merges"]
        if not isinstance(merges, list) or not all(
            isinstance(m, list) and len(m) == 2 and all(type(x) is int for x in m) for m in merges
        ):
            raise ValueError("'merges' must be a list of [id, id] pairs")
        return cls([tuple(m) for m in merges], state["pattern"], state["special_tokens"])


def bytes_per_token(tokenizer: Tokenizer, text: str) -> float:
    """Compression of ``text`` by ``tokenizer``: UTF-8 bytes divided by tokens."""
    if not text:
        raise ValueError("text must be non-empty to measure its compression")
    return len(text.encode("utf-8")) / len(tokenizer.encode(text))


def compression_curve(tokenizer: BPETokenizer, text: str) -> np.ndarray:
    """Bytes per token of ``text`` for every vocabulary size V = 256, 257, ...,
    256 + len(merges) (entry V - 256), in one pass.

    Encoding applies merges in increasing rank: a merge of rank r makes token 256 + r, and any
    pair containing that token has a higher rank. So encoding with only the first m merges is
    the full encoding stopped before its first merge of rank m or more, and the token count
    for every m follows from the ranks the full encoding applies and how many tokens each
    saves.
    """
    if not text:
        raise ValueError("text must be non-empty to measure its compression")
    ranks = tokenizer.ranks
    saved = np.zeros(len(tokenizer.merges) + 1, dtype=np.int64)  # tokens saved by rank r
    for chunk, count in Counter(tokenizer._regex.findall(text)).items():
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(pairwise(ids), key=lambda p: ranks.get(p, 1 << 62))
            if pair not in ranks:
                break
            merged = _merge(ids, pair, 256 + ranks[pair])
            saved[ranks[pair]] += count * (len(ids) - len(merged))
            ids = merged
    n_bytes = len(text.encode("utf-8"))
    tokens = n_bytes - np.concatenate([[0], np.cumsum(saved[:-1])])
    return n_bytes / tokens
