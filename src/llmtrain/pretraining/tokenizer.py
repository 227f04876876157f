"""The interface every tokenizer of the book shares, and loading one from a file.

A tokenizer maps a string to a list of integer ids in ``[0, vocab_size)`` and back. The trainer
of Part III takes any :class:`Tokenizer`, so a character-level and a byte-level BPE model are
trained by the same code; a saved tokenizer records its kind, and :func:`load_tokenizer`
rebuilds whichever kind the file holds.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import ClassVar

__all__ = ["Tokenizer", "load_tokenizer"]

_FORMAT_VERSION = 1


class Tokenizer:
    """Base class of the book's tokenizers (in the style of minbpe).

    Subclasses set ``kind`` (the name written in saved files) and implement ``encode``,
    ``decode``, ``vocab_size``, ``_state`` (the JSON-serialisable content) and
    ``_from_state``.
    """

    kind: ClassVar[str] = ""
    _kinds: ClassVar[dict[str, type[Tokenizer]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Tokenizer._kinds[cls.kind] = cls

    @property
    def vocab_size(self) -> int:
        """Number of distinct ids, V: every id lies in ``[0, vocab_size)``."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def _state(self) -> dict:
        raise NotImplementedError

    @classmethod
    def _from_state(cls, state: dict) -> Tokenizer:
        raise NotImplementedError

    def save(self, path) -> None:
        """Write the tokenizer to ``path`` as JSON. The file is written to a temporary file
        next to it and moved into place, so a failure never leaves half a file."""
        path = Path(path)
        content = {"kind": self.kind, "version": _FORMAT_VERSION, **self._state()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(content, f, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path) -> Tokenizer:
        """Read a tokenizer written by :meth:`save`. ``Tokenizer.load`` returns whichever kind
        the file holds; a subclass's ``load`` insists on its own kind."""
        path = Path(path)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read a tokenizer from {str(path)!r}: {error}") from None
        kind = state.get("kind") if isinstance(state, dict) else None
        if kind not in Tokenizer._kinds:
            known = ", ".join(sorted(Tokenizer._kinds))
            raise ValueError(
                f"{str(path)!r} is not a saved tokenizer: its 'kind' is {kind!r}, "
                f"expected one of {known}"
            )
        if state.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"{str(path)!r} has format version {state.get('version')!r}, "
                f"expected {_FORMAT_VERSION}"
            )
        target = Tokenizer._kinds[kind]
        if cls is not Tokenizer and target is not cls:
            raise ValueError(f"{str(path)!r} holds a {kind!r} tokenizer, not a {cls.kind!r} one")
        try:
            return target._from_state(state)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{str(path)!r} is not a valid {kind!r} tokenizer: {error}") from None


def load_tokenizer(path) -> Tokenizer:
    """Load a tokenizer of any kind saved with :meth:`Tokenizer.save`."""
    return Tokenizer.load(path)
