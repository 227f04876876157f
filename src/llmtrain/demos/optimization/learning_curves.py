"""Demos of the chapter on learning curves and early stopping."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...optim import EarlyStopping, TrainingRun, polynomial_regression_data, train
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, log_axis, moving_title
from .sgd import log_x_axis

__all__ = ["early_stopping_demo"]

_GRID = np.linspace(-1.0, 1.0, 200)


@dataclass(frozen=True)
class _Result:
    task: object
    run: TrainingRun
    stop: int | None
    best: int

    @property
    def diverged_at(self):
        return self.run.diverged_at


@lru_cache(maxsize=64)
def _run(degree, n, lr, batch_size, epochs, noise):
    """The training run, which the patience slider does not change: a pure function of the
    other sliders, so kept for the values a reader has visited (moving back is instant)."""
    task = polynomial_regression_data(n, degree, noise=noise, seed=0)
    run = train(
        task.train, lr=lr, batch_size=min(batch_size, n), epochs=epochs, val=task.val, seed=0
    )
    return task, run


def _fit(degree, n, lr, batch_size, patience, epochs, noise):
    task, run = _run(degree, n, lr, batch_size, epochs, noise)
    # Replay the validation curve through the stopping rule, to show where it would have
    # stopped and what it would have kept, next to what training on would have done.
    rule = EarlyStopping(patience=patience)
    stop = None
    for epoch, value in enumerate(run.val_losses):
        if rule.step(value):
            stop = epoch
            break
    return _Result(task, run, stop, rule.best_step)


def _draw(fig, result, *, epochs, noise, **params):
    curve_ax, fit_ax = fig.subplots(1, 2, width_ratios=[1.25, 1])
    floor = 0.5 * noise**2
    curve_ax.axhline(floor, color="black", linestyle="--", linewidth=0.8)
    (train_line,) = curve_ax.plot([], [], color="C0", label="training loss")
    (val_line,) = curve_ax.plot([], [], color="C3", label="validation loss")
    (best_dot,) = curve_ax.plot([], [], "o", color="C2", markersize=7)
    stop_line = curve_ax.axvline(1, color="C2", linewidth=1.5)
    log_x_axis(curve_ax)
    log_axis(curve_ax)
    curve_ax.set_xlim(1, epochs)
    curve_ax.set_ylim(0.2 * floor, 3.0)
    curve_ax.set_ylabel("loss")
    curve_ax.grid(alpha=0.3)
    curve_ax.legend(loc="lower left", fontsize=7)
    curve_ax.set_xlabel("epoch (green: early stop; dot: epoch kept; dashed: noise floor)")
    title = moving_title(curve_ax, fontsize=9)

    fit_ax.plot(_GRID, result.task.target(_GRID), color="black", linewidth=1)
    (points,) = fit_ax.plot([], [], "o", color="C0", markersize=4)
    (kept,) = fit_ax.plot([], [], color="C2", linewidth=2)
    (last,) = fit_ax.plot([], [], color="C3", linewidth=1, alpha=0.8)
    fit_ax.set_xlim(-1, 1)
    fit_ax.set_ylim(-2.5, 2.5)
    fit_ax.set_xlabel("x (black: true curve; green: fit kept; red: fit at the end)")
    fit_title = moving_title(fit_ax, fontsize=9)

    background = FrozenBackground(fig, [curve_ax, fit_ax])
    dynamic = [train_line, val_line, best_dot, stop_line, title, points, kept, last, fit_title]

    def apply(result, patience):
        run, task = result.run, result.task
        e = np.arange(len(run.train_losses))
        train_line.set_data(e[1:], run.train_losses[1:])
        val_line.set_data(e[1:], run.val_losses[1:])
        best = result.best
        best_dot.set_data([max(best, 1)], [run.val_losses[best]])
        stopped = result.stop is not None
        stop_line.set_xdata([result.stop if stopped else epochs] * 2)
        stop_line.set_visible(stopped)
        gap = run.val_losses[best] - run.train_losses[best]
        title.set_text(
            f"patience {patience}: "
            + (f"stops at epoch {result.stop}, keeps {best}" if stopped else "never stops")
            + f"; gap there {gap:.3f}"
        )
        points.set_data(task.x_train, task.y_train)
        kept.set_data(_GRID, task.predict(run.thetas[best], _GRID))
        last.set_data(_GRID, task.predict(run.thetas[-1], _GRID))
        fit_title.set_text(
            f"degree {task.degree}, N = {len(task.x_train)}: validation loss "
            f"{run.val_losses[best]:.3f} kept, {run.val_losses[-1]:.3f} at the end"
        )

    def update(result, *, patience, **_):
        # Axes, ticks, labels, legend, noise floor and true curve never change: after the
        # first move they are one image, and a move draws the curves and titles only.
        if background.image is None:
            background.capture(dynamic)
        apply(result, patience)

    apply(result, params["patience"])
    return update


@demo_factory
def early_stopping_demo(epochs: int = 150, noise: float = 0.3) -> Demo:
    """Training and validation curves of a polynomial fitted by minibatch SGD
    (:func:`llmtrain.optim.train`), and where early stopping with patience
    (:class:`llmtrain.optim.EarlyStopping`) stops; sliders for the degree (capacity), the
    number of training points, the learning rate, the batch size and the patience."""
    return Demo(
        _fit,
        _draw,
        [
            Slider("degree", 1, 16, 12, integer=True, label="degree (capacity)"),
            Slider("n", 8, 60, 20, integer=True, label="training points N"),
            Slider("lr", 0.01, 0.5, 0.2, scale="log", label="learning rate α"),
            Slider("batch_size", 4, 32, 5, integer=True, label="batch size B"),
            Slider("patience", 0, 50, 10, integer=True, label="patience P"),
        ],
        fixed={"epochs": epochs, "noise": noise},
        figsize=(10.0, 3.8),
        alt=(
            "Left: training (blue) and validation (red) loss of a polynomial fit against the "
            "epoch, both axes logarithmic, with the noise floor dashed, a green line where early "
            "stopping stops and a green dot at the epoch it keeps; right: the training points, "
            "the true curve (black), the kept fit (green) and the fit at the end (red). The "
            "sliders set the degree, the number of training points, the learning rate, the batch "
            "size and the patience."
        ),
        static_main=("degree", "n", "patience"),
    )


def capacity_sweep(ax, *, n: int = 20, degrees=range(17), noise: float = 0.3, seed: int = 0):
    """Plot the training and validation loss of least-squares polynomial fits against the
    degree D (the capacity), each fitted to convergence on the same ``n`` points; return
    ``(degrees, train_losses, val_losses)``."""
    degrees = np.asarray(list(degrees))
    train_losses, val_losses = [], []
    for D in degrees:
        task = polynomial_regression_data(n, int(D), noise=noise, seed=seed)
        θ = task.train.solve()
        train_losses.append(task.train.loss(θ))
        val_losses.append(task.val.loss(θ))
    train_losses, val_losses = np.array(train_losses), np.array(val_losses)
    ax.plot(degrees, train_losses, "-o", color="C0", markersize=4, label="training loss")
    ax.plot(degrees, val_losses, "-o", color="C3", markersize=4, label="validation loss")
    ax.axhline(0.5 * noise**2, color="black", linestyle="--", linewidth=0.8, label="noise floor")
    log_axis(ax)
    ax.set_ylim(0.1 * 0.5 * noise**2, 10.0)
    ax.set_xlabel("degree D")
    ax.set_ylabel("loss")
    ax.set_title(f"N = {n} training points", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return degrees, train_losses, val_losses
