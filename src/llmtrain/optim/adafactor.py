"""Adafactor (Part I, Optimization, adaptive methods).

Shazeer and Stern's optimizer keeps, for a weight matrix, only moving averages of the row
and column means of the squared gradient, and rebuilds the second moment from them as a
rank-one matrix. The defaults and the placement of ε₁ follow ``torch.optim.Adafactor``;
``paper_eps=True`` places ε₁ as Algorithms 4 and 5 of the paper do. Symbols: α_t step size,
ρ_t relative step size, β̂₂ₜ the second-moment decay of step t, R and C the row and column
averages, V̂ the second-moment estimate, U the unclipped update, d the clipping threshold.
"""

from __future__ import annotations

import math

from .._checks import check_real
from . import _ops
from ._moments import clamp_min_, ema_, machine_epsilon, previous, rms, rsqrt_, step_count
from .torch_front import TorchOptimizer

__all__ = ["Adafactor", "adafactor_step"]


def _check_eps(eps) -> tuple[float | None, float]:
    if isinstance(eps, (str, bytes)) or not hasattr(eps, "__len__") or len(eps) != 2:
        raise TypeError(f"eps must be a pair (ε₁, ε₂), got {eps!r}")
    ε1 = None if eps[0] is None else check_real("eps[0]", eps[0], 0.0, low_open=True)
    ε2 = check_real("eps[1]", eps[1], 0.0)
    return ε1, ε2


def adafactor_step(
    θ,
    g,
    state: dict,
    *,
    lr: float = 1e-2,
    beta2_decay: float = -0.8,
    eps: tuple[float | None, float] = (None, 1e-3),
    d: float = 1.0,
    weight_decay: float = 0.0,
    relative_step: bool = True,
    paper_eps: bool = False,
    out=None,
):
    """One step of Adafactor, with a factored second moment for matrices.

    Implements :prf:ref:`alg-adafactor`.

    Parameters
    ----------
    θ : array or tensor
        The parameters θ_{t-1}. A tensor with two or more dimensions is factored over its
        last two (rows and columns); a vector or scalar keeps a full second moment.
    g : array or tensor
        The minibatch gradient g_t (the paper's G_t), evaluated at θ_{t-1}.
    state : dict
        The rule's state from the previous step; ``{}`` before the first step. It holds the
        step count and, under torch's names, R (``row_var``) and C (``col_var``) for a
        matrix, or V̂ (``variance``) for a vector.
    lr : float
        Learning rate α ≥ 0: the cap of the relative step size ρ_t = min(α, 1/√t), and the
        coefficient of the decoupled weight decay. The paper's choice is 0.01, the default.
    beta2_decay : float
        Exponent c ≤ 0 of the decay schedule β̂₂ₜ = 1 - t^c (the paper uses -0.8).
    eps : tuple
        (ε₁, ε₂): ε₁ > 0 keeps the second moment away from zero (``None`` means the machine
        epsilon of θ's type, as in torch; the paper uses 1e-30); ε₂ ≥ 0 is the smallest
        parameter scale used by the relative step.
    d : float
        Update-clipping threshold d ≥ 1: the update is scaled down until its RMS is at most d.
    weight_decay : float
        Decoupled weight decay λ ≥ 0: θ ← (1 - αλ) θ before the step, as torch does (the paper
        has none).
    relative_step : bool
        Scale the step by the parameter scale, α_t = max(ε₂, RMS(θ_{t-1})) ρ_t, as the paper
        and torch do; ``False`` takes α_t = ρ_t (not a torch option).
    paper_eps : bool
        Add ε₁ to g ⊙ g before averaging, as the paper's algorithms do, instead of
        clamping the estimate V̂ at ε₁² as torch does (not a torch option).
    out : array or tensor, optional
        Where to write θ_t (it may be θ itself, for an update in place); a new array if None.

    Returns
    -------
    tuple
        The new parameters θ_t and the new state.
    """
    α = check_real("lr", lr, 0.0)
    c = check_real("beta2_decay", beta2_decay, high=0.0)
    ε1, ε2 = _check_eps(eps)
    d = check_real("d", d, 1.0)
    λ = check_real("weight_decay", weight_decay, 0.0)
    if ε1 is None:
        ε1 = machine_epsilon(θ)
    t = step_count(state)
    one_minus_β2 = float(t) ** c  # 1 - β̂₂ₜ, so β̂₂₁ = 0: the first step needs no bias correction
    ρ = min(α, 1.0 / math.sqrt(t))
    step_size = max(ε2, rms(θ)) * ρ if relative_step else ρ  # α_t, from θ_{t-1}
    if λ != 0.0:
        θ = θ * (1.0 - α * λ)
    g2 = g * g
    if paper_eps:
        g2 += ε1
    if len(g.shape) >= 2:
        # R_t, C_t: moving averages of the row and column means of g ⊙ g; then
        # V̂_t = R_t C_t / mean(R_t), the rank-one estimate (means instead of the paper's sums
        # give the same V̂).
        row_mean, col_mean = _ops.mean(g2, axis=-1), _ops.mean(g2, axis=-2)
        R = ema_(previous(state, "row_var", row_mean), row_mean, one_minus_β2)
        C = ema_(previous(state, "col_var", col_mean), col_mean, one_minus_β2)
        new_state = {"step": t, "row_var": R, "col_var": C}
        mean_R = _ops.mean(R, axis=-2)
        V̂ = R @ C
        V̂ /= mean_R if paper_eps else clamp_min_(mean_R, ε1)
    else:
        V = ema_(previous(state, "variance", g), g2, one_minus_β2)
        new_state = {"step": t, "variance": V}
        V̂ = _ops.copy(V)
    if not paper_eps:
        V̂ = clamp_min_(V̂, ε1 * ε1)
    # U_t = g_t / √V̂_t, then clip: Û_t = U_t / max(1, RMS(U_t) / d).
    U = rsqrt_(V̂)
    U *= g
    U *= -step_size / max(1.0, rms(U) / d)
    if out is None:
        U += θ
        return U, new_state
    return _ops.add_scaled(θ, U, 1.0, out=out), new_state


class Adafactor(TorchOptimizer):
    """Drop-in replacement for ``torch.optim.Adafactor``, driven by :func:`adafactor_step`.

    Implements :prf:ref:`alg-adafactor` for PyTorch training loops: same constructor
    arguments, defaults and numbers as ``torch.optim.Adafactor``, plus the two options of
    :func:`adafactor_step` that torch does not have (``relative_step``, ``paper_eps``).
    """

    update_rule = staticmethod(adafactor_step)

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        relative_step: bool = True,
        paper_eps: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            beta2_decay=beta2_decay,
            eps=eps,
            d=d,
            weight_decay=weight_decay,
            relative_step=relative_step,
            paper_eps=paper_eps,
        )
