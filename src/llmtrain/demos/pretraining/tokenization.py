"""Demo of the tokenization chapter: vocabulary size against compression."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...pretraining import (
    HELD_OUT_MODULES,
    BPETokenizer,
    compression_curve,
    python_source,
)
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, moving_title

__all__ = ["vocabulary_size_demo"]

SENTENCE = "def tokenize(text):\n    return [word.lower() for word in text.split()]"
D_MODEL = 768  # GPT-2 small's width, for the embedding's size


@dataclass
class VocabularyPoint:
    vocab_size: int
    curve: np.ndarray  # held-out bytes per token for V = 256, 257, ...
    bytes_per_token: float
    tokens: list[str]


@lru_cache(maxsize=2)
def _trained(max_vocab: int) -> tuple[BPETokenizer, np.ndarray]:
    """One training run to the largest size; every smaller vocabulary is a prefix of it."""
    tok = BPETokenizer.train(python_source(), max_vocab)
    return tok, compression_curve(tok, python_source(HELD_OUT_MODULES))


@lru_cache(maxsize=128)
def _tokens(max_vocab: int, vocab_size: int, sentence: str) -> list[str]:
    tok = _trained(max_vocab)[0].truncated(vocab_size)
    return [tok.vocab[i].decode("utf-8", errors="replace") for i in tok.encode(sentence)]


def _compute(*, vocab_size, max_vocab, sentence):
    _, curve = _trained(max_vocab)
    return VocabularyPoint(
        vocab_size, curve, float(curve[vocab_size - 256]), _tokens(max_vocab, vocab_size, sentence)
    )


def _show(tokens: list[str]) -> str:
    shown = "·".join(t.replace(" ", "␣").replace("\n", "↵") for t in tokens)
    lines, line = [], ""
    for piece in shown.split("↵"):  # break the line where the text does
        lines.append(line + piece)
        line = "↵"
    return "\n".join(lines)


def _draw(fig, point, *, max_vocab, **_):
    ax, text_ax = fig.subplots(2, 1, height_ratios=[3, 1])
    text_ax.axis("off")
    Vs = np.arange(256, 256 + len(point.curve))
    ax.plot(Vs, point.curve, color="C0", linewidth=1.8)
    ax.set_xscale("log", base=2)
    ticks = [v for v in (256, 512, 1024, 2048, 4096, 8192, 16384) if v <= max_vocab]
    ax.set_xticks(ticks, [str(v) for v in ticks])
    ax.minorticks_off()
    ax.set_xlim(256, max_vocab)
    ax.set_ylim(0.9, point.curve[-1] * 1.1)
    ax.set_xlabel("vocabulary size V")
    ax.set_ylabel("held-out bytes per token")
    ax.grid(alpha=0.3)
    (marker,) = ax.plot([], [], "o", color="C3", markersize=8)
    title = moving_title(ax)
    text = text_ax.text(0.0, 1.0, "", family="monospace", fontsize=8.5, va="top",
                        transform=text_ax.transAxes)  # fmt: skip
    background = FrozenBackground(fig, [ax])
    dynamic = [marker, title, text]
    state = {"first": True}

    def update(point, **_):
        if state["first"]:
            state["first"] = False
        elif background.image is None:
            background.capture(dynamic)
        marker.set_data([point.vocab_size], [point.bytes_per_token])
        title.set_text(
            f"V = {point.vocab_size}: {point.bytes_per_token:.2f} bytes per token; embedding "
            f"V × {D_MODEL} = {point.vocab_size * D_MODEL / 1e6:.2f} M parameters"
        )
        text.set_text(f"{len(point.tokens)} tokens:\n{_show(point.tokens)}")

    update(point)
    return update


@demo_factory
def vocabulary_size_demo(max_vocab: int = 4096) -> Demo:
    """A byte-level BPE tokenizer trained once on Python's standard library
    (:func:`llmtrain.pretraining.python_source`), cut to V tokens by a slider: the held-out
    compression for every V (:func:`llmtrain.pretraining.compression_curve`) with the current
    one marked, and a line of code split into the tokens of that vocabulary."""
    return Demo(
        _compute,
        _draw,
        [
            Slider(
                "vocab_size",
                256,
                max_vocab,
                min(1024, max_vocab),
                scale="log",
                integer=True,
                label="vocabulary size V",
            )
        ],
        fixed={"max_vocab": max_vocab, "sentence": SENTENCE},
        figsize=(8.0, 5.0),
        alt=(
            "The held-out bytes per token of a byte-level BPE tokenizer against the vocabulary "
            "size V on a log axis, a red dot at the chosen V; below, a line of Python code split "
            "into the tokens of that vocabulary. The slider sets V."
        ),
    )
