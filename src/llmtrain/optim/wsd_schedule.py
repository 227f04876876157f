"""The warmup-stable-decay (WSD) schedule: a constant rate with a short cooldown at the end.

Written like the schedules of :mod:`llmtrain.optim.schedules`: a pure function of the update
step t = 1, 2, ... that takes an integer or an integer array, usable with
:class:`~llmtrain.optim.ScheduledLR`.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_real
from .schedules import _check_floor, _out, _steps

__all__ = ["COOLDOWN_SHAPES", "warmup_stable_decay"]

#: Cooldown shapes: the fraction of the way from α_max down to α_min, as a function of the
#: progress ``p`` in (0, 1] through the cooldown.
COOLDOWN_SHAPES = {
    "linear": lambda p: p,
    "1-sqrt": np.sqrt,  # Hägele et al.: the rate is α_min + (α_max − α_min)(1 − √p)
}


def warmup_stable_decay(
    t,
    *,
    lr: float,
    total: int,
    decay: int,
    warmup: int = 0,
    min_lr: float = 0.0,
    shape: str = "linear",
):
    """Warmup, a stable phase at the peak, and a cooldown over the last T_d updates.

    Implements :prf:ref:`alg-wsd`. With p = (t − (T − T_d)) / T_d the progress through the
    cooldown:

    - α_t = α_max t / T_w for t ≤ T_w;
    - α_t = α_max for T_w < t ≤ T − T_d;
    - α_t = α_min + (α_max − α_min)(1 − p) (``"linear"``) or
      α_min + (α_max − α_min)(1 − √p) (``"1-sqrt"``) for T − T_d < t ≤ T;
    - α_t = α_min for t > T.

    Up to step T − T_d the rate does not depend on T: runs of different lengths share it, so
    a longer run can continue from a checkpoint of the stable phase.

    Parameters
    ----------
    t : int or array of int
        Update step(s), t ≥ 1.
    lr : float
        Peak (stable) learning rate α_max ≥ 0.
    total : int
        Step T ≥ 1 at which the cooldown reaches the floor.
    decay : int
        Cooldown length T_d in [1, T − T_w].
    warmup : int
        Warmup length T_w in [0, T − 1].
    min_lr : float
        Floor α_min in [0, α_max].
    shape : {"linear", "1-sqrt"}
        Shape of the cooldown.
    """
    ts, scalar = _steps(t)
    α_max = check_real("lr", lr, 0.0)
    T = check_int("total", total, 1)
    T_w = check_int("warmup", warmup, 0, T - 1)
    T_d = check_int("decay", decay, 1, T - T_w)
    α_min = _check_floor(min_lr, α_max)
    if shape not in COOLDOWN_SHAPES:
        raise ValueError(f"shape must be one of {sorted(COOLDOWN_SHAPES)}, got {shape!r}")
    p = np.clip((ts - (T - T_d)) / T_d, 0.0, 1.0)
    α = α_max - (α_max - α_min) * COOLDOWN_SHAPES[shape](p)
    if T_w:
        α = np.where(ts <= T_w, α_max * ts / T_w, α)
    return _out(α, scalar)
