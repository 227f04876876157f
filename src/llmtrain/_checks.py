"""Argument checks whose errors name the argument and the range it must lie in.

Every public function of the package validates its inputs with these helpers, so that a
reader who passes ``lr=-0.1`` reads ``lr must be in [0, inf), got -0.1`` instead of
watching a run produce NaN.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

__all__ = ["check_int", "check_real", "check_shape_match", "interval"]


def interval(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> str:
    """Write an interval the way the book does: ``[0, 1)``, ``(0, inf)``."""
    left = "(" if low_open or low == -math.inf else "["
    right = ")" if high_open or high == math.inf else "]"
    return f"{left}{_fmt(low)}, {_fmt(high)}{right}"


def _fmt(x: float) -> str:
    if x == math.inf:
        return "inf"
    if x == -math.inf:
        return "-inf"
    return f"{x:g}"


def check_real(
    name: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float, or raise an error naming ``name`` and the valid range.

    NaN is never valid. Infinite bounds are always open.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    x = float(value)
    below = x < low or (low_open and x == low)
    above = x > high or (high_open and x == high)
    if math.isnan(x) or below or above or math.isinf(x):
        rng = interval(low, high, low_open=low_open, high_open=high_open)
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return x


def check_int(name: str, value: object, low: int = -(2**63), high: int = 2**63 - 1) -> int:
    """Return ``value`` as an int in ``[low, high]``, or raise an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        hi = "inf" if high == 2**63 - 1 else str(high)
        lo = "-inf" if low == -(2**63) else str(low)
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_shape_match(name_a: str, shape_a: tuple, name_b: str, shape_b: tuple) -> None:
    """Raise an error naming both arguments when two shapes differ."""
    if tuple(shape_a) != tuple(shape_b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, "
            f"got {tuple(shape_a)} and {tuple(shape_b)}"
        )
