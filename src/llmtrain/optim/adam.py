"""Adam, AMSGrad and AdamW (Part I, Optimization, adaptive methods).

The updates follow the pseudo-code of ``torch.optim.Adam`` and ``torch.optim.AdamW``, in the
book's symbols: learning rate α, decay rates β₁ and β₂, denominator constant ε, weight decay λ,
first and second moments m and v, their bias-corrected versions m̂ and v̂.
"""

from __future__ import annotations

from .._checks import check_real
from . import _ops
from ._moments import (
    check_betas,
    ema_,
    ema_of_squares_,
    maximum_,
    previous,
    step_count,
    step_towards,
)
from .torch_front import TorchOptimizer

__all__ = ["Adam", "AdamW", "adam_step", "adamw_step"]


def _adam_update(θ, g, state, α, β1, β2, ε, amsgrad, out):
    """The moment updates and the step shared by Adam and AdamW (g already includes any L2)."""
    t = step_count(state)
    # m_t = β₁ m_{t-1} + (1 - β₁) g_t and v_t = β₂ v_{t-1} + (1 - β₂) g_t ⊙ g_t, from m_0 = v_0 = 0
    m = ema_(previous(state, "exp_avg", g), g, 1.0 - β1)
    v = ema_of_squares_(previous(state, "exp_avg_sq", g), g, 1.0 - β2)
    new_state = {"step": t, "exp_avg": m, "exp_avg_sq": v}
    if amsgrad:
        # AMSGrad keeps the running maximum of v itself (from v_0^max = 0) and bias-corrects it.
        v = maximum_(previous(state, "max_exp_avg_sq", g), v)
        new_state["max_exp_avg_sq"] = v
    # θ_t = θ_{t-1} - α m̂_t / (√v̂_t + ε) with m̂_t = m_t / (1 - β₁ᵗ), v̂_t = v_t / (1 - β₂ᵗ).
    denominator = _ops.sqrt(v)
    denominator /= (1.0 - β2**t) ** 0.5
    denominator += ε
    return step_towards(θ, m, denominator, α / (1.0 - β1**t), out=out), new_state


def adam_step(
    θ,
    g,
    state: dict,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    decoupled_weight_decay: bool = False,
    out=None,
):
    """One step of Adam (or AMSGrad), with optional L2 regularisation added to the gradient.

    Implements :prf:ref:`alg-adam`.

    Parameters
    ----------
    θ : array or tensor
        The parameters θ_{t-1}.
    g : array or tensor
        The minibatch gradient g_t, evaluated at θ_{t-1}.
    state : dict
        The rule's state from the previous step; ``{}`` before the first step. It holds the
        step count t and the moments ``exp_avg`` (m) and ``exp_avg_sq`` (v), and with AMSGrad
        ``max_exp_avg_sq`` (the running maximum of v), under torch's names.
    lr : float
        Learning rate α ≥ 0.
    betas : tuple of float
        Decay rates (β₁, β₂), each in [0, 1), of the first and second moment averages.
    eps : float
        Denominator constant ε > 0, added to √v̂.
    weight_decay : float
        L2 coefficient λ ≥ 0, added to the gradient as λθ (coupled, as in ``torch.optim.Adam``),
        or the decoupled weight decay if ``decoupled_weight_decay``.
    amsgrad : bool
        Normalise by the running maximum of v (Reddi et al., 2018) instead of v.
    decoupled_weight_decay : bool
        Decay the weights, θ ← (1 - αλ) θ, instead of adding λθ to the gradient: the step is
        then :func:`adamw_step`'s, as with ``torch.optim.Adam(decoupled_weight_decay=True)``.
    out : array or tensor, optional
        Where to write θ_t (it may be θ itself, for an update in place); a new array if None.

    Returns
    -------
    tuple
        The new parameters θ_t and the new state.
    """
    α = check_real("lr", lr, 0.0)
    β1, β2 = check_betas(betas)
    ε = check_real("eps", eps, 0.0, low_open=True)
    λ = check_real("weight_decay", weight_decay, 0.0)
    if decoupled_weight_decay:
        return adamw_step(
            θ, g, state, lr=α, betas=(β1, β2), eps=ε, weight_decay=λ, amsgrad=amsgrad, out=out
        )
    if λ != 0.0:
        g = g + λ * θ
    return _adam_update(θ, g, state, α, β1, β2, ε, bool(amsgrad), out)


def adamw_step(
    θ,
    g,
    state: dict,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    out=None,
):
    """One step of AdamW: decoupled weight decay θ ← (1 - αλ) θ, then an Adam step.

    Implements :prf:ref:`alg-adamw`.

    The decay never enters the moments m and v, so every coordinate shrinks by the same
    factor 1 - αλ, however large its gradients have been. The arguments are those of
    :func:`adam_step`, except that ``weight_decay`` (λ ≥ 0, default 0.01) is decoupled.
    """
    α = check_real("lr", lr, 0.0)
    β1, β2 = check_betas(betas)
    ε = check_real("eps", eps, 0.0, low_open=True)
    λ = check_real("weight_decay", weight_decay, 0.0)
    if λ != 0.0:
        θ = θ * (1.0 - α * λ)
    return _adam_update(θ, g, state, α, β1, β2, ε, bool(amsgrad), out)


class Adam(TorchOptimizer):
    """Drop-in replacement for ``torch.optim.Adam``, driven by :func:`adam_step`.

    Implements :prf:ref:`alg-adam` for PyTorch training loops: same constructor arguments,
    defaults and numbers as ``torch.optim.Adam``. ``decoupled_weight_decay=True`` turns it into
    :class:`AdamW` (with Adam's default λ = 0) and ``maximize=True`` ascends the objective.
    ``foreach`` and ``fused`` are accepted and change nothing (the update runs parameter by
    parameter); ``capturable=True`` and ``differentiable=True`` raise a ValueError.
    """

    update_rule = staticmethod(adam_step)

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
        )


class AdamW(TorchOptimizer):
    """Drop-in replacement for ``torch.optim.AdamW``, driven by :func:`adamw_step`.

    Implements :prf:ref:`alg-adamw` for PyTorch training loops: same constructor arguments,
    defaults (weight decay 0.01) and numbers as ``torch.optim.AdamW``. The keyword-only options
    behave as in :class:`Adam`.
    """

    update_rule = staticmethod(adamw_step)

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
        )
