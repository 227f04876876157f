"""Drawing token sequences as text, with corrupted tokens highlighted.

Shared by the demos of the masked and denoising objectives. A :class:`TokenText` owns a
fixed pool of text artists laid out in monospace lines; ``update`` rewrites their text and
colours in place, which is much faster than drawing new ones on every slider move.
"""

from __future__ import annotations

import torch

__all__ = ["PASSAGE", "STYLES", "TokenText", "WordVocab"]

#: A short passage written for the book; its words are the demos' tokens.
PASSAGE = (
    "a model that reads the whole sentence can use the words on both sides of a gap to guess "
    "what is missing . the same model cannot write a sentence one word at a time , because "
    "it expects to see the words that come after . a decoder reads only the past , so it can "
    "generate text , and it learns from every position at once ."
)

#: Background colour of each kind of token (None: no box).
STYLES = {
    "plain": None,
    "mask": "#e8747c",  # replaced by [MASK]
    "random": "#f5b041",  # replaced by a random token
    "same": "#f9e79f",  # selected but left unchanged
    "sentinel": "#85c1e9",  # a T5 sentinel
    "noise": "#d5dbdb",  # a dropped-out token, shown in the target
    "insert": "#c39bd3",  # a mask inserted by a span of length 0
}


class WordVocab:
    """Whitespace tokens of :data:`PASSAGE` plus special tokens at the end of the
    vocabulary; ``decode`` names specials in brackets."""

    def __init__(self, text: str = PASSAGE, specials: tuple[str, ...] = ("[MASK]",)):
        self.words = sorted(set(text.split()))
        self.specials = list(specials)
        self.index = {w: i for i, w in enumerate(self.words + self.specials)}

    def __len__(self) -> int:
        return len(self.words) + len(self.specials)

    def id(self, token: str) -> int:
        return self.index[token]

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.index[w] for w in text.split()], dtype=torch.int64)

    def token(self, i: int) -> str:
        names = self.words + self.specials
        return names[i] if 0 <= i < len(names) else f"<{i}>"


class TokenText:
    """A block of ``capacity`` token slots in figure coordinates ``[x0, x1] × [y0, y1]``,
    wrapped at ``columns`` characters per line, drawn in a monospace font."""

    def __init__(self, fig, capacity, *, x0, y0, x1, columns=96, line_height=0.07, size=9.5):
        self.fig, self.x0, self.y0, self.line_height = fig, x0, y0, line_height
        self.columns, self.char_width = columns, (x1 - x0) / columns
        self.artists = [
            fig.text(x0, y0, "", family="monospace", fontsize=size, va="top", ha="left")
            for _ in range(capacity)
        ]

    def update(self, tokens: list[str], kinds: list[str]) -> int:
        """Show ``tokens`` with the given kinds (keys of :data:`STYLES`); returns the number
        of lines used. Tokens beyond the capacity are not shown."""
        column, line = 0, 0
        for k, artist in enumerate(self.artists):
            if k >= len(tokens):
                artist.set_visible(False)
                continue
            word = tokens[k]
            if column + len(word) > self.columns and column > 0:
                column, line = 0, line + 1
            artist.set_visible(True)
            artist.set_text(word)
            artist.set_position(
                (self.x0 + column * self.char_width, self.y0 - line * self.line_height)
            )
            colour = STYLES[kinds[k]]
            if colour is None:
                artist.set_bbox(None)
            else:
                artist.set_bbox(dict(boxstyle="square,pad=0.15", facecolor=colour, lw=0))
            column += len(word) + 1
        return line + 1
