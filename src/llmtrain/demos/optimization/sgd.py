"""Demos of the chapter on gradient descent and minibatch SGD."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.ticker import LogFormatter, NullLocator

from ...optim import linear_regression_data, measure_gradient_variance, train
from ..demo import Demo, Slider, demo_factory
from ..plots import log_axis


def log_x_axis(ax) -> None:
    """A log-scale x axis with plain tick labels and no minor ones, which render far faster
    than the default mathtext labels (the x-axis twin of ``plots.log_axis``)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(LogFormatter())
    ax.xaxis.set_minor_locator(NullLocator())


__all__ = ["gradient_noise_demo", "learning_rate_demo"]

#: The small model the learning-rate demo trains: linear regression, 128 examples, 10
#: parameters, curvatures spread over a factor 100.
REGRESSION = linear_regression_data(128, 10, noise=0.5, seed=0)


def _train(lr, batch_size, momentum, epochs, problem):
    return train(problem, lr=lr, batch_size=batch_size, momentum=momentum, epochs=epochs, seed=0)


def _draw_training(fig, run, *, lr, batch_size, momentum, epochs, problem):
    ax = fig.subplots()
    floor = problem.loss(problem.solve())
    ax.axhline(floor, color="black", linestyle="--", linewidth=0.8, label="best possible L(θ*)")
    (steps,) = ax.plot([], [], color="C0", alpha=0.35, linewidth=0.8, label="minibatch loss")
    (epochs_line,) = ax.plot([], [], "-o", color="C3", markersize=3, label="training loss (epoch)")
    log_axis(ax)
    ax.set_xlim(0, epochs)
    ax.set_ylim(0.5 * floor, 30 * problem.loss(np.zeros(problem.dim)))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    title = ax.set_title("", fontsize=10)

    def update(run, *, lr, batch_size, momentum, **_):
        t = np.arange(1, len(run.step_losses) + 1) / run.steps_per_epoch
        steps.set_data(t, run.step_losses)
        epochs_line.set_data(np.arange(len(run.train_losses)), run.train_losses)
        final = "diverged" if run.diverged else f"final loss {run.train_losses[-1]:.3g}"
        title.set_text(
            f"SGD, α = {lr:.3g}, B = {batch_size} ({run.steps_per_epoch} steps/epoch), "
            f"μ = {momentum:.2f}: {final}"
        )

    update(run, lr=lr, batch_size=batch_size, momentum=momentum)
    return update


@demo_factory
def learning_rate_demo(problem=REGRESSION, epochs: int = 10) -> Demo:
    """Loss curves of minibatch SGD (:func:`llmtrain.optim.train`) on a small linear regression,
    with sliders for the learning rate α, the batch size B and the momentum μ."""
    return Demo(
        _train,
        _draw_training,
        [
            Slider("lr", 1e-3, 1.0, 0.03, scale="log", label="learning rate α"),
            Slider("batch_size", 1, 128, 16, integer=True, label="batch size B"),
            Slider("momentum", 0.0, 0.95, 0.0, step=0.05, label="momentum μ"),
        ],
        fixed={"epochs": epochs, "problem": problem},
        alt=(
            "The loss of minibatch SGD on a small linear regression against the epoch, on a log "
            "scale: the loss of every minibatch (faint blue) and the training loss after each "
            "epoch (red dots), with the best possible loss dashed. The sliders set the learning "
            "rate α, the batch size B and the momentum μ."
        ),
    )


#: Batch sizes at which the noise demo measures the variance: powers of two.
_SIZES = 2 ** np.arange(0, 11)


def _measure(n, distance, samples, seed):
    problem = linear_regression_data(n, 5, noise=0.5, seed=seed)
    θ_star = problem.solve()
    θ = θ_star + distance * np.ones(5) / np.sqrt(5)
    sizes = _SIZES[_SIZES <= n]
    without = measure_gradient_variance(problem, θ, sizes, samples=samples, seed=seed)
    with_ = measure_gradient_variance(
        problem, θ, sizes, samples=samples, replacement=True, seed=seed + 1
    )
    return without, with_


def _draw_noise(fig, result, *, n, **_):
    ax = fig.subplots()
    log_x_axis(ax)
    log_axis(ax)
    lines = {
        "with": ax.plot([], [], "o", color="C0", label="measured, with replacement")[0],
        "with_fit": ax.plot([], [], "-", color="C0", label="σ_g²/B")[0],
        "without": ax.plot([], [], "s", color="C3", label="measured, without replacement")[0],
        "without_fit": ax.plot([], [], "--", color="C3", label="σ_g²/B · (N−B)/(N−1)")[0],
    }
    ax.set_xlim(0.8, 1.25 * _SIZES[-1])
    ax.set_xlabel("batch size B")
    ax.set_ylabel("variance E‖g − ∇L‖²")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    title = ax.set_title("", fontsize=10)

    def update(result, *, n, **_):
        without, with_ = result
        lines["with"].set_data(with_.batch_sizes, with_.measured)
        lines["with_fit"].set_data(with_.batch_sizes, with_.predicted)
        # The variance is exactly 0 at B = N without replacement; leave that point off the log.
        keep = without.batch_sizes < n
        lines["without"].set_data(without.batch_sizes[keep], without.measured[keep])
        lines["without_fit"].set_data(without.batch_sizes[keep], without.predicted[keep])
        σ2 = with_.per_example_variance
        ax.set_ylim(σ2 / (5 * _SIZES[-1]), 5 * σ2)
        title.set_text(f"N = {n} examples, σ_g² = {σ2:.3g}: the variance falls as 1/B")

    update(result, n=n)
    return update


@demo_factory
def gradient_noise_demo(samples: int = 250) -> Demo:
    """The variance of the minibatch gradient against the batch size, measured by sampling
    (:func:`llmtrain.optim.measure_gradient_variance`) and in closed form, with sliders for
    the data set size N and the distance of θ from the minimum."""
    return Demo(
        _measure,
        _draw_noise,
        [
            Slider("n", 16, 1024, 256, integer=True, label="examples N"),
            Slider("distance", 0.0, 3.0, 0.0, step=0.1, label="distance of θ from θ*"),
        ],
        fixed={"samples": samples, "seed": 0},
        alt=(
            "The variance of the minibatch gradient against the batch size B, both axes "
            "logarithmic: measured with replacement (blue dots) beside σ_g²/B (line), and "
            "without replacement (red squares) beside σ_g²/B · (N−B)/(N−1) (dashed). The sliders "
            "set the number of examples N and the distance of θ from the minimum."
        ),
    )


def learning_rate_sweep(ax, problem=REGRESSION, *, lrs=None, batch_size=16, epochs=10):
    """Plot the training loss after ``epochs`` epochs of minibatch SGD against the learning
    rate, on a log-log axis, marking the runs that diverged; return ``(lrs, losses)``, with
    ``inf`` for a diverged run."""
    lrs = np.geomspace(1e-3, 1.0, 25) if lrs is None else np.asarray(lrs, float)
    losses = np.array(
        [
            math.inf if run.diverged else run.train_losses[-1]
            for run in (train(problem, lr=a, batch_size=batch_size, epochs=epochs) for a in lrs)
        ]
    )
    ok = np.isfinite(losses)
    floor = problem.loss(problem.solve())
    ax.plot(lrs[ok], losses[ok], "-o", color="C0", markersize=4, label="loss after training")
    top = 2 * losses[ok].max()
    ax.plot(lrs[~ok], np.full((~ok).sum(), top), "x", color="#b00020", label="diverged")
    ax.axhline(floor, color="black", linestyle="--", linewidth=0.8, label="best possible L(θ*)")
    log_x_axis(ax)
    log_axis(ax)
    ax.set_ylim(floor / 2, 2 * top)
    ax.set_xlabel("learning rate α")
    ax.set_ylabel(f"training loss after {epochs} epochs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return lrs, losses
