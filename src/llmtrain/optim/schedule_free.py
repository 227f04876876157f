"""Schedule-free AdamW (Defazio et al. 2024): no learning-rate decay, an average instead.

Three sequences: the base iterates z (an AdamW-like step), their weighted average x (the
model to evaluate), and the point y = (1 − β₁) z + β₁ x where the gradient is taken (the model
to train). The update rule takes and returns y, which the torch front keeps in the
parameters; x is in the state.
"""

from __future__ import annotations

import math

from .._checks import check_int, check_real
from . import _ops
from ._moments import check_betas, ema_, ema_of_squares_
from .torch_front import TorchOptimizer

__all__ = ["ScheduleFreeAdamW", "schedule_free_adamw_step"]


def schedule_free_adamw_step(
    θ,
    g,
    state: dict,
    *,
    lr: float = 0.0025,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    warmup: int = 0,
    out=None,
):
    """One step of schedule-free AdamW, the paper's version (Algorithm 1).

    Implements :prf:ref:`alg-schedule-free-adamw`.

    Parameters
    ----------
    θ : array or tensor
        The training point y_t, where ``g`` was evaluated (on the first step also z_1 = x_1).
    g : array or tensor
        The gradient g_t at y_t.
    state : dict
        ``{}`` before the first step; then ``z``, ``x`` (the average, for evaluation), ``v``,
        ``step`` t and ``weight_sum`` Σ γ_i². Arrays are updated in place.
    lr : float
        Learning rate α ≥ 0.
    betas : tuple of float
        (β₁, β₂), each in [0, 1): β₁ interpolates y between z and x, β₂ averages g ⊙ g.
    eps : float
        ε > 0 added to √v_t.
    weight_decay : float
        Decoupled weight decay λ ≥ 0, applied at y_t.
    warmup : int
        Linear warmup length T_w ≥ 0 of the step size.
    out : array or tensor, optional
        Where to write y_{t+1}; a new array if None.

    Returns
    -------
    tuple
        The next training point y_{t+1} and the new state.
    """
    α = check_real("lr", lr, 0.0)
    β1, β2 = check_betas(betas)
    ε = check_real("eps", eps, 0.0, low_open=True)
    λ = check_real("weight_decay", weight_decay, 0.0)
    T_w = check_int("warmup", warmup, 0)
    if not state:
        state = {"z": _ops.copy(θ), "x": _ops.copy(θ), "v": _ops.zeros_like(θ), "step": 0,
                 "weight_sum": 0.0}  # fmt: skip
    t = state["step"] + 1
    z, x, v = state["z"], state["x"], state["v"]
    ema_of_squares_(v, g, 1.0 - β2)
    # γ_t: warmup and Adam's bias correction of v folded into the step size.
    γ = α * min(1.0, t / T_w if T_w else 1.0) * math.sqrt(1.0 - β2**t)
    u = g / (_ops.sqrt(v) + ε)
    if λ != 0.0:
        u = _ops.add_scaled(u, θ, λ)  # decay at y_t
    _ops.add_scaled(z, u, -γ, out=z)
    # x_{t+1} = (1 − c) x_t + c z_{t+1} with c = γ_t² / Σ_{i≤t} γ_i²: larger steps weigh more.
    weight_sum = state["weight_sum"] + γ * γ
    ema_(x, z, γ * γ / weight_sum if weight_sum > 0 else 0.0)
    state.update(step=t, weight_sum=weight_sum)
    return _ops.add_scaled(z, x - z, β1, out=out), state  # y_{t+1} = (1 − β₁) z + β₁ x


class ScheduleFreeAdamW(TorchOptimizer):
    """Schedule-free AdamW for PyTorch loops, driven by :func:`schedule_free_adamw_step`.

    Implements :prf:ref:`alg-schedule-free-adamw`. The parameters hold the training point y;
    evaluate the average x, from :meth:`averaged_parameters`, which a model receives with
    ``torch.nn.utils.vector_to_parameters`` or ``p.copy_(x)`` on a copy.
    """

    update_rule = staticmethod(schedule_free_adamw_step)

    def __init__(
        self,
        params,
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup: int = 0,
    ):
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, warmup=warmup
        )

    def averaged_parameters(self) -> list:
        """The average x of every parameter, in the order of the parameter groups (the
        parameter itself if it has not been stepped yet)."""
        return [
            self.state[p]["x"] if "x" in self.state[p] else p.detach()
            for group in self.param_groups
            for p in group["params"]
        ]
