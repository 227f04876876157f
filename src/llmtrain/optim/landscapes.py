"""Small loss surfaces in two (or more) dimensions, for watching optimizers move.

Each landscape evaluates its loss and gradient on arrays of shape ``(..., d)``, so the same
code computes one step of a trajectory and the whole grid of a contour plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._checks import check_real

__all__ = ["Quadratic", "Rosenbrock"]


@dataclass(frozen=True)
class Quadratic:
    """The quadratic bowl L(θ) = ½ (θ - θ*)ᵀ H (θ - θ*) in two dimensions.

    H has eigenvalues ``curvatures`` = (h_min, h_max) along axes rotated by ``angle``
    radians; its condition number h_max / h_min sets how hard the valley is.
    """

    curvatures: tuple[float, float] = (1.0, 10.0)
    angle: float = 0.0
    start: tuple[float, float] = (-2.5, 1.5)
    window: tuple[tuple[float, float], tuple[float, float]] = ((-3.0, 3.0), (-2.0, 2.0))

    def __post_init__(self):
        for i, h in enumerate(self.curvatures):
            check_real(f"curvatures[{i}]", h, 0.0, low_open=True)

    @property
    def hessian(self) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        rotation = np.array([[c, -s], [s, c]])
        return rotation @ np.diag(self.curvatures) @ rotation.T

    @property
    def minimum(self) -> np.ndarray:
        return np.zeros(2)

    @property
    def condition_number(self) -> float:
        return max(self.curvatures) / min(self.curvatures)

    def loss(self, θ):
        θ = np.asarray(θ, dtype=float)
        return 0.5 * np.einsum("...i,ij,...j->...", θ, self.hessian, θ)

    def grad(self, θ):
        return np.asarray(θ, dtype=float) @ self.hessian


@dataclass(frozen=True)
class Rosenbrock:
    """Rosenbrock's banana valley L(x, y) = (a - x)² + b (y - x²)², minimum at (a, a²)."""

    a: float = 1.0
    b: float = 100.0
    start: tuple[float, float] = (-1.5, 2.0)
    window: tuple[tuple[float, float], tuple[float, float]] = ((-2.0, 2.0), (-1.0, 3.0))

    @property
    def minimum(self) -> np.ndarray:
        return np.array([self.a, self.a**2])

    def loss(self, θ):
        θ = np.asarray(θ, dtype=float)
        x, y = θ[..., 0], θ[..., 1]
        return (self.a - x) ** 2 + self.b * (y - x**2) ** 2

    def grad(self, θ):
        θ = np.asarray(θ, dtype=float)
        x, y = θ[..., 0], θ[..., 1]
        dx = -2.0 * (self.a - x) - 4.0 * self.b * x * (y - x**2)
        dy = 2.0 * self.b * (y - x**2)
        return np.stack([dx, dy], axis=-1)
