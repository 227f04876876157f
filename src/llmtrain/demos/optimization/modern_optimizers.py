"""Demo of the Muon and Lion chapter: what Newton-Schulz steps do to a matrix's singular values."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...optim import newton_schulz
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, moving_title

__all__ = ["newton_schulz_demo", "spread_matrix"]


@lru_cache(maxsize=64)
def spread_matrix(log10_condition: float, *, n_row: int = 48, n_col: int = 24, seed: int = 0):
    """A random n_row × n_col matrix whose singular values are log-spaced from 1 down to
    10^-log10_condition: a few dominant directions and many weak ones, like a momentum matrix."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n_row, n_col)))
    V, _ = np.linalg.qr(rng.standard_normal((n_col, n_col)))
    σ = np.logspace(0.0, -log10_condition, n_col)
    return (U * σ) @ V.T


def _compute(steps, log10_condition):
    G = spread_matrix(log10_condition)
    before = np.linalg.svd(G, compute_uv=False)
    after = np.linalg.svd(newton_schulz(G, steps=steps), compute_uv=False)
    return {"before": before / np.linalg.norm(G), "after": after}


def _draw(fig, result, *, steps, log10_condition):
    ax = fig.subplots()
    index = np.arange(1, len(result["after"]) + 1)
    ax.axhline(1.0, color="0.5", lw=1, ls="--", label="U Vᵀ (exact orthogonalisation)")
    ax.set(xlabel="singular direction (largest first)", ylabel="singular value", yscale="log")
    ax.set_ylim(1e-5, 3.0)
    (before,) = ax.plot(index, result["before"], "o-", color="0.6", ms=3, label="G / ‖G‖_F")
    (after,) = ax.plot(index, result["after"], "o-", color="C0", ms=3, label="after NS steps")
    ax.legend(loc="lower left", fontsize=8)
    title = moving_title(ax)
    background = FrozenBackground(fig, [ax])

    def update(result, *, steps, log10_condition):
        before.set_ydata(result["before"])
        after.set_ydata(np.maximum(result["after"], 1e-5))
        title.set_text(f"{steps} Newton-Schulz steps, σ_max/σ_min = 10^{log10_condition:.1f}")

    update(result, steps=steps, log10_condition=log10_condition)
    background.capture([before, after, title])
    return update


@demo_factory
def newton_schulz_demo():
    """Singular values of a matrix before and after a number of Newton-Schulz steps."""
    return Demo(
        _compute,
        _draw,
        [
            Slider("steps", 0, 10, 5, integer=True, label="Newton-Schulz steps"),
            Slider("log10_condition", 0.0, 4.0, 3.0, label="log₁₀ condition number"),
        ],
        alt=(
            "The singular values of a 48 × 24 matrix, largest first, on a log scale: before "
            "(grey, divided by the Frobenius norm) and after Newton-Schulz steps (blue), with a "
            "dashed line at 1, where exact orthogonalisation puts them all. The sliders set the "
            "number of steps and the spread of the singular values (log₁₀ condition number)."
        ),
    )
