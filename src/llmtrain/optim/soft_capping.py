"""Logit soft-capping: squash logits smoothly into (-cap, cap) (Gemma 2: 50 for attention
logits, 30 for the final logits)."""

from __future__ import annotations

import numpy as np

from .._checks import check_real
from . import _ops

__all__ = ["softcap"]


def softcap(z, cap: float):
    """``cap · tanh(z / cap)``: close to z while ``|z|`` ≪ cap, never beyond ±cap.

    Implements :prf:ref:`alg-softcap`.

    Works on NumPy arrays and torch tensors (differentiably: its derivative is
    1 - tanh²(z / cap), 1 at z = 0 and falling towards 0 as ``|z|`` approaches the cap).
    """
    c = check_real("cap", cap, 0.0, low_open=True)
    scaled = z / c
    return c * (scaled.tanh() if _ops._is_torch(scaled) else np.tanh(scaled))
