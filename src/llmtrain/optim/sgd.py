"""Stochastic gradient descent with heavy-ball or Nesterov momentum (Part I, Optimization).

The update follows the pseudo-code of ``torch.optim.SGD``, in the book's symbols: learning rate
α, momentum coefficient μ, dampening δ, weight decay λ, momentum buffer b.
"""

from __future__ import annotations

from .._checks import check_real
from . import _ops
from .torch_front import TorchOptimizer

__all__ = ["SGD", "sgd_step"]


def sgd_step(
    θ,
    g,
    state: dict,
    *,
    lr: float = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    out=None,
):
    """One step of minibatch SGD with optional momentum and weight decay.

    Implements :prf:ref:`alg-sgd`.

    Parameters
    ----------
    θ : array or tensor
        The parameters θ_{t-1}.
    g : array or tensor
        The minibatch gradient g_t, evaluated at θ_{t-1}.
    state : dict
        The rule's state from the previous step; ``{}`` before the first step. Its momentum
        buffer is updated in place, so pass each state on once and do not reuse it.
    lr : float
        Learning rate α ≥ 0.
    momentum : float
        Momentum coefficient μ in [0, 1); 0 turns momentum off.
    dampening : float
        Dampening δ in [0, 1]: the new gradient enters the buffer with weight 1 - δ.
    weight_decay : float
        L2 coefficient λ ≥ 0, added to the gradient as λθ.
    nesterov : bool
        Use Nesterov momentum (needs μ > 0 and δ = 0).
    out : array or tensor, optional
        Where to write θ_t (it may be θ itself, for an update in place); a new array if None.

    Returns
    -------
    tuple
        The new parameters θ_t and the new state.
    """
    α = check_real("lr", lr, 0.0)
    μ = check_real("momentum", momentum, 0.0, 1.0, high_open=True)
    δ = check_real("dampening", dampening, 0.0, 1.0)
    λ = check_real("weight_decay", weight_decay, 0.0)
    if nesterov and (μ == 0.0 or δ != 0.0):
        raise ValueError(
            f"nesterov=True needs momentum in (0, 1) and dampening = 0, "
            f"got momentum={momentum!r}, dampening={dampening!r}"
        )
    if λ != 0.0:
        g = _ops.add_scaled(g, θ, λ)
    if μ != 0.0:
        b = state.get("momentum_buffer")
        # The first step starts the buffer at g itself (no dampening), as torch does. Later
        # steps update it in place: a fresh buffer per step costs more than the arithmetic.
        b = _ops.copy(g) if b is None else _ops.scale_add_(b, μ, g, 1.0 - δ)
        state = {"momentum_buffer": b}
        g = _ops.add_scaled(g, b, μ) if nesterov else b
    return _ops.add_scaled(θ, g, -α, out=out), state


class SGD(TorchOptimizer):
    """Drop-in replacement for ``torch.optim.SGD``, driven by :func:`sgd_step`.

    Implements :prf:ref:`alg-sgd` for PyTorch training loops: same constructor arguments and
    the same numbers as ``torch.optim.SGD``.
    """

    update_rule = staticmethod(sgd_step)

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
