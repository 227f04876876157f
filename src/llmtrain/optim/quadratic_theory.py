"""How fast gradient descent and momentum converge on a quadratic, in closed form.

On L(θ) = ½ (θ - θ*)ᵀ ∇²L (θ - θ*), each eigendirection of ∇²L with curvature h evolves on its
own, and momentum turns that evolution into a two-dimensional linear recurrence with the
iteration matrix R of :func:`iteration_matrix`. The convergence rate, written rate, is the
spectral radius of R (the largest eigenvalue in absolute value), taken over all curvatures of
the problem
(Polyak 1964; Goh 2017). These are analysis functions, not update rules: they predict what
:func:`sgd_step` does, and the tests check the predictions against it.

Every function accepts NumPy arrays for α, μ and h and broadcasts, so one call evaluates a
whole grid of hyperparameters (the rate map of the momentum chapter).
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import check_real

__all__ = [
    "gd_rate",
    "heavy_ball_converges",
    "iteration_matrix",
    "momentum_rate",
    "optimal_gd",
    "optimal_heavy_ball",
    "steps_to_reduce",
]


def _check_array(
    name: str, value, low: float, high: float = math.inf, *, low_open=False, high_open=False
) -> np.ndarray:
    """Validate every entry of a scalar or array with :func:`check_real`'s rules."""
    x = np.asarray(value, dtype=float)
    if x.ndim == 0:
        check_real(name, value, low, high, low_open=low_open, high_open=high_open)
        return x
    bad = ~np.isfinite(x) | (x < low) | (x > high)
    if low_open:
        bad |= x == low
    if high_open:
        bad |= x == high
    if bad.any():
        check_real(name, float(x[bad].flat[0]), low, high, low_open=low_open, high_open=high_open)
    return x


def _check_curvatures(h_min, h_max) -> tuple[float, float]:
    h_min = check_real("h_min", h_min, 0.0, low_open=True)
    h_max = check_real("h_max", h_max, h_min)
    return h_min, h_max


def iteration_matrix(lr: float, momentum: float, h: float, *, nesterov: bool = False):
    """The 2×2 matrix R with (b_t, e_t) = R (b_{t-1}, e_{t-1}) along one eigendirection.

    For momentum SGD in PyTorch's form (:func:`sgd_step`) on a quadratic, the error
    e_t = θ_t - θ* along an eigenvector of curvature h and the momentum buffer b_t along the
    same eigenvector obey b_t = μ b_{t-1} + h e_{t-1} and e_t = e_{t-1} - α b_t (heavy ball),
    or e_t = e_{t-1} - α (h e_{t-1} + μ b_t) (Nesterov).

    Parameters
    ----------
    lr, momentum, h : float
        Learning rate α ≥ 0, momentum μ in [0, 1) and curvature h ≥ 0.
    nesterov : bool
        The matrix of Nesterov momentum instead of heavy ball.
    """
    α = check_real("lr", lr, 0.0)
    μ = check_real("momentum", momentum, 0.0, 1.0, high_open=True)
    h = check_real("h", h, 0.0)
    if nesterov:
        return np.array([[μ, h], [-α * μ * μ, 1.0 - α * h * (1.0 + μ)]])
    return np.array([[μ, h], [-α * μ, 1.0 - α * h]])


def momentum_rate(lr, momentum, h, *, nesterov: bool = False):
    """The convergence rate = max(abs(ψ₁), abs(ψ₂)) of :func:`iteration_matrix`, in closed form.

    The eigenvalues ψ are the roots of Ψ(ψ) = ψ² - tr ψ + det = 0, with the trace
    tr = 1 + μ - αh and the determinant det = μ of R for heavy ball, tr = (1 + μ)(1 - αh) and
    det = μ(1 - αh) for Nesterov. The error along the
    direction shrinks like rate^t (t rate^t when the roots coincide); rate ≥ 1 means divergence.

    ``h`` may be an array of curvatures: the result is then the rate of the slowest
    direction, the maximum over the last axis. ``lr`` and ``momentum`` broadcast against each
    other (pass grids to get a rate map).
    """
    α = _check_array("lr", lr, 0.0)
    μ = _check_array("momentum", momentum, 0.0, 1.0, high_open=True)
    h = _check_array("h", h, 0.0)
    curvatures = np.atleast_1d(h)
    α, μ = np.broadcast_arrays(α, μ)
    αh = α[..., None] * curvatures
    μ_ = μ[..., None]
    if nesterov:
        tr, det = (1.0 + μ_) * (1.0 - αh), μ_ * (1.0 - αh)
    else:
        tr, det = 1.0 + μ_ - αh, np.broadcast_to(μ_, αh.shape)
    disc = tr * tr - 4.0 * det
    root = np.sqrt(np.abs(disc))
    # Real roots: the larger |ψ| is (|tr| + √disc) / 2. Complex pair: |ψ|² = ψ ψ̄ = det.
    rate = np.where(disc >= 0.0, (np.abs(tr) + root) / 2.0, np.sqrt(np.abs(det)))
    rate = rate.max(axis=-1)
    return float(rate) if rate.ndim == 0 else rate


def gd_rate(lr, h):
    """The convergence rate of plain gradient descent (μ = 0): the largest abs(1 - αh) over h."""
    return momentum_rate(lr, 0.0, h)


def heavy_ball_converges(lr, momentum, h):
    """Whether heavy-ball momentum converges along curvature h > 0: 0 < αh < 2(1 + μ).

    This is the region where both roots of ψ² - (1 + μ - αh) ψ + μ lie inside the unit
    circle (for 0 ≤ μ < 1); broadcasting as :func:`momentum_rate` does, over all h.
    """
    α = _check_array("lr", lr, 0.0)
    μ = _check_array("momentum", momentum, 0.0, 1.0, high_open=True)
    h = np.atleast_1d(_check_array("h", h, 0.0, low_open=True))
    αh = np.asarray(α)[..., None] * h
    ok = ((αh > 0.0) & (αh < 2.0 * (1.0 + np.asarray(μ)[..., None]))).all(axis=-1)
    return bool(ok) if ok.ndim == 0 else ok


def optimal_gd(h_min: float, h_max: float) -> tuple[float, float]:
    """The learning rate α* = 2 / (h_min + h_max) that makes gradient descent fastest on
    curvatures in [h_min, h_max], and its rate (κ - 1) / (κ + 1), κ = h_max / h_min."""
    h_min, h_max = _check_curvatures(h_min, h_max)
    κ = h_max / h_min
    return 2.0 / (h_min + h_max), (κ - 1.0) / (κ + 1.0)


def optimal_heavy_ball(h_min: float, h_max: float) -> tuple[float, float, float]:
    """Polyak's optimal heavy-ball parameters for curvatures in [h_min, h_max].

    Returns ``(α*, μ*, rate*)`` with α* = (2 / (√h_max + √h_min))², μ* = ((√κ - 1) / (√κ + 1))²
    and rate* = √μ* = (√κ - 1) / (√κ + 1), κ = h_max / h_min.
    """
    h_min, h_max = _check_curvatures(h_min, h_max)
    s_min, s_max = math.sqrt(h_min), math.sqrt(h_max)
    rate = (s_max - s_min) / (s_max + s_min)
    return (2.0 / (s_max + s_min)) ** 2, rate * rate, rate


def steps_to_reduce(rate: float, factor: float) -> int:
    """The number of steps t for the error to shrink by ``factor`` at ``rate``: the least t
    with rate^t ≤ 1 / factor, that is ⌈ln(factor) / ln(1 / rate)⌉."""
    rate = check_real("rate", rate, 0.0, 1.0, low_open=True, high_open=True)
    factor = check_real("factor", factor, 1.0)
    return max(0, math.ceil(math.log(factor) / -math.log(rate) - 1e-12))
