"""Helpers shared by the adaptive update rules (AdaGrad, RMSProp, Adam, Adafactor).

The moving averages and sums of a rule's state are updated in place (the ``*_`` helpers), and
the new parameters are a new array: the caller's θ and g are never modified, and a state is
passed on from step to step, never reused. Writing into memory that is already there, with the
fused operations ``torch.optim`` itself uses on tensors (``lerp_``, ``addcmul_``, ``addcdiv``),
is what lets a rule written once for NumPy and torch keep pace with ``torch.optim``; fresh
arrays on every step cost more than the arithmetic. The fused operations also round as torch
does, so that the numbers agree to the last bits.
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import check_real
from ._ops import _is_torch, zeros_like


def ema_(average, x, weight: float):
    """Update ``average`` in place to ``average + weight (x - average)``
    = ``(1 - weight) average + weight x``, an exponential moving average; return it."""
    if _is_torch(average):
        return average.lerp_(x, weight)
    average += weight * (x - average)
    return average


def ema_of_squares_(average, g, weight: float):
    """Update ``average`` in place to ``(1 - weight) average + weight g ⊙ g``; return it."""
    if _is_torch(average):
        return average.mul_(1.0 - weight).addcmul_(g, g, value=weight)
    average *= 1.0 - weight
    average += weight * (g * g)
    return average


def add_square_(s, g):
    """Update ``s`` in place to ``s + g ⊙ g``; return it."""
    if _is_torch(s):
        return s.addcmul_(g, g)
    s += g * g
    return s


def add_ratio_(b, numerator, denominator):
    """Update ``b`` in place to ``b + numerator / denominator``; return it."""
    if _is_torch(b):
        return b.addcdiv_(numerator, denominator)
    b += numerator / denominator
    return b


def maximum_(a, b):
    """Update ``a`` in place to the elementwise maximum of ``a`` and ``b``; return it."""
    if _is_torch(a):
        import torch

        return torch.maximum(a, b, out=a)
    return np.maximum(a, b, out=a)


def step_towards(θ, numerator, denominator, step_size: float, out=None):
    """``θ - step_size * numerator / denominator``, in one fused pass on torch (``addcdiv``),
    written into ``out`` (which may be θ itself) or, when ``out`` is None, into
    ``denominator`` (a temporary the caller owns and gives up)."""
    if _is_torch(θ):
        import torch

        target = denominator if out is None else out
        return torch.addcdiv(θ, numerator, denominator, value=-step_size, out=target)
    ratio = np.divide(numerator, denominator, out=denominator)
    ratio *= -step_size
    return np.add(θ, ratio, out=out)


def clamp_min_(x, low: float):
    """Update ``x`` in place to ``max(x, low)`` elementwise, for a scalar ``low``; return it."""
    return x.clamp_(min=low) if _is_torch(x) else np.maximum(x, low, out=x)


def rsqrt_(x):
    """Update ``x`` in place to ``1 / √x`` elementwise; return it."""
    if _is_torch(x):
        return x.rsqrt_()
    np.sqrt(x, out=x)
    return np.reciprocal(x, out=x)


def machine_epsilon(x) -> float:
    """The machine epsilon of ``x``'s floating-point type."""
    if _is_torch(x):
        import torch

        return float(torch.finfo(x.dtype).eps)
    return float(np.finfo(np.asarray(x).dtype).eps)


def rms(x) -> float:
    """The root mean square of all entries, as a Python float."""
    n = math.prod(x.shape)
    if _is_torch(x):
        return float(x.norm()) / math.sqrt(n)
    return float(np.linalg.norm(np.ravel(x))) / math.sqrt(n)


def check_betas(betas) -> tuple[float, float]:
    """Return ``(β₁, β₂)`` from a pair of decay rates in [0, 1)."""
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(f"betas must be a pair (β₁, β₂), got {betas!r}")
    β1 = check_real("betas[0]", betas[0], 0.0, 1.0, high_open=True)
    β2 = check_real("betas[1]", betas[1], 0.0, 1.0, high_open=True)
    return β1, β2


def step_count(state: dict) -> int:
    """The step t about to be taken: one more than the count stored in ``state``
    (which torch keeps as a tensor, and this package as an int)."""
    return int(state.get("step", 0)) + 1


def previous(state: dict, key: str, like):
    """``state[key]``, or new zeros shaped like ``like`` before the first step."""
    x = state.get(key)
    return zeros_like(like) if x is None else x
