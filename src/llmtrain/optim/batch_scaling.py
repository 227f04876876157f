"""How to change the learning rate when the batch size changes.

For SGD, the Linear Scaling Rule of Goyal et al. (2017): multiply the batch size by k, multiply
the learning rate by k, and ramp the learning rate up gradually over the first epochs. For
Adam and RMSProp, the square-root rule that Malladi et al. (2022) derive from the stochastic
differential equations of these methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .._checks import check_int, check_real

__all__ = ["linear_scaling_rule", "linear_scaling_warmup", "square_root_scaling_rule"]


def linear_scaling_rule(
    batch_size: int, *, base_lr: float = 0.1, base_batch_size: int = 256
) -> float:
    """The learning rate α = ᾱ · B / B̄ of the Linear Scaling Rule (for SGD).

    Implements :prf:ref:`alg-linear-scaling` (step 1). The defaults are Goyal et al.'s
    reference point for ResNet-50 on ImageNet, ᾱ = 0.1 at B̄ = 256, so that
    ``linear_scaling_rule(8192)`` is 3.2.

    Parameters
    ----------
    batch_size : int
        The new batch size B ≥ 1.
    base_lr : float
        The learning rate ᾱ > 0 that was tuned at the reference batch size.
    base_batch_size : int
        The reference batch size B̄ ≥ 1.
    """
    B = check_int("batch_size", batch_size, 1)
    ᾱ = check_real("base_lr", base_lr, 0.0, low_open=True)
    B̄ = check_int("base_batch_size", base_batch_size, 1)
    return ᾱ * B / B̄


def linear_scaling_warmup(
    batch_size: int,
    steps_per_epoch: int,
    *,
    base_lr: float = 0.1,
    base_batch_size: int = 256,
    warmup_epochs: float = 5.0,
) -> Callable[[int], float]:
    """The schedule t -> α_t of the Linear Scaling Rule with gradual warmup.

    Implements :prf:ref:`alg-linear-scaling`. Updates are counted t = 1, 2, ... as in the
    rest of the book: the first update uses ᾱ, and the rate grows by the same amount every
    update, α_t = ᾱ + (kᾱ − ᾱ)(t − 1)/T_w with k = B / B̄, until it reaches kᾱ at
    t = T_w + 1, after ``warmup_epochs`` epochs of T_w = round(warmup_epochs ·
    steps_per_epoch) updates; it stays at kᾱ afterwards. This is the rate that
    ``torch.optim.lr_scheduler.LinearLR(opt, start_factor=1/k, total_iters=T_w)`` gives the
    t-th ``opt.step()``.

    Parameters
    ----------
    batch_size : int
        The batch size B ≥ 1.
    steps_per_epoch : int
        Iterations per epoch, ⌈N/B⌉ (see :func:`iterations_per_epoch`), ≥ 1.
    base_lr, base_batch_size
        The reference point ᾱ, B̄, as in :func:`linear_scaling_rule`.
    warmup_epochs : float
        Length of the warmup in epochs, ≥ 0 (Goyal et al. use 5; 0 switches warmup off).
    """
    target = linear_scaling_rule(batch_size, base_lr=base_lr, base_batch_size=base_batch_size)
    steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1)
    warmup_epochs = check_real("warmup_epochs", warmup_epochs, 0.0)
    ᾱ = float(base_lr)
    T_w = round(warmup_epochs * steps_per_epoch)

    def α(t: int) -> float:
        t = check_int("t", t, 1)
        if t > T_w:
            return target
        return ᾱ + (target - ᾱ) * (t - 1) / T_w

    return α


def square_root_scaling_rule(
    batch_size: int,
    base_batch_size: int,
    *,
    lr: float,
    betas: tuple[float, ...] = (0.9, 0.999),
    eps: float = 1e-8,
) -> dict:
    """Adam or RMSProp hyperparameters for a new batch size, by the square-root rule.

    Malladi et al. (2022) show that, with the batch size multiplied by k = B / B̄, Adam (and
    RMSProp) follow approximately the same stochastic differential equation, and so train
    alike, when the learning rate is multiplied by √k, each decay rate β is replaced by
    1 - k(1 - β), and ε is divided by √k. It is a rule for adaptive methods: for SGD the
    same analysis gives the linear rule (:func:`linear_scaling_rule`).

    Parameters
    ----------
    batch_size, base_batch_size : int
        The new batch size B and the one the hyperparameters were tuned at, B̄ (both ≥ 1).
    lr : float
        The tuned learning rate, > 0.
    betas : tuple of float
        The tuned decay rates, each in [0, 1): (β₁, β₂) for Adam, (ρ,) for RMSProp.
    eps : float
        The tuned ε ≥ 0.

    Returns
    -------
    dict
        ``{"lr": ..., "betas": (...), "eps": ...}`` for the new batch size.

    Raises
    ------
    ValueError
        If a scaled decay rate 1 - k(1 - β) would be negative (k too large for that β).
    """
    B = check_int("batch_size", batch_size, 1)
    B̄ = check_int("base_batch_size", base_batch_size, 1)
    α = check_real("lr", lr, 0.0, low_open=True)
    ε = check_real("eps", eps, 0.0)
    k = B / B̄
    scaled = []
    for i, β in enumerate(betas):
        β = check_real(f"betas[{i}]", β, 0.0, 1.0, high_open=True)
        new = 1.0 - k * (1.0 - β)
        if new < 0.0:
            raise ValueError(
                f"betas[{i}]={β!r} cannot be scaled by k = {k:g}: 1 - k(1 - β) = {new:g} "
                f"must be in [0, 1); use a batch_size of at most {B̄ / (1.0 - β):g}"
            )
        scaled.append(new)
    return {"lr": α * math.sqrt(k), "betas": tuple(scaled), "eps": ε / math.sqrt(k)}
