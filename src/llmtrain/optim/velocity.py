"""Momentum in velocity form, as Sutskever et al. (2013) write it (Part I, Optimization).

``torch.optim.SGD`` (:func:`sgd_step`) keeps a buffer b of summed gradients and scales it by
the learning rate when it steps. The velocity form keeps the step itself, the velocity u,
with the learning rate applied as each gradient enters it. With a constant learning rate the
two give the same parameters; under a schedule they do not (see the momentum chapter).
"""

from __future__ import annotations

from collections.abc import Callable

from .._checks import check_real
from . import _ops

__all__ = ["heavy_ball_velocity_step", "nesterov_velocity_step"]


def _hyperparameters(lr, momentum) -> tuple[float, float]:
    α = check_real("lr", lr, 0.0)
    μ = check_real("momentum", momentum, 0.0, 1.0, high_open=True)
    return α, μ


def heavy_ball_velocity_step(θ, g, state: dict, *, lr: float = 1e-3, momentum: float = 0.9):
    """One step of heavy-ball momentum in velocity form (Sutskever et al., 2013).

    u_t = μ u_{t-1} - α_t g_t,  θ_t = θ_{t-1} + u_t.

    Implements :prf:ref:`alg-heavy-ball-velocity`.

    Parameters
    ----------
    θ : array or tensor
        The parameters θ_{t-1}.
    g : array or tensor
        The gradient g_t, evaluated at θ_{t-1}.
    state : dict
        ``{"velocity": u_{t-1}}``, or ``{}`` before the first step (u_0 = 0).
    lr : float
        Learning rate α_t ≥ 0 of this step; it multiplies g_t only, not the velocity already
        accumulated.
    momentum : float
        Momentum coefficient μ in [0, 1).

    Returns
    -------
    tuple
        The new parameters θ_t and the new state ``{"velocity": u_t}``.
    """
    α, μ = _hyperparameters(lr, momentum)
    u = state.get("velocity")
    u = -α * g if u is None else μ * u - α * g
    return θ + u, {"velocity": _ops.copy(u)}


def nesterov_velocity_step(
    θ, grad: Callable, state: dict, *, lr: float = 1e-3, momentum: float = 0.9
):
    """One step of Nesterov momentum in the look-ahead form of Sutskever et al. (2013).

    u_t = μ u_{t-1} - α ∇L(θ_{t-1} + μ u_{t-1}),  θ_t = θ_{t-1} + u_t.

    Implements :prf:ref:`alg-nesterov-velocity`.

    Parameters
    ----------
    θ : array or tensor
        The parameters θ_{t-1}.
    grad : callable
        ``grad(φ)`` returns the gradient of the loss at the point φ. Unlike the other update
        rules this one needs the gradient at the look-ahead point φ_{t-1} = θ_{t-1} + μ u_{t-1},
        not at θ_{t-1}, so it takes a function rather than a gradient.
    state : dict
        ``{"velocity": u_{t-1}}``, or ``{}`` before the first step (u_0 = 0).
    lr : float
        Learning rate α ≥ 0.
    momentum : float
        Momentum coefficient μ in [0, 1).

    Returns
    -------
    tuple
        The new parameters θ_t and the new state ``{"velocity": u_t}``.
    """
    α, μ = _hyperparameters(lr, momentum)
    if not callable(grad):
        raise TypeError(f"grad must be a function of the parameters, got {type(grad).__name__}")
    u = state.get("velocity")
    if u is None:
        u = _ops.zeros_like(θ)
    φ = θ + μ * u  # the look-ahead point: where the velocity alone would carry θ
    u = μ * u - α * grad(φ)
    return θ + u, {"velocity": _ops.copy(u)}
