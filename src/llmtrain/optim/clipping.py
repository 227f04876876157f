"""Gradient clipping by the global norm of all gradients together.

The gradient g_t of a model is one long vector split into tensors (one per weight matrix);
its norm is taken over all of them at once, and every tensor is scaled by the same factor
min(1, c / (‖g_t‖ + ε)), so that the clipped gradient keeps its direction.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_real
from . import _ops

__all__ = ["clip_by_global_norm", "clip_grad_norm_", "global_norm"]

#: Added to the norm in the denominator of the scale, as ``torch.nn.utils.clip_grad_norm_``.
EPS = 1e-6


def _check_norm_type(norm_type) -> float:
    p = float(norm_type) if not isinstance(norm_type, bool) else norm_type
    if isinstance(p, bool) or not isinstance(p, float) or math.isnan(p) or p <= 0:
        raise ValueError(f"norm_type must be in (0, inf], got {norm_type!r}")
    return p


def global_norm(grads, norm_type: float = 2.0) -> float:
    """The p-norm of all entries of all the arrays or tensors in ``grads`` together.

    ‖g‖_p = (Σ_i ‖g^(i)‖_p^p)^(1/p), and the largest absolute entry for p = inf. Returned as a
    Python float; NaN or inf if an entry is.
    """
    p = _check_norm_type(norm_type)
    grads = list(grads)
    if not grads:
        return 0.0
    per_tensor = []
    for g in grads:
        if _ops._is_torch(g):
            per_tensor.append(float(torch.linalg.vector_norm(g.detach(), p)))
        else:
            a = np.ravel(np.asarray(g, dtype=np.float64))
            per_tensor.append(float(np.linalg.norm(a, p)) if a.size else 0.0)
    # The norm of the per-tensor norms is the norm of everything (torch computes it this way).
    return float(np.linalg.norm(np.array(per_tensor), p))


def clip_by_global_norm(
    grads,
    max_norm: float,
    *,
    norm_type: float = 2.0,
    eps: float = EPS,
    error_if_nonfinite: bool = True,
):
    """Scale all gradients by the same factor so that their global norm is at most ``c``.

    Implements :prf:ref:`alg-clip-global-norm`: g ← g · min(1, c / (‖g‖ + ε)), with ‖g‖ the
    norm of all the gradients together. Pure: the inputs are not modified.

    Parameters
    ----------
    grads : sequence of arrays or tensors
        The gradient, one array or tensor per parameter tensor.
    max_norm : float
        Threshold c > 0 (GPT-3 used c = 1.0).
    norm_type : float
        Order p of the norm, in (0, inf].
    eps : float
        ε ≥ 0 added to the norm in the denominator (``torch`` uses 1e-6).
    error_if_nonfinite : bool
        If the norm is NaN or infinite, raise a ``RuntimeError`` (the default: such a
        gradient cannot be repaired by scaling, since inf · 0 is NaN; skip the step instead).
        If False, scale anyway, as ``torch.nn.utils.clip_grad_norm_`` does by default, which
        turns the gradient into NaNs and zeros.

    Returns
    -------
    tuple
        The clipped gradients (a new list) and the global norm before clipping (a float).
    """
    c = check_real("max_norm", max_norm, 0.0, low_open=True)
    ε = check_real("eps", eps, 0.0)
    grads = list(grads)
    norm = global_norm(grads, norm_type)
    if not math.isfinite(norm) and error_if_nonfinite:
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is {norm}, so it cannot "
            "be clipped; skip this step, or pass error_if_nonfinite=False to scale anyway"
        )
    scale = min(1.0, c / (norm + ε)) if not math.isnan(norm) else math.nan
    with np.errstate(invalid="ignore"):  # inf · 0 when the caller asked to scale anyway
        return [g * scale for g in grads], norm


@torch.no_grad()
def clip_grad_norm_(
    parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> torch.Tensor:
    """Drop-in for ``torch.nn.utils.clip_grad_norm_``: clip the ``.grad`` of ``parameters``
    in place and return their global norm before clipping, as a tensor.

    Implements :prf:ref:`alg-clip-global-norm` for PyTorch training loops; parameters
    without a gradient are ignored. As in torch, a non-finite norm raises a ``RuntimeError``
    only if ``error_if_nonfinite`` is True.
    """
    check_real("max_norm", max_norm, 0.0, low_open=True)
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    clipped, norm = clip_by_global_norm(
        grads, max_norm, norm_type=norm_type, error_if_nonfinite=error_if_nonfinite
    )
    for g, new in zip(grads, clipped, strict=True):
        g.copy_(new)
    return torch.tensor(norm, dtype=grads[0].dtype)
