"""How noisy is a minibatch gradient? Its variance, measured and in closed form.

The minibatch gradient g = (1/B) Σ_{i∈batch} ∇ℓ_i(θ) is an unbiased estimate of the full
gradient ∇L(θ). Its variance E‖g - ∇L‖² is σ_g²/B when the B examples are drawn with
replacement, and σ_g²/B · (N - B)/(N - 1) without replacement (the finite-population
correction), where σ_g² = (1/N) Σ_i ‖∇ℓ_i(θ) - ∇L(θ)‖² is the variance of one example's
gradient. :func:`measure_gradient_variance` estimates the same quantity by sampling batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import check_int

__all__ = ["GradientVariance", "measure_gradient_variance", "minibatch_gradient_variance"]


def _per_example_variance(G: np.ndarray) -> float:
    return float(np.mean(np.sum((G - G.mean(axis=0)) ** 2, axis=1)))


def minibatch_gradient_variance(per_example_grads, batch_size: int, *, replacement: bool = False):
    """The closed-form variance E‖g - ∇L‖² of a minibatch gradient of B examples.

    Parameters
    ----------
    per_example_grads : array of shape (N, d)
        The gradients ∇ℓ_i(θ) of the N examples, one per row.
    batch_size : int
        B in [1, N] (any B ≥ 1 with ``replacement=True``).
    replacement : bool
        Whether the B examples are drawn with replacement (independently) or without (a
        random subset, as one batch of a shuffled epoch is).

    Returns
    -------
    float
        σ_g²/B with replacement, σ_g²/B · (N - B)/(N - 1) without.
    """
    G = np.asarray(per_example_grads, dtype=float)
    if G.ndim != 2:
        raise ValueError(f"per_example_grads must have shape (N, d), got {G.shape}")
    N = G.shape[0]
    B = check_int("batch_size", batch_size, 1, 2**62 if replacement else N)
    σ2 = _per_example_variance(G)
    if replacement:
        return σ2 / B
    return 0.0 if N == 1 else σ2 / B * (N - B) / (N - 1)


@dataclass(frozen=True)
class GradientVariance:
    """Measured and predicted minibatch-gradient variance for several batch sizes.

    Attributes
    ----------
    batch_sizes : numpy.ndarray
        The batch sizes B.
    measured : numpy.ndarray
        The mean of ‖g - ∇L‖² over the sampled batches, for each B.
    predicted : numpy.ndarray
        The closed form (:func:`minibatch_gradient_variance`) for each B.
    per_example_variance : float
        σ_g², the variance of one example's gradient.
    samples : int
        Batches sampled per batch size.
    """

    batch_sizes: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    per_example_variance: float
    samples: int


def measure_gradient_variance(
    problem,
    θ,
    batch_sizes,
    *,
    samples: int = 1000,
    replacement: bool = False,
    seed: int = 0,
) -> GradientVariance:
    """Sample minibatch gradients of ``problem`` at θ and measure their variance.

    For each batch size B, draws ``samples`` batches (with or without replacement), computes
    the minibatch gradient of each, and averages ‖g - ∇L(θ)‖². The batches of different
    sizes are nested (the first B examples of the same random orderings), so the estimates
    for different B are correlated, but each is unbiased.

    Parameters
    ----------
    problem : object
        Anything with ``per_example_grads(θ)`` returning an (N, d) array, such as
        :class:`LeastSquares`.
    θ : array
        Where to evaluate the gradients.
    batch_sizes : sequence of int
        The batch sizes to measure, each in [1, N].
    samples : int
        Batches per batch size, ≥ 2.
    replacement : bool
        Draw the examples of a batch with replacement.
    seed : int
        Seed of the sampling.
    """
    samples = check_int("samples", samples, 2)
    G = np.asarray(problem.per_example_grads(np.asarray(θ, dtype=float)), dtype=float)
    N = G.shape[0]
    full = G.mean(axis=0)
    rng = np.random.default_rng(seed)
    sizes = np.array([check_int("batch_sizes[i]", b, 1, N) for b in batch_sizes], dtype=int)
    # One ordering of examples per sample serves every batch size: the batch of size B is
    # its first B entries (a uniform random subset without replacement, B independent draws
    # with), and prefix sums give all the batch means at once.
    B_max = int(sizes.max()) if len(sizes) else 1
    if replacement:
        idx = rng.integers(0, N, size=(samples, B_max))
    else:
        idx = np.argsort(rng.random((samples, N)), axis=1)[:, :B_max]
    prefix = np.cumsum(G[idx], axis=1)  # (samples, B_max, d)
    measured = np.array(
        [np.mean(np.sum((prefix[:, B - 1] / B - full) ** 2, axis=1)) for B in sizes]
    )
    predicted = np.array(
        [minibatch_gradient_variance(G, B, replacement=replacement) for B in sizes]
    )
    return GradientVariance(sizes, measured, predicted, _per_example_variance(G), samples)
