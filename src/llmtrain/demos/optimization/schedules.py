"""Demos of the learning-rate schedules chapter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...optim import (
    Quadratic,
    linear_warmup,
    minimize,
    noam,
    one_cycle,
    sgd_step,
    sgdr,
    step_decay,
    warmup_cosine,
)
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, freeze_on_top, log_axis, moving_title

__all__ = ["FAMILIES", "expected_losses", "schedule_demo", "schedule_from_sliders"]

#: The schedules the demo's ``family`` slider selects, in slider order.
FAMILIES = ("step decay", "linear warmup", "warmup + cosine", "one-cycle", "Noam", "SGDR")

#: A noisy quadratic on which to watch a schedule at work (stable for α < 2 / 4).
BOWL = Quadratic(curvatures=(1.0, 4.0), angle=0.3)


def schedule_from_sliders(
    family: int, *, lr: float, total: int, warmup: int, floor: float, cycle: int, T_mult: int
):
    """The schedule ``t -> α_t`` that the demo's sliders describe, with its peak ``lr``.

    ``floor`` is α_min / α_max; ``cycle`` is the period S of step decay and the first cycle
    T_0 of SGDR. Arguments a family cannot take are brought into its valid range."""
    warmup = min(warmup, total - 1)
    if family == 0:
        return lambda t: step_decay(t, lr=lr, step_size=cycle, gamma=0.5)
    if family == 1:
        return lambda t: linear_warmup(t, lr=lr, warmup=warmup)
    if family == 2:
        return lambda t: warmup_cosine(t, lr=lr, total=total, warmup=warmup, min_lr=floor * lr)
    if family == 3:
        # The increasing phase must span at least one update: 2 ≤ p T ≤ T − 1.
        p = min(max(warmup, 2), total - 1) / total
        return lambda t: one_cycle(t, max_lr=lr, total=total, pct_start=p)
    if family == 4:
        # Scaled so that the peak, reached at T_w, is the lr slider: s = α_max √(d T_w).
        d, T_w = 512, max(warmup, 1)
        s = lr * math.sqrt(d * T_w)
        return lambda t: noam(t, d_model=d, warmup=T_w, scale=s)
    return lambda t: sgdr(t, lr=lr, T_0=cycle, T_mult=T_mult, min_lr=floor * lr)


def expected_losses(rates, problem, noise: float) -> np.ndarray:
    """The expected loss E[L(θ_t)], t = 0..T, of SGD on a ``Quadratic`` whose gradients carry
    isotropic Gaussian noise of standard deviation ``noise``, run with the given rates.

    Along an eigenvector with curvature h, the mean and the variance of the coordinate follow
    E[θ_t] = (1 − α_t h) E[θ_{t−1}] and Var(θ_t) = (1 − α_t h)² Var(θ_{t−1}) + α_t² σ², and
    E[L] = Σ h (E[θ_t]² + Var(θ_t)) / 2: the exact curve that noisy runs scatter around."""
    h = np.array(problem.curvatures, dtype=float)
    cos, sin = math.cos(problem.angle), math.sin(problem.angle)
    mean = np.array([[cos, -sin], [sin, cos]]).T @ np.array(problem.start, dtype=float)
    var = np.zeros(2)
    out = [0.5 * float(h @ (mean**2 + var))]
    for α in rates:
        f = 1.0 - α * h
        mean, var = f * mean, f * f * var + α * α * noise * noise
        out.append(0.5 * float(h @ (mean**2 + var)))
    return np.array(out)


@dataclass(frozen=True)
class ScheduleRun:
    """A schedule's rates α_1..α_T, the losses of one noisy SGD run with them, and the
    expected loss that such runs scatter around."""

    steps: np.ndarray
    rates: np.ndarray
    losses: np.ndarray
    expected: np.ndarray
    diverged_at: int | None = None


@lru_cache(maxsize=128)
def _run(family, lr, total, warmup, floor, cycle, T_mult, noise, problem):
    # A pure function of the slider values: a slider moved back to a value seen before
    # redraws without recomputing.
    schedule = schedule_from_sliders(
        family, lr=lr, total=total, warmup=warmup, floor=floor, cycle=cycle, T_mult=T_mult
    )
    steps = np.arange(1, total + 1)
    rates = schedule(steps)
    run = minimize(sgd_step, problem, steps=total, lr=lambda t: rates[t - 1], noise=noise)
    expected = expected_losses(rates, problem, noise)
    return ScheduleRun(steps, rates, run.losses, expected, run.diverged_at)


def _draw(fig, run, *, family, lr, total, **params):
    rate_ax, loss_ax = fig.subplots(1, 2)
    (rates,) = rate_ax.plot(run.steps, run.rates, color="C0")
    rate_ax.set_xlabel("step t")
    rate_ax.set_ylabel("learning rate α_t")
    title = moving_title(rate_ax, FAMILIES[family], fontsize=10)
    (losses,) = loss_ax.plot(run.losses, color="C1", alpha=0.35, lw=0.8, label="one noisy run")
    (expected,) = loss_ax.plot(run.expected, color="C1", lw=2, label="expected loss (exact)")
    legend = loss_ax.legend(fontsize=8, loc="upper right")
    log_axis(loss_ax)
    loss_ax.set_ylim(1e-4, 10.0)
    loss_ax.set_xlabel("step t")
    loss_ax.set_ylabel("loss L(θ_t)")
    loss_ax.set_title("noisy SGD on a quadratic with this schedule", fontsize=10)

    # After the first move everything but the curves and the left title is frozen into one
    # image, and the legend (which a full draw puts above the curves) into another on top. The
    # axes' limits follow T and α_max: one background per pair of limits, kept for when the
    # sliders come back.
    background = FrozenBackground(fig, [rate_ax, loss_ax])
    dynamic = [rates, losses, expected, title, legend]
    images, frozen, on_top = {}, [None], []

    def freeze():
        key = (rate_ax.get_xlim(), rate_ax.get_ylim())
        if key == frozen[0]:
            return
        if key in images:
            background.image.pixels = images[key]
        else:
            if len(images) >= 32:
                images.pop(next(iter(images)))
            if on_top:
                on_top[0].set_visible(False)
            background.capture(dynamic)
            images[key] = background.image.pixels
            if on_top:
                on_top[0].set_visible(True)
                legend.set_visible(False)  # capture showed it again
            else:
                on_top.append(freeze_on_top(fig, [legend]))
        frozen[0] = key

    def update(run, *, family, lr, total, **params):
        rates.set_data(run.steps, run.rates)
        losses.set_data(np.arange(len(run.losses)), run.losses)
        expected.set_data(np.arange(len(run.expected)), run.expected)
        title.set_text(FAMILIES[family])
        rate_ax.set_xlim(0, total)
        rate_ax.set_ylim(0, 1.05 * max(lr, float(run.rates.max())))
        loss_ax.set_xlim(0, total)
        if first_done:
            freeze()

    first_done = False
    update(run, family=family, lr=lr, total=total)
    first_done = True
    return update


@demo_factory
def schedule_demo(problem=BOWL, noise: float = 1.0) -> Demo:
    """Any of the six schedules, drawn from its parameters (left), and the loss of noisy SGD
    (:func:`llmtrain.optim.sgd_step`) on a quadratic run with it (right)."""
    return Demo(
        _run,
        _draw,
        [
            Slider("family", 0, len(FAMILIES) - 1, 2, integer=True, label="schedule (0-5)"),
            Slider("lr", 1e-3, 0.45, 0.2, scale="log", label="peak α_max"),
            Slider("total", 50, 1000, 400, integer=True, step=10, label="total steps T"),
            Slider("warmup", 0, 300, 40, integer=True, label="warmup T_w"),
            Slider("floor", 0.0, 1.0, 0.1, step=0.01, label="floor α_min / α_max"),
            Slider("cycle", 5, 300, 60, integer=True, label="cycle T_0 / period S"),
            Slider("T_mult", 1, 3, 2, integer=True, label="SGDR T_mult"),
        ],
        fixed={"noise": noise, "problem": problem},
        alt=(
            "Left: the learning rate against the step for one schedule family (step decay, "
            "linear warmup, warmup + cosine, one-cycle, Noam or SGDR); right: the loss of noisy "
            "SGD on a quadratic run with that schedule, one run faint and the exact expected "
            "loss thick, on a log scale. The sliders pick the family and set its peak rate, "
            "total steps, warmup, floor, cycle and SGDR's T_mult."
        ),
        static_main=("family", "lr", "warmup"),
    )
