"""A seeded synthetic text corpus with a known entropy rate, and a character tokenizer.

The book trains its tiny language models on text drawn from a first-order Markov chain over
characters. Such a source has two properties real text lacks: it is generated in
milliseconds, with no files to download, and its *entropy rate* (the best loss any model can
reach, in nats per character) is known exactly, so a training curve can be drawn against the
floor it should approach.

The default chain, ``DEFAULT_SOURCE``, copies the character-bigram statistics of a few
short English sentences written for this book, so that samples look like a garbled children's
story ("the cat ran the dog sat tree.") rather than noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_int

__all__ = ["DEFAULT_SOURCE", "CharVocab", "MarkovSource", "random_windows", "synthetic_corpus"]

#: The sentences whose character bigrams define ``DEFAULT_SOURCE`` (written for the book).
_TEMPLATE = (
    "the cat sat on the mat. a dog ran to the cat and the cat ran up a tree. "
    "the dog sat under the tree and did not see the bird. the bird sang a song "
    "to the sun, and the sun shone on the tree and on the dog. a girl came by "
    "with a red kite, and the kite went up over the tree. the dog ran home. "
)


@dataclass(frozen=True, eq=False)
class MarkovSource:
    """A stationary first-order Markov chain over characters.

    Parameters
    ----------
    alphabet : str
        The characters, one per state, in a fixed order.
    transitions : numpy.ndarray
        Row-stochastic matrix A of shape ``(V, V)``: ``transitions[i, j]`` is the
        probability A_ij that character ``alphabet[j]`` follows ``alphabet[i]``.

    Notes
    -----
    The chain starts in its stationary distribution π, so every position of a sample has the
    same marginal distribution and the entropy rate is
    ``H̄ = -Σ_i π_i Σ_j A_ij ln A_ij`` nats per character (Shannon, 1948).
    """

    alphabet: str
    transitions: np.ndarray

    def __post_init__(self):
        A = np.asarray(self.transitions, dtype=np.float64)
        V = len(self.alphabet)
        if len(set(self.alphabet)) != V or V < 2:
            raise ValueError(
                f"alphabet must hold at least 2 distinct characters, got {self.alphabet!r}"
            )
        if A.shape != (V, V):
            raise ValueError(f"transitions must have shape ({V}, {V}), got {A.shape}")
        if np.any(A < 0) or not np.allclose(A.sum(axis=1), 1.0, atol=1e-12):
            raise ValueError("transitions must be non-negative with rows that sum to 1")
        object.__setattr__(self, "transitions", A)
        object.__setattr__(self, "_π", self._solve_stationary())

    @classmethod
    def from_text(cls, text: str) -> MarkovSource:
        """The chain whose transition probabilities are the bigram frequencies of ``text``,
        read cyclically (the last character is followed by the first), so that every
        character has a successor."""
        if len(set(text)) < 2:
            raise ValueError(f"text must contain at least 2 distinct characters, got {text!r}")
        alphabet = "".join(sorted(set(text)))
        index = {c: i for i, c in enumerate(alphabet)}
        ids = np.array([index[c] for c in text])
        counts = np.zeros((len(alphabet), len(alphabet)))
        np.add.at(counts, (ids, np.roll(ids, -1)), 1.0)
        return cls(alphabet, counts / counts.sum(axis=1, keepdims=True))

    @property
    def vocab_size(self) -> int:
        """The number of characters V."""
        return len(self.alphabet)

    def stationary(self) -> np.ndarray:
        """The stationary distribution π (π A = π, Σ π = 1)."""
        return self._π.copy()

    def _solve_stationary(self) -> np.ndarray:
        V = self.vocab_size
        # Solve π (A - I) = 0 together with Σ π = 1 as one least-squares system.
        system = np.vstack([(self.transitions - np.eye(V)).T, np.ones((1, V))])
        rhs = np.zeros(V + 1)
        rhs[-1] = 1.0
        π = np.linalg.lstsq(system, rhs, rcond=None)[0]
        return np.clip(π, 0.0, None) / np.clip(π, 0.0, None).sum()

    def entropy_rate(self) -> float:
        """The entropy rate H̄ in nats per character: the lowest expected loss (cross-entropy
        per character) that any model of this source can reach."""
        A = self.transitions
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(A > 0, A * np.log(A), 0.0)
        return float(-(self.stationary() * plogp.sum(axis=1)).sum())

    def sample(self, n_chars: int, seed: int = 0) -> str:
        """A sample of ``n_chars`` characters, started from π; the same seed gives the same
        text."""
        n = check_int("n_chars", n_chars, 1)
        rng = np.random.default_rng(check_int("seed", seed, 0))
        V = self.vocab_size
        state = int(rng.choice(V, p=self.stationary()))
        # Draw each state's successors in bulk, then walk the chain taking them in turn: the
        # same distribution as drawing step by step, at a fraction of the cost.
        successors = [rng.choice(V, size=n, p=self.transitions[i]).tolist() for i in range(V)]
        used = [0] * V
        out = [state]
        for _ in range(n - 1):
            nxt = successors[state][used[state]]
            used[state] += 1
            state = nxt
            out.append(state)
        return "".join(self.alphabet[i] for i in out)


#: The chain behind :func:`synthetic_corpus`: character bigrams of a few English sentences.
DEFAULT_SOURCE = MarkovSource.from_text(_TEMPLATE)


def synthetic_corpus(n_chars: int, seed: int = 0, source: MarkovSource | None = None) -> str:
    """A seeded sample of synthetic text with a known entropy rate.

    Parameters
    ----------
    n_chars : int
        Length of the text, at least 1.
    seed : int
        Seed of the sampler: the same seed gives the same text.
    source : MarkovSource, optional
        The chain to sample; ``DEFAULT_SOURCE`` if omitted. Its
        :meth:`MarkovSource.entropy_rate` is the loss floor in nats per character.

    Returns
    -------
    str
        The text.

    Examples
    --------
    >>> text = synthetic_corpus(60, seed=1)
    >>> len(text)
    60
    """
    return (source or DEFAULT_SOURCE).sample(n_chars, seed)


class CharVocab:
    """A character-level tokenizer: one token id per character of a fixed alphabet.

    Parameters
    ----------
    chars : iterable of str
        The characters, in the order of their ids; duplicates are not allowed.

    Examples
    --------
    >>> vocab = CharVocab.from_text("hello")
    >>> vocab.chars
    'ehlo'
    >>> vocab.encode("hole").tolist()
    [1, 3, 2, 0]
    >>> vocab.decode([1, 3, 2, 0])
    'hole'
    """

    def __init__(self, chars: Iterable[str]):
        chars = "".join(chars)
        if len(chars) == 0:
            raise ValueError("chars must hold at least one character, got ''")
        if len(set(chars)) != len(chars):
            raise ValueError(f"chars must be distinct, got {chars!r}")
        self.chars = chars
        self._index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The vocabulary of the distinct characters of ``text``, sorted."""
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharVocab({self.chars!r})"

    def encode(self, text: str) -> torch.Tensor:
        """The token ids of ``text`` as a 1-D ``torch.long`` tensor."""
        try:
            ids = [self._index[c] for c in text]
        except KeyError as error:
            raise ValueError(
                f"text contains {error.args[0]!r}, which is not in the vocabulary {self.chars!r}"
            ) from None
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text of a sequence of token ids."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        V = len(self.chars)
        for i in ids:
            if not 0 <= i < V:
                raise ValueError(f"ids must be in [0, {V - 1}], got {i}")
        return "".join(self.chars[i] for i in ids)


def random_windows(
    ids: torch.Tensor, batch_size: int, length: int, generator: torch.Generator | int = 0
) -> torch.Tensor:
    """A batch of ``batch_size`` windows of ``length`` consecutive tokens from ``ids``, at
    uniformly random offsets.

    Parameters
    ----------
    ids : torch.Tensor
        1-D tensor of token ids (for example ``CharVocab.encode(text)``).
    batch_size : int
        Number of windows B ≥ 1.
    length : int
        Tokens per window, in [1, len(ids)].
    generator : torch.Generator or int
        Source of the offsets, or a seed for a new one.

    Returns
    -------
    torch.Tensor
        Shape ``(batch_size, length)``.
    """
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1:
        raise TypeError(f"ids must be a 1-D torch tensor, got {type(ids).__name__}")
    B = check_int("batch_size", batch_size, 1)
    n = check_int("length", length, 1, len(ids))
    if not isinstance(generator, torch.Generator):
        generator = torch.Generator().manual_seed(check_int("generator", generator, 0))
    starts = torch.randint(0, len(ids) - n + 1, (B,), generator=generator)
    return ids[starts[:, None] + torch.arange(n)]
