"""Lion (EvoLved Sign Momentum; Chen et al., 2023): the sign of an interpolated momentum.

The update is Algorithm 2 of the paper (Lion with decoupled weight decay) in the book's
symbols: learning rate α, interpolation and decay rates β₁ and β₂, weight decay λ, momentum
m and the interpolation m̃ whose sign is the step. The defaults (α = 1e-4, β₁ = 0.9, β₂ = 0.99,
λ = 0) are the authors' PyTorch implementation's.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_real, check_shape_match
from . import _ops
from ._moments import check_betas, ema_, previous
from .torch_front import TorchOptimizer

__all__ = ["Lion", "lion_step"]


def lion_step(
    θ,
    g,
    state: dict,
    *,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.99),
    weight_decay: float = 0.0,
    out=None,
):
    """One step of Lion: move every coordinate by ±α, the sign of an interpolated momentum.

    Implements :prf:ref:`alg-lion`.

    Parameters
    ----------
    θ, g : array or tensor
        The parameters θ_{t-1} and the minibatch gradient g_t at θ_{t-1}.
    state : dict
        ``{}`` before the first step, then ``{"exp_avg": m}``: Lion's only state, one array the
        size of θ (Adam keeps two).
    lr : float
        Learning rate α ≥ 0, the size of every coordinate's step.
    betas : tuple of float
        (β₁, β₂) in [0, 1): m̃_t = β₁ m_{t-1} + (1 - β₁) g_t is the direction whose sign is
        taken, m_t = β₂ m_{t-1} + (1 - β₂) g_t the momentum kept for the next step.
    weight_decay : float
        Decoupled weight decay λ ≥ 0: θ_t = θ_{t-1} - α (sign(m̃_t) + λ θ_{t-1}).
    out : array or tensor, optional
        Where to write θ_t (it may be θ itself); a new array if None.

    Returns
    -------
    tuple
        The new parameters θ_t and the new state.
    """
    α = check_real("lr", lr, 0.0)
    β1, β2 = check_betas(betas)
    λ = check_real("weight_decay", weight_decay, 0.0)
    check_shape_match("θ", θ.shape, "g", g.shape)
    m = previous(state, "exp_avg", g)
    # m̃ is computed from m_{t-1} before m is updated in place; sign(0) = 0 in NumPy and torch.
    m̃ = m.lerp(g, 1.0 - β1) if _ops._is_torch(m) else m + (1.0 - β1) * (g - m)
    direction = m̃.sign_() if _ops._is_torch(m̃) else np.sign(m̃, out=m̃)
    θ_t = _ops.add_scaled(θ * (1.0 - α * λ), direction, -α, out=out)
    return θ_t, {"exp_avg": ema_(m, g, 1.0 - β2)}


class Lion(TorchOptimizer):
    """A ``torch.optim``-style Lion optimizer, driven by :func:`lion_step`.

    Implements :prf:ref:`alg-lion` for PyTorch training loops (torch has no Lion of its own).
    ``maximize=True`` ascends the objective.
    """

    update_rule = staticmethod(lion_step)

    def __init__(
        self,
        params,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ):
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)
