"""The few array operations the update rules need, for NumPy arrays and torch tensors alike.

Arithmetic (``+``, ``*``, ``**``) already works on both; these cover what does not, so that
each update rule is written once and serves the 2-D NumPy demos and PyTorch models.
Checking the type's module keeps NumPy-only users from importing torch.
"""

from __future__ import annotations

import numpy as np


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def sqrt(x):
    return x.sqrt() if _is_torch(x) else np.sqrt(x)


def copy(x):
    """A copy that owns its memory: state must not alias a gradient the caller may zero."""
    return x.clone() if _is_torch(x) else np.array(x, copy=True)


def zeros_like(x):
    if _is_torch(x):
        import torch

        return torch.zeros_like(x)
    return np.zeros_like(x)


def mean(x, axis: int, keepdims: bool = True):
    """Mean over one axis (torch spells the arguments ``dim`` and ``keepdim``)."""
    return (
        x.mean(dim=axis, keepdim=keepdims) if _is_torch(x) else x.mean(axis=axis, keepdims=keepdims)
    )


def add_scaled(x, y, c: float, out=None):
    """``x + c y``, in one fused pass on torch (``torch.add(x, y, alpha=c)``), written into
    ``out`` when it is given (``out`` may be ``x`` itself) and into a new array otherwise."""
    if _is_torch(x):
        import torch

        return torch.add(x, y, alpha=c, out=out)
    return np.add(x, c * y, out=out)


def scale_add_(x, a: float, y, c: float):
    """Update ``x`` in place to ``a x + c y``; return it."""
    if _is_torch(x):
        return x.mul_(a).add_(y, alpha=c)
    x *= a
    x += c * y
    return x
