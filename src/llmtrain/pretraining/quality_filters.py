"""Gopher's heuristic quality rules (Rae et al., 2021, Appendix A: quality filtering of MassiveWeb).

Seven simple, readable rules against machine-generated and boilerplate web pages, applied
without a learned model. The paper states the thresholds but not how text is cut into words
and lines, nor which characters are bullets; the choices made here are documented on
:func:`gopher_quality_filter`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

__all__ = ["GOPHER_RULES", "GOPHER_STOP_WORDS", "QualityVerdict", "gopher_quality_filter"]

GOPHER_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})

# rule name -> what a document must satisfy to pass it
GOPHER_RULES: dict[str, str] = {
    "word_count": "between 50 and 100,000 words",
    "mean_word_length": "mean word length between 3 and 10 characters",
    "symbol_ratio": "at most 0.1 hash symbols, and at most 0.1 ellipses, per word",
    "bullet_lines": "at most 90% of lines start with a bullet point",
    "ellipsis_lines": "at most 30% of lines end with an ellipsis",
    "alphabetic_words": "at least 80% of words contain an alphabetic character",
    "stop_words": "at least two of the words the, be, to, of, and, that, have, with",
}

_BULLETS = ("•", "●", "○", "◦", "▪", "▫", "‣", "⁃", "-", "*", "–")
_ELLIPSES = ("...", "…")
_STRIP = string.punctuation + "“”‘’«»…"


@dataclass(frozen=True)
class QualityVerdict:
    """The outcome of a quality filter: whether to keep the document, the rules it failed
    (in the order of ``GOPHER_RULES``) and the statistics they were decided on. A verdict
    is true when the document is kept."""

    keep: bool
    failed: tuple[str, ...]
    stats: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.keep


def gopher_quality_filter(text: str) -> QualityVerdict:
    """Apply Gopher's seven quality rules to one document; say which ones it fails.

    Implements :prf:ref:`alg-gopher-quality-filter`. Choices the paper leaves open:
    words are the whitespace-separated pieces of the text; lines are its non-blank lines;
    a bullet is one of ``• ● ○ ◦ ▪ ▫ ‣ ⁃ - * –`` at the start of a line (after indentation);
    an ellipsis is ``...`` or ``…``; a word counts as a stop word after lower-casing and
    stripping punctuation from its ends, and the stop-word rule asks for two *different*
    stop words ("at least two of the following words"). A document with no words fails the
    word-count rule only, since the ratios are undefined.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    words = text.split()
    n = len(words)
    stats: dict[str, float] = {"words": n}
    failed = []
    if not 50 <= n <= 100_000:
        failed.append("word_count")
    if n == 0:
        return QualityVerdict(False, tuple(failed), stats)

    stats["mean_word_length"] = sum(map(len, words)) / n
    stats["hash_ratio"] = text.count("#") / n
    stats["ellipsis_ratio"] = sum(text.count(e) for e in _ELLIPSES) / n
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    stats["bullet_lines"] = sum(line.startswith(_BULLETS) for line in lines) / len(lines)
    stats["ellipsis_lines"] = sum(line.endswith(_ELLIPSES) for line in lines) / len(lines)
    stats["alphabetic_words"] = sum(any(ch.isalpha() for ch in w) for w in words) / n
    present = {w.lower().strip(_STRIP) for w in words} & GOPHER_STOP_WORDS
    stats["stop_words"] = len(present)

    if not 3 <= stats["mean_word_length"] <= 10:
        failed.append("mean_word_length")
    if stats["hash_ratio"] > 0.1 or stats["ellipsis_ratio"] > 0.1:
        failed.append("symbol_ratio")
    if stats["bullet_lines"] > 0.9:
        failed.append("bullet_lines")
    if stats["ellipsis_lines"] > 0.3:
        failed.append("ellipsis_lines")
    if stats["alphabetic_words"] < 0.8:
        failed.append("alphabetic_words")
    if stats["stop_words"] < 2:
        failed.append("stop_words")
    return QualityVerdict(not failed, tuple(failed), stats)
