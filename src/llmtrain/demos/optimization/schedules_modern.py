"""Demos of the schedules chapter's sections on WSD and weight averaging."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...optim import Quadratic, warmup_cosine, warmup_stable_decay
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, freeze_on_top, log_axis, moving_title
from .schedules import expected_losses

__all__ = ["VALLEY", "WSDBranches", "wsd_branches", "wsd_demo"]

#: A noisy quadratic with one slow direction (curvature 0.01) that keeps improving for
#: hundreds of steps and one fast direction (curvature 1) that sits on its noise floor.
VALLEY = Quadratic(curvatures=(0.01, 1.0), angle=0.3)

SHAPES = ("linear", "1-sqrt")


@dataclass(frozen=True)
class WSDBranches:
    """Rates α_1..α_T and exact expected losses E[L(θ_t)], t = 0..T, of four runs: a long
    WSD run to T, a WSD run to T_b branched off its stable phase, and cosine runs to T and
    to T_b (which must start again from step 1)."""

    steps: np.ndarray
    rates: dict
    losses: dict
    total: int
    branch: int
    decay: int


@lru_cache(maxsize=128)
def wsd_branches(
    cooldown: float,
    branch: int,
    shape: int,
    *,
    total: int,
    lr: float,
    warmup: int,
    noise: float,
    problem: Quadratic,
) -> WSDBranches:
    """The four runs for cooldown fraction ``cooldown`` = T_d / T_b of the branched run
    (the long run uses the same fraction of T), cooldown ``shape`` (0 linear, 1 1-sqrt)
    and branch length ``branch`` = T_b."""
    steps = np.arange(1, total + 1)
    T_d = max(1, round(cooldown * branch))
    T_d_long = max(1, round(cooldown * total))
    kw = dict(lr=lr, warmup=warmup, shape=SHAPES[shape])
    rates = {
        "WSD to T": warmup_stable_decay(steps, total=total, decay=T_d_long, **kw),
        "WSD to T_b": warmup_stable_decay(steps[:branch], total=branch, decay=T_d, **kw),
        "cosine to T": warmup_cosine(steps, lr=lr, total=total, warmup=warmup),
        "cosine to T_b": warmup_cosine(steps[:branch], lr=lr, total=branch, warmup=warmup),
    }
    losses = {k: expected_losses(α, problem, noise) for k, α in rates.items()}
    return WSDBranches(steps, rates, losses, total, branch, T_d)


STYLE = {
    "WSD to T": dict(color="C0", lw=1.6),
    "WSD to T_b": dict(color="C0", lw=1.6, ls="--"),
    "cosine to T": dict(color="C3", lw=1.2, alpha=0.8),
    "cosine to T_b": dict(color="C3", lw=1.2, ls="--", alpha=0.8),
}


def _titles(run):
    wsd, cos = run.losses["WSD to T_b"][-1], run.losses["cosine to T_b"][-1]
    return (
        f"T_b = {run.branch}: {run.branch - run.decay} steps shared, {run.decay} of cooldown",
        f"at T_b: E[L] = {wsd:.3f} (WSD), {cos:.3f} (cosine)",
    )


def _draw(fig, run, *, lr, **params):
    rate_ax, loss_ax = fig.subplots(1, 2)
    rate_lines, loss_lines, ends = {}, {}, {}
    for name, style in STYLE.items():
        (rate_lines[name],) = rate_ax.plot(
            run.steps[: len(run.rates[name])], run.rates[name], **style
        )
        (loss_lines[name],) = loss_ax.plot(run.losses[name], label=name, **style)
        (ends[name],) = loss_ax.plot(
            [len(run.losses[name]) - 1], [run.losses[name][-1]], "o", color=style["color"], ms=4
        )
    rate_ax.set_xlim(0, run.total)
    rate_ax.set_ylim(0, 1.05 * lr)
    rate_ax.set_xlabel("update t")
    rate_ax.set_ylabel("learning rate α_t")
    titles = [
        moving_title(ax, text, fontsize=9)
        for ax, text in zip((rate_ax, loss_ax), _titles(run), strict=True)
    ]
    loss_ax.set_xlim(0, run.total)
    log_axis(loss_ax)
    loss_ax.set_ylim(0.02, 5.0)
    loss_ax.set_xlabel("update t")
    loss_ax.set_ylabel("expected loss E[L(θ_t)]")
    legend = loss_ax.legend(fontsize=7, loc="upper right")
    # Axes, ticks and labels never change: freeze them once, the legend on top.
    dynamic = [*rate_lines.values(), *loss_lines.values(), *ends.values(), *titles, legend]
    background = FrozenBackground(fig, [rate_ax, loss_ax])
    frozen = []

    def update(run, **params):
        for name in STYLE:
            n = len(run.rates[name])
            rate_lines[name].set_data(run.steps[:n], run.rates[name])
            loss_lines[name].set_data(np.arange(n + 1), run.losses[name])
            ends[name].set_data([n], [run.losses[name][-1]])
        for title, text in zip(titles, _titles(run), strict=True):
            title.set_text(text)
        if not frozen:
            background.capture(dynamic)
            frozen.append(freeze_on_top(fig, [legend]))

    return update


@demo_factory
def wsd_demo(problem: Quadratic = VALLEY, noise: float = 1.0) -> Demo:
    """WSD against cosine on a noisy quadratic: a long WSD run to T, a shorter one that
    branches its cooldown off the long run's stable phase at T_b − T_d, and cosine runs to T
    and to T_b. Exact expected losses
    (:func:`llmtrain.demos.optimization.schedules.expected_losses`)."""
    return Demo(
        wsd_branches,
        _draw,
        [
            Slider("cooldown", 0.05, 0.6, 0.2, step=0.05, label="cooldown T_d / T_b"),
            Slider("branch", 100, 900, 400, integer=True, step=50, label="branch length T_b"),
            Slider("shape", 0, 1, 0, integer=True, label="shape (0 linear, 1 1-sqrt)"),
        ],
        fixed={"total": 1000, "lr": 0.3, "warmup": 20, "noise": noise, "problem": problem},
        alt=(
            "Left: the learning rate against the update of four schedules, warmup-stable-decay "
            "(WSD, blue) and cosine (red), each to the full length T (solid) and to a shorter "
            "branch T_b (dashed); right: their exact expected losses on a log scale, a dot at "
            "the end of each. The sliders set the cooldown's share T_d / T_b, the branch length "
            "T_b and the cooldown's shape (linear or 1-sqrt)."
        ),
    )
