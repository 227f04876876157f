"""Look at a demo's figure in tests: its pixels, and how much two figures differ."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image


def pixels(demo) -> np.ndarray:
    """The demo's current figure as an integer RGBA array."""
    return np.asarray(PIL.Image.open(io.BytesIO(demo.png())), dtype=int)


def differing_fraction(a: np.ndarray, b: np.ndarray, threshold: int = 30) -> float:
    """The fraction of pixels whose RGBA values differ by more than ``threshold`` in sum.

    A demo that updates in place (frozen backgrounds, moved artists) may differ from a fresh
    one by anti-aliasing where moving lines cross static ones; a stale or misplaced artist
    changes far more pixels than that.
    """
    return float((np.abs(a - b).sum(axis=-1) > threshold).mean())
