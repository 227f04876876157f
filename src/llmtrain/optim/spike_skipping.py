"""Skipping an update whose loss spikes far above the recent losses."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .._checks import check_int, check_real

__all__ = ["should_skip_update"]


def should_skip_update(
    loss: float, history: Sequence[float], *, threshold: float = 6.0, min_history: int = 10
) -> bool:
    """Whether to drop this step's update: its loss is not finite, or is a spike.

    Implements :prf:ref:`alg-loss-spike-skip`.

    A spike is a loss more than ``threshold`` standard deviations above the mean of
    ``history`` (the recent losses of updates that were applied). With fewer than
    ``min_history`` losses there is no baseline yet, and only a non-finite loss is skipped.
    """
    τ = check_real("threshold", threshold, 0.0, low_open=True)
    n_min = check_int("min_history", min_history, 2)
    loss = float(loss)
    if not math.isfinite(loss):
        return True
    if len(history) < n_min:
        return False
    recent = np.asarray(history, dtype=np.float64)
    return bool(loss > recent.mean() + τ * recent.std())
