"""Drawing token sequences as text, with corrupted tokens highlighted.

Shared by the demos of the masked and denoising objectives. A :class:`TokenText` owns a
fixed pool of text artists laid out in monospace lines; ``update`` rewrites their text and
colours in place, which is much faster than drawing new ones on every slider move.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

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
    wrapped at ``columns`` characters per line, drawn in a monospace font.

    Rendering glyphs is what a slider move of these demos spends its time on, so each
    distinct word is rendered once (per size and resolution) into a small image and later
    draws only paste those images; all the coloured boxes are one polygon collection behind
    them. Tokens sit on a grid of character cells whose width is the font's advance.
    """

    def __init__(self, fig, capacity, *, x0, y0, x1, columns=96, line_height=0.07, size=9.5):
        self.fig, self.x0, self.y0, self.line_height = fig, x0, y0, line_height
        self.capacity = capacity
        style = dict(family="monospace", fontsize=size, va="top", ha="left")
        probe = fig.text(x0, y0, "M" * 40, **style)
        try:
            extent = probe.get_window_extent(fig.canvas.get_renderer())
            extent = extent.transformed(fig.transFigure.inverted())
            self.char_width, self.box_height = extent.width / 40, extent.height
        except (AttributeError, TypeError):  # a canvas without a renderer: use DejaVu Sans Mono
            width_in, height_in = fig.get_size_inches()
            self.char_width = 0.602 * size / 72 / width_in
            self.box_height = 1.17 * size / 72 / height_in
        finally:
            probe.remove()
        self.columns = min(columns, int((x1 - x0) / self.char_width))
        self.words = _Words(size)
        fig.add_artist(self.words)
        self.boxes = PolyCollection([], linewidths=0, transform=fig.transFigure, zorder=1)
        fig.add_artist(self.boxes)
        self._pad = 0.15 * size / 72 / fig.get_size_inches()[0]

    @property
    def artists(self) -> list:
        """The artists an update changes (for :class:`llmtrain.demos.plots.FrozenBackground`)."""
        return [self.words, self.boxes]

    def update(self, tokens: list[str], kinds: list[str]) -> int:
        """Show ``tokens`` with the given kinds (keys of :data:`STYLES`); returns the number
        of lines used. Tokens beyond the capacity are not shown."""
        column, line, verts, colours, placed = 0, 0, [], [], []
        pad_y = self._pad * self.fig.get_size_inches()[0] / self.fig.get_size_inches()[1]
        for word, kind in zip(tokens[: self.capacity], kinds, strict=False):
            if column + len(word) > self.columns and column > 0:
                column, line = 0, line + 1
            left = self.x0 + column * self.char_width
            top = self.y0 - line * self.line_height
            placed.append((word, left, top))
            colour = STYLES[kind]
            if colour is not None:
                right = left + len(word) * self.char_width + self._pad
                high, low = top + pad_y, top - self.box_height - pad_y
                verts.append(
                    [(left - self._pad, low), (right, low), (right, high), (left - self._pad, high)]
                )
                colours.append(colour)
            column += len(word) + 1
        self.words.placed = placed
        self.words.stale = True
        self.boxes.set_verts(verts)
        self.boxes.set_facecolor(colours or "none")
        return line + 1


class _Words(Artist):
    """Words pasted as pre-rendered images at figure-fraction positions (their top left)."""

    def __init__(self, size: float):
        super().__init__()
        self.size = size
        self.placed: list[tuple[str, float, float]] = []
        self.set_zorder(3)

    def draw(self, renderer):
        if not self.get_visible():
            return
        gc = renderer.new_gc()
        width, height = renderer.width, renderer.height
        for word, x, y in self.placed:
            image = _rendered(word, self.size, float(renderer.dpi))
            renderer.draw_image(
                gc,
                round(x * width) - _PAD_PX,
                round(y * height) - image.shape[0],
                image,
            )
        gc.restore()
        self.stale = False


_PAD_PX = 2


@lru_cache(maxsize=4096)
def _rendered(word: str, size: float, dpi: float) -> np.ndarray:
    """``word`` in black monospace on a transparent background, rows bottom-up, with the
    top of its text box at the top row and its left edge ``_PAD_PX`` pixels in."""
    width_px = _PAD_PX * 2 + int(np.ceil(0.7 * size / 72 * dpi * max(len(word), 1))) + 4
    height_px = int(np.ceil(2.0 * size / 72 * dpi))
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    fig.patch.set_visible(False)
    fig.text(_PAD_PX / width_px, 1.0, word, family="monospace", fontsize=size, va="top")
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())
    rows = np.flatnonzero(pixels[..., 3].any(axis=1))
    bottom = rows[-1] + 1 if len(rows) else 1
    return np.ascontiguousarray(pixels[:bottom][::-1])
