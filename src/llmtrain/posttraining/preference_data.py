"""Preference data in the checkable world: pairs of answers to one prompt, one of them
preferred by a simulated labeller.

Each pair puts the right answer next to a *near miss*, a wrong answer close to it (a letter
swapped, dropped or doubled, a count off by one), so that telling them apart takes knowing
the task, not spotting nonsense. The labeller prefers the right answer, except that it may be
biased: with probability ``length_bias`` it prefers the longer of the two answers whenever
their lengths differ. Human labellers have such biases (longer answers look more thorough), a
reward model learns them from the labels, and a policy optimised against that reward model
exploits them: it learns to lengthen its answers rather than to get them right.

:class:`PairBatches` serves the pairs to :func:`~llmtrain.pretraining.train_loop` as four
tensors: the token ids and response masks of the chosen and of the rejected answers.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import check_int, check_real
from ..pretraining import Tokenizer
from .chat import encode_chat
from .task_world import Example, check_answer, make_examples

__all__ = ["PairBatches", "PreferencePair", "near_miss", "preference_pairs"]


def _swaps(s: str) -> list[str]:
    """``s`` with two adjacent letters exchanged (every place where that changes it)."""
    return [s[:i] + s[i + 1] + s[i] + s[i + 2 :] for i in range(len(s) - 1) if s[i] != s[i + 1]]


def _drops(s: str) -> list[str]:
    return [s[:i] + s[i + 1 :] for i in range(len(s))] if len(s) > 1 else []


def _doubles(s: str) -> list[str]:
    return [s[:i] + s[i] + s[i:] for i in range(len(s))]


def _near_misses(example: Example) -> list[list[str]]:
    """The corruptions that fit the example's task, one list of candidate answers each."""
    word, answer = example.word, example.response
    if example.task == "reverse":
        return [_swaps(answer), _drops(answer), _doubles(answer), [word]]  # word: not reversed
    if example.task == "capitals":
        lower = [answer[:i] + answer[i].lower() + answer[i + 1 :] for i in range(len(answer))]
        return [lower, _doubles(answer), _drops(answer)]
    if example.task == "length":
        n = int(answer)
        return [[str(m) for m in (n - 1, n + 1) if m > 0]]
    if example.task == "first_letter":
        alphabet = string.ascii_lowercase
        following = alphabet[(alphabet.index(answer) + 1) % 26]
        return [list(word[1:]), [following], [word[:2]]]
    raise ValueError(f"example.task must be a task of the task world, got {example.task!r}")


def near_miss(example: Example, generator: torch.Generator) -> str:
    """A wrong answer to ``example`` that is close to the right one.

    A kind of corruption that fits the task is drawn uniformly, then one of its answers:

    - ``reverse``: two adjacent letters swapped, a letter dropped, a letter doubled, or the
      word itself (not reversed);
    - ``capitals``: one letter left in lower case, a letter doubled, a letter dropped;
    - ``length``: the count plus or minus one;
    - ``first_letter``: another letter of the word, the next letter of the alphabet, or the
      first two letters.

    Candidates that happen to be right (the word of a palindrome) are left out, so the answer
    is always wrong by :func:`~llmtrain.posttraining.check_answer`. The draws come from
    ``generator`` alone: the same generator state gives the same near miss.
    """
    if not isinstance(example, Example):
        raise TypeError(f"example must be an Example, got {type(example).__name__}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    kinds = [
        sorted({c for c in kind if not check_answer(example, c)}) for kind in _near_misses(example)
    ]
    kinds = [kind for kind in kinds if kind]
    kind = kinds[int(torch.randint(len(kinds), (1,), generator=generator))]
    return kind[int(torch.randint(len(kind), (1,), generator=generator))]


@dataclass(frozen=True)
class PreferencePair:
    """Two answers to one example, ``chosen`` preferred to ``rejected`` by the labeller.

    Attributes
    ----------
    example : Example
        The prompt and its right answer.
    chosen, rejected : str
        The preferred and the other answer; one of them is right, the other a near miss.
    label_correct : bool
        Whether the labeller preferred the right answer (False when its bias won).
    """

    example: Example
    chosen: str
    rejected: str
    label_correct: bool

    @property
    def correct(self) -> str:
        """The right answer of the pair, whichever the labeller chose."""
        return self.chosen if self.label_correct else self.rejected

    @property
    def wrong(self) -> str:
        """The near miss of the pair."""
        return self.rejected if self.label_correct else self.chosen


def preference_pairs(
    split: str, n: int, seed: int = 0, *, length_bias: float = 0.0
) -> list[PreferencePair]:
    """n preference pairs on :func:`~llmtrain.posttraining.make_examples` ``(split, n,
    seed=seed)``: each example's right answer against a :func:`near_miss`.

    The simulated labeller prefers the right answer; but when the two answers differ in
    length, with probability ``length_bias`` (in [0, 1]) it prefers the longer one instead,
    right or wrong. So a fraction ``length_bias`` of the pairs whose near miss is the longer
    answer are labelled the wrong way round. Every random draw comes from one generator
    seeded with ``seed``.

    Implements :prf:ref:`alg-preference-pairs`.
    """
    length_bias = check_real("length_bias", length_bias, 0.0, 1.0)
    seed = check_int("seed", seed, 0)
    examples = make_examples(split, n, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for e in examples:
        wrong = near_miss(e, generator)
        # Drawn for every pair, so that the pairs do not depend on which ones were biased.
        biased = float(torch.rand((), generator=generator)) < length_bias
        prefer_wrong = biased and len(wrong) > len(e.response)
        chosen, rejected = (wrong, e.response) if prefer_wrong else (e.response, wrong)
        pairs.append(PreferencePair(e, chosen, rejected, not prefer_wrong))
    return pairs


def encode_responses(
    tokenizer: Tokenizer, prompts: Sequence[str], responses: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and response masks of prompts and responses in the chat template: rows of
    ``prompt + response + <|end|>``, right-padded with ``<|end|>`` to the longest row. The mask
    is 1 on the response's tokens and its final ``<|end|>``, 0 on the prompt and the padding
    (so ``mask[:, 0]`` is 0: the first token is always the prompt's ``<|user|>``)."""
    rows = [encode_chat(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    return _pad(rows, tokenizer.special_tokens["<|end|>"])


def _pad(rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, ...]:
    T = max(len(p) + len(r) for p, r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (p, r) in enumerate(rows):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        mask[i, len(p) : len(p) + len(r)] = 1
    return ids, mask


class PairBatches:
    """Preference pairs as batches for :func:`~llmtrain.pretraining.train_loop`.

    ``batch(n, generator)`` draws n pairs uniformly at random (with replacement) and returns
    ``(chosen_ids, chosen_mask, rejected_ids, rejected_mask)``, four (n, T) tensors: each row
    is the prompt in the chat template followed by the answer and ``<|end|>``, right-padded with
    ``<|end|>`` to the longest of the 2n rows; a mask is 1 on the answer's tokens and the final
    ``<|end|>``, 0 on the prompt and the padding (so ``mask[:, 0]`` is 0). :meth:`everything`
    gives all pairs in order, for evaluation. ``block_size`` bounds the length of a row.
    """

    def __init__(self, tokenizer: Tokenizer, pairs: Sequence[PreferencePair], block_size: int):
        self.block_size = check_int("block_size", block_size, 2)
        if len(pairs) == 0:
            raise ValueError("pairs must hold at least one PreferencePair, got none")
        if not all(isinstance(p, PreferencePair) for p in pairs):
            raise TypeError("pairs must be a sequence of PreferencePair")
        self.pad_id = tokenizer.special_tokens["<|end|>"]
        self.rows = [
            (
                encode_chat(tokenizer, p.example.prompt, p.chosen),
                encode_chat(tokenizer, p.example.prompt, p.rejected),
            )
            for p in pairs
        ]
        longest = max(len(p) + len(r) for pair in self.rows for p, r in pair)
        if longest > self.block_size:
            raise ValueError(
                f"block_size must be at least the longest row's {longest} tokens, "
                f"got {self.block_size}"
            )

    def __len__(self) -> int:
        return len(self.rows)

    def _batch(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        # Chosen and rejected rows padded together, to one length T.
        rows = [self.rows[i][0] for i in indices] + [self.rows[i][1] for i in indices]
        ids, mask = _pad(rows, self.pad_id)
        n = len(indices)
        return ids[:n], mask[:n], ids[n:], mask[n:]

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        n = check_int("n", n, 1)
        indices = torch.randint(len(self.rows), (n,), generator=generator).tolist()
        return self._batch(indices)

    def everything(self) -> tuple[torch.Tensor, ...]:
        """All pairs, in order, as one batch."""
        return self._batch(list(range(len(self.rows))))

    def prompt(self) -> torch.Tensor:
        return torch.tensor(self.rows[0][0][0])

    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.block_size, self.rows]).encode()).hexdigest()
