"""A character-level tokenizer: one id per distinct character of a training text."""

from __future__ import annotations

from .tokenizer import Tokenizer

__all__ = ["CharTokenizer"]


class CharTokenizer(Tokenizer):
    """Ids are the positions of the characters in the sorted set of a text's characters,
    as in nanoGPT's ``shakespeare_char`` (65 characters for Tiny Shakespeare)."""

    kind = "char"

    def __init__(self, chars: str):
        if not isinstance(chars, str) or not chars:
            raise ValueError("chars must be a non-empty string of distinct characters")
        if len(set(chars)) != len(chars):
            raise ValueError("chars must not repeat a character")
        self.chars = chars
        self._id = {c: i for i, c in enumerate(chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is the sorted set of characters of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("text must be non-empty to train a tokenizer")
        return cls("".join(sorted(set(text))))

    from_text = train

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._id[c] for c in text]
        except KeyError as error:
            raise ValueError(
                f"character {error.args[0]!r} is not in the tokenizer's {self.vocab_size} "
                "characters"
            ) from None

    def decode(self, ids) -> str:
        V = self.vocab_size
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < V:
                raise ValueError(f"id {i} is not in [0, {V})")
            out.append(self.chars[i])
        return "".join(out)

    def _state(self) -> dict:
        return {"chars": self.chars}

    @classmethod
    def _from_state(cls, state: dict) -> CharTokenizer:
        return cls(state["chars"])
