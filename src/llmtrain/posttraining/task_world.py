"""A small world whose answers a program can check: string tasks on made-up words.

Every claim Part IV makes about a model "following instructions" is an exact-match accuracy
in this world. Its words are invented (syllables of one consonant and one vowel), so no
model knows them from anywhere else, and each task has exactly one right answer:

- ``reverse``: the word spelled backwards (``kelum`` -> ``mulek``);
- ``capitals``: the word in capital letters (``kelum`` -> ``KELUM``);
- ``length``: how many letters it has (``kelum`` -> ``5``);
- ``first_letter``: its first letter (``kelum`` -> ``k``).

The words are split once: the *training* words appear in the pretraining text and the
fine-tuning data, the *test* words in neither, so a test prompt can only be answered by a
model that has learned the task, not memorised the answer.

:func:`pretraining_text` states facts about the training words in plain prose ("Read from
the end, kelum is mulek."), never as a question followed by an answer; the instruction
format (:func:`make_examples`, in a chat template from :mod:`~llmtrain.posttraining.chat`)
is what fine-tuning adds.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from .._checks import check_int

__all__ = [
    "TASKS",
    "Example",
    "check_answer",
    "correct_answer",
    "fact_prompt",
    "make_examples",
    "pretraining_text",
    "world_words",
]

#: The four tasks, in a fixed order.
TASKS = ("reverse", "capitals", "length", "first_letter")

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_WORLD_SEED = 2024
_N_WORDS = 3000
_N_TEST_WORDS = 300
# Reversing is the hardest task to learn: the pretraining text states it most often.
_FACT_WEIGHTS = (4, 3, 2, 1)

# Ways to ask for each task (the instruction data and the test prompts share them) ...
_INSTRUCTIONS = {
    "reverse": ("Reverse the word {w}.", "Spell {w} backwards.", "What is {w} backwards?"),
    "capitals": ("Write {w} in capital letters.", "Capitalise {w}.", "What is {w} in capitals?"),
    "length": ("How many letters are in {w}?", "Count the letters of {w}.", "How long is {w}?"),
    "first_letter": ("What is the first letter of {w}?", "Which letter starts {w}?"),
}
# ... and the sentences of the pretraining text, which state the same facts as prose.
_FACTS = {
    "reverse": ("Read from the end, {w} is {a}.", "The word {w} reversed gives {a}."),
    "capitals": ("In capitals, {w} is written {a}.", "Shouted, {w} becomes {a}."),
    "length": ("The word {w} has {a} letters.", "There are {a} letters in {w}."),
    "first_letter": ("The word {w} begins with {a}.", "{w} starts with the letter {a}."),
}


def correct_answer(task: str, word: str) -> str:
    """The one right answer of ``task`` for ``word``."""
    if task == "reverse":
        return word[::-1]
    if task == "capitals":
        return word.upper()
    if task == "length":
        return str(len(word))
    if task == "first_letter":
        return word[0]
    raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")


def world_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The training words and the test words (disjoint, each sorted), the same on every call.

    Words are 3 to 5 letters of alternating consonants and vowels, drawn with a fixed seed.
    A word and its reversal (``bakel`` and ``lekab`` are both words) always fall on the same
    side, so that no test word appears in the pretraining text as another word's answer.
    """
    rng = random.Random(_WORLD_SEED)
    words: set[str] = set()
    while len(words) < _N_WORDS:
        syllables = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(3))
        words.add(syllables[: rng.randint(3, 5)])
    groups = sorted({tuple(sorted({w, w[::-1]} & words)) for w in words})
    rng.shuffle(groups)
    test: list[str] = []
    for group in groups:
        if len(test) >= _N_TEST_WORDS:
            break
        test.extend(group)
    train = words - set(test)
    return tuple(sorted(train)), tuple(sorted(test))


@dataclass(frozen=True)
class Example:
    """One instruction and its answer: ``prompt`` asks ``task`` about ``word``;
    ``response`` is the one right answer."""

    task: str
    word: str
    prompt: str
    response: str


def _words(split: str) -> tuple[str, ...]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    train, test = world_words()
    return train if split == "train" else test


def make_examples(
    split: str, n: int, *, seed: int = 0, tasks: tuple[str, ...] = TASKS
) -> list[Example]:
    """n instruction examples on the ``split`` words (``"train"`` or ``"test"``): task,
    word and phrasing drawn at random with ``seed``, the tasks taken in turn so that each
    gets an equal share."""
    words = _words(split)
    check_int("n", n, 1)
    for task in tasks:
        correct_answer(task, "x")  # an unknown task fails here, naming the valid ones
    rng = random.Random(f"{split}-{seed}")
    examples = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        word = rng.choice(words)
        prompt = rng.choice(_INSTRUCTIONS[task]).format(w=word)
        examples.append(Example(task, word, prompt, correct_answer(task, word)))
    return examples


@functools.cache  # every cache key of Part IV's models hashes it
def pretraining_text(n_sentences: int = 60_000, *, seed: int = 0) -> str:
    """Prose stating facts about the training words, one sentence per fact, a few sentences
    per line: the base model's pretraining text. It contains every ingredient of the tasks
    but never an instruction followed by its answer."""
    check_int("n_sentences", n_sentences, 1)
    words = _words("train")
    rng = random.Random(f"facts-{seed}")
    sentences = []
    for _ in range(n_sentences):
        task, word = rng.choices(TASKS, weights=_FACT_WEIGHTS)[0], rng.choice(words)
        sentences.append(rng.choice(_FACTS[task]).format(w=word, a=correct_answer(task, word)))
    lines = (" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4))
    return "\n".join(lines) + "\n"


def fact_prompt(example: Example) -> str:
    """The start of a pretraining sentence that states the example's answer next: the same
    question asked in the base model's own language (``"Read from the end, kelum is "``)."""
    sentence = _FACTS[example.task][0]
    return sentence[: sentence.index("{a}")].format(w=example.word)


def check_answer(example: Example, completion: str | None) -> bool:
    """Exact match: the completion is the right answer, character for character (a model that
    never ended its answer, ``None``, is wrong)."""
    return completion is not None and completion == example.response
