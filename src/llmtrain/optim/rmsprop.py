"""RMSProp (Part I, Optimization, adaptive methods).

The update follows the pseudo-code of ``torch.optim.RMSprop``, in the book's symbols:
learning rate α, decay rate ρ (torch's ``alpha``), denominator constant ε, weight decay λ,
momentum μ with its buffer b, v the moving average of squared gradients and, in the centred
variant, ḡ the moving average of gradients.
"""

from __future__ import annotations

from .._checks import check_real
from . import _ops
from ._moments import (
    add_ratio_,
    ema_,
    ema_of_squares_,
    previous,
    step_count,
    step_towards,
)
from .torch_front import TorchOptimizer

__all__ = ["RMSprop", "rmsprop_step"]


def rmsprop_step(
    θ,
    g,
    state: dict,
    *,
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    out=None,
):
    """One step of RMSProp: each coordinate's step is divided by the root of a moving average
    of its squared gradients.

    Implements :prf:ref:`alg-rmsprop`.

    Parameters
    ----------
    θ : array or tensor
        The parameters θ_{t-1}.
    g : array or tensor
        The minibatch gradient g_t, evaluated at θ_{t-1}.
    state : dict
        The rule's state from the previous step; ``{}`` before the first step. It holds the
        step count and, under torch's names, v (``square_avg``), b (``momentum_buffer``,
        when μ > 0) and ḡ (``grad_avg``, when centred).
    lr : float
        Learning rate α ≥ 0.
    alpha : float
        Decay rate ρ in [0, 1) of the moving averages.
    eps : float
        Denominator constant ε > 0, added to the root.
    weight_decay : float
        L2 coefficient λ ≥ 0, added to the gradient as λθ.
    momentum : float
        Momentum μ in [0, 1) applied to the normalised step; 0 turns it off.
    centered : bool
        Divide by the root of the estimated variance v - ḡ ⊙ ḡ instead of v.
    out : array or tensor, optional
        Where to write θ_t (it may be θ itself, for an update in place); a new array if None.

    Returns
    -------
    tuple
        The new parameters θ_t and the new state.
    """
    α = check_real("lr", lr, 0.0)
    ρ = check_real("alpha", alpha, 0.0, 1.0, high_open=True)
    ε = check_real("eps", eps, 0.0, low_open=True)
    λ = check_real("weight_decay", weight_decay, 0.0)
    μ = check_real("momentum", momentum, 0.0, 1.0, high_open=True)
    t = step_count(state)
    if λ != 0.0:
        g = g + λ * θ
    # v_t = ρ v_{t-1} + (1 - ρ) g_t ⊙ g_t, from v_0 = 0
    v = ema_of_squares_(previous(state, "square_avg", g), g, 1.0 - ρ)
    new_state = {"step": t, "square_avg": v}
    if centered:
        ḡ = ema_(previous(state, "grad_avg", g), g, 1.0 - ρ)  # ḡ_t = ρ ḡ_{t-1} + (1 - ρ) g_t
        new_state["grad_avg"] = ḡ
        denominator = _ops.sqrt(v - ḡ * ḡ)
    else:
        denominator = _ops.sqrt(v)
    denominator += ε
    if μ > 0.0:
        b = previous(state, "momentum_buffer", g)
        b *= μ
        b = add_ratio_(b, g, denominator)  # b_t = μ b_{t-1} + g_t / (√v_t + ε)
        new_state["momentum_buffer"] = b
        θ = _ops.add_scaled(θ, b, -α, out=out)
    else:
        θ = step_towards(θ, g, denominator, α, out=out)
    return θ, new_state


class RMSprop(TorchOptimizer):
    """Drop-in replacement for ``torch.optim.RMSprop``, driven by :func:`rmsprop_step`.

    Implements :prf:ref:`alg-rmsprop` for PyTorch training loops: same constructor arguments,
    defaults and numbers as ``torch.optim.RMSprop``.
    """

    update_rule = staticmethod(rmsprop_step)

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
        )
