"""AdaGrad (Part I, Optimization, adaptive methods).

The update follows the pseudo-code of ``torch.optim.Adagrad``, in the book's symbols:
learning rate α, learning-rate decay η, weight decay λ, denominator constant ε, and s, the
running sum of squared gradients.
"""

from __future__ import annotations

import torch

from .._checks import check_real
from . import _ops
from ._moments import add_square_, step_count, step_towards
from .torch_front import TorchOptimizer

__all__ = ["Adagrad", "adagrad_step"]


def adagrad_step(
    θ,
    g,
    state: dict,
    *,
    lr: float = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    out=None,
):
    """One step of AdaGrad: each coordinate's step is divided by the root of the sum of its
    squared gradients so far.

    Implements :prf:ref:`alg-adagrad`.

    Parameters
    ----------
    θ : array or tensor
        The parameters θ_{t-1}.
    g : array or tensor
        The minibatch gradient g_t, evaluated at θ_{t-1}.
    state : dict
        The rule's state from the previous step; ``{}`` before the first step. It holds the
        step count t and the sum s (torch's ``sum``).
    lr : float
        Learning rate α ≥ 0.
    lr_decay : float
        Learning-rate decay η ≥ 0: step t uses α / (1 + (t - 1) η).
    weight_decay : float
        L2 coefficient λ ≥ 0, added to the gradient as λθ.
    initial_accumulator_value : float
        The starting value s_0 ≥ 0 of every coordinate of the sum.
    eps : float
        Denominator constant ε > 0, added to √s.
    out : array or tensor, optional
        Where to write θ_t (it may be θ itself, for an update in place); a new array if None.

    Returns
    -------
    tuple
        The new parameters θ_t and the new state.
    """
    α = check_real("lr", lr, 0.0)
    η = check_real("lr_decay", lr_decay, 0.0)
    λ = check_real("weight_decay", weight_decay, 0.0)
    s0 = check_real("initial_accumulator_value", initial_accumulator_value, 0.0)
    ε = check_real("eps", eps, 0.0, low_open=True)
    t = step_count(state)
    if λ != 0.0:
        g = g + λ * θ
    s = state.get("sum")
    if s is None:
        s = _ops.zeros_like(θ) + s0
    s = add_square_(s, g)  # s_t = s_{t-1} + g_t ⊙ g_t
    denominator = _ops.sqrt(s)
    denominator += ε
    # θ_t = θ_{t-1} - α_t g_t / (√s_t + ε), with α_t = α / (1 + (t - 1) η)
    θ = step_towards(θ, g, denominator, α / (1.0 + (t - 1) * η), out=out)
    return θ, {"step": t, "sum": s}


class Adagrad(TorchOptimizer):
    """Drop-in replacement for ``torch.optim.Adagrad``, driven by :func:`adagrad_step`.

    Implements :prf:ref:`alg-adagrad` for PyTorch training loops: same constructor arguments,
    defaults and numbers as ``torch.optim.Adagrad``. As there, the sum s of every parameter
    is created at construction, filled with ``initial_accumulator_value``.
    """

    update_rule = staticmethod(adagrad_step)

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ):
        super().__init__(
            params,
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
        )

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        # torch fills the sum with the constructor's value, even for a group given its own.
        s0 = self.defaults["initial_accumulator_value"]
        for p in self.param_groups[-1]["params"]:
            if not self.state[p]:
                self.state[p] = {"step": 0, "sum": torch.full_like(p, s0)}
