"""Run an update rule on a small deterministic (or noisy) problem and record the path.

This is the loop the 2-D demos call on every slider move, so it stays small and NumPy-only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._checks import check_int, check_real

__all__ = ["Trajectory", "minimize"]

#: A run has diverged once its loss exceeds this multiple of max(1, |initial loss|).
DIVERGENCE_FACTOR = 1e6


@dataclass(frozen=True)
class Trajectory:
    """The parameters and losses of a run, truncated at the step where it diverged.

    ``thetas[t]`` and ``losses[t]`` are θ_t and L(θ_t), with t = 0 the starting point.
    ``diverged_at`` is the first step whose loss was not finite or exceeded the divergence
    threshold (that step is not recorded), or ``None`` if the run stayed finite.
    """

    thetas: np.ndarray
    losses: np.ndarray
    diverged_at: int | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None


def minimize(
    rule: Callable,
    problem,
    θ0=None,
    *,
    steps: int = 100,
    lr: float | Callable[[int], float] = 1e-2,
    noise: float = 0.0,
    seed: int = 0,
    **hyperparameters,
) -> Trajectory:
    """Apply ``rule`` for ``steps`` steps to ``problem``, starting at ``θ0``.

    Parameters
    ----------
    rule : callable
        An update rule ``rule(θ, g, state, lr=..., **hyperparameters) -> (θ, state)``.
    problem : object
        Anything with ``loss(θ)`` and ``grad(θ)``; its ``start`` is used when ``θ0`` is None.
    steps : int
        Number of updates, at least 1.
    lr : float or callable
        A constant learning rate α, or a schedule ``t -> α_t`` for t = 1, 2, ...
    noise : float
        Standard deviation of Gaussian noise added to each gradient, to mimic the minibatch
        noise of SGD on a 2-D surface (0 gives exact gradients).
    seed : int
        Seed of the noise, so that a run is reproducible.
    """
    steps = check_int("steps", steps, 1)
    noise = check_real("noise", noise, 0.0)
    θ = np.array(problem.start if θ0 is None else θ0, dtype=float)
    rng = np.random.default_rng(seed)
    schedule = lr if callable(lr) else (lambda t: lr)
    loss0 = float(problem.loss(θ))
    limit = DIVERGENCE_FACTOR * max(1.0, abs(loss0))
    thetas, losses, state = [θ], [loss0], {}
    for t in range(1, steps + 1):
        g = problem.grad(θ)
        if noise:
            g = g + noise * rng.standard_normal(g.shape)
        θ, state = rule(θ, g, state, lr=schedule(t), **hyperparameters)
        loss = float(problem.loss(θ))
        if not (math.isfinite(loss) and loss <= limit and np.all(np.isfinite(θ))):
            return Trajectory(np.array(thetas), np.array(losses), diverged_at=t)
        thetas.append(θ)
        losses.append(loss)
    return Trajectory(np.array(thetas), np.array(losses))
