"""Averages of the parameters along a training run: an exponential moving average (EMA) and
the uniform running average of stochastic weight averaging (SWA).

The averages are read, never trained: the optimizer updates θ_t as usual, and the average
θ̄_t follows it. The rules work on NumPy arrays and torch tensors alike; :class:`ParameterEMA`
keeps an EMA of a whole ``torch.nn.Module``.
"""

from __future__ import annotations

import copy

import torch

from .._checks import check_int, check_real
from . import _ops

__all__ = ["ParameterEMA", "ema_update", "uniform_average_update"]


def ema_update(θ_bar, θ, *, decay: float, out=None):
    """One step of an exponential moving average of the parameters.

    Implements :prf:ref:`alg-ema-weights`: θ̄_t = β θ̄_{t−1} + (1 − β) θ_t, computed as
    θ̄_{t−1} + (1 − β)(θ_t − θ̄_{t−1}).

    Parameters
    ----------
    θ_bar : array or tensor
        The average θ̄_{t−1}.
    θ : array or tensor
        The current parameters θ_t.
    decay : float
        β in [0, 1]: the weight the old average keeps (β = 0 copies θ_t).
    out : array or tensor, optional
        Where to write θ̄_t (it may be ``θ_bar`` itself); a new array if None.
    """
    β = check_real("decay", decay, 0.0, 1.0)
    return _ops.add_scaled(θ_bar, θ - θ_bar, 1.0 - β, out=out)


def uniform_average_update(θ_bar, θ, *, n: int, out=None):
    """One step of the uniform running average of n parameter vectors (SWA).

    Implements :prf:ref:`alg-ema-weights`: θ̄_n = θ̄_{n−1} + (θ_n − θ̄_{n−1}) / n, so that θ̄_n
    is the mean of θ_1..θ_n (n = 1 copies θ_1).

    Parameters
    ----------
    θ_bar : array or tensor
        The average θ̄_{n−1} of the first n − 1 vectors (ignored when n = 1).
    θ : array or tensor
        The n-th vector θ_n.
    n : int
        Number of vectors in the new average, n ≥ 1.
    out : array or tensor, optional
        Where to write θ̄_n; a new array if None.
    """
    n = check_int("n", n, 1)
    return _ops.add_scaled(θ_bar, θ - θ_bar, 1.0 / n, out=out)


class ParameterEMA:
    """An exponential moving average of the parameters of a ``torch.nn.Module``.

    Implements :prf:ref:`alg-ema-weights` with θ̄_0 = θ_0, the parameters at construction:
    call :meth:`update` after each ``optimizer.step()``. Buffers (such as running statistics)
    are not averaged, as in ``torch.optim.swa_utils.AveragedModel``'s default.

    Parameters
    ----------
    module : torch.nn.Module
        The model being trained.
    decay : float
        β in [0, 1]; the average remembers about 1 / (1 − β) steps.
    """

    def __init__(self, module: torch.nn.Module, *, decay: float):
        self.decay = check_real("decay", decay, 0.0, 1.0)
        self.average = [p.detach().clone() for p in module.parameters()]

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """θ̄ ← β θ̄ + (1 − β) θ, in place, for every parameter of ``module``."""
        params = list(module.parameters())
        if len(params) != len(self.average):
            raise ValueError(
                f"module has {len(params)} parameters, the average {len(self.average)}"
            )
        for θ_bar, θ in zip(self.average, params, strict=True):
            ema_update(θ_bar, θ, decay=self.decay, out=θ_bar)

    @torch.no_grad()
    def averaged_module(self, module: torch.nn.Module) -> torch.nn.Module:
        """A copy of ``module`` that holds the averaged parameters (for evaluation)."""
        twin = copy.deepcopy(module)
        for p, θ_bar in zip(twin.parameters(), self.average, strict=True):
            p.copy_(θ_bar)
        return twin
