"""Demos of the adaptive-methods chapter: optimizer paths on a valley, Adam's L2 against
AdamW's decoupled decay, and AdaGrad's sum against RMSProp's moving average."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from matplotlib.ticker import LogFormatter, NullLocator

from ...optim import (
    Quadratic,
    adagrad_step,
    adam_step,
    adamw_step,
    minimize,
    rmsprop_step,
    sgd_step,
)
from ..demo import Demo, Slider, demo_factory
from ..plots import (
    FrozenBackground,
    draw_landscape,
    draw_path,
    freeze_on_top,
    log_axis,
    set_path,
)

__all__ = [
    "accumulator_demo",
    "adaptive_paths_demo",
    "compare_adaptive",
    "weight_decay_comparison",
    "weight_decay_demo",
]

#: An axis-aligned valley fifty times steeper across than along: one learning rate cannot suit
#: both coordinates, which is what per-coordinate step sizes fix.
VALLEY = Quadratic(curvatures=(0.5, 25.0), angle=0.0, start=(-2.5, 1.5))

#: name -> (update rule, colour); the hyperparameters each takes are filled in by compare_adaptive.
METHODS = {
    "SGD": (sgd_step, "C0"),
    "AdaGrad": (adagrad_step, "C1"),
    "RMSProp": (rmsprop_step, "C2"),
    "Adam": (adam_step, "C3"),
}


def compare_adaptive(lr, beta1, beta2, *, steps=100, problem=VALLEY):
    """Run SGD, AdaGrad, RMSProp and Adam from the same start with the same learning rate α;
    RMSProp's decay ρ is Adam's β₂. Returns ``{name: Trajectory}``."""
    return {
        "SGD": _run("SGD", problem, steps, lr),
        "AdaGrad": _run("AdaGrad", problem, steps, lr),
        "RMSProp": _run("RMSProp", problem, steps, lr, alpha=beta2),
        "Adam": _run("Adam", problem, steps, lr, betas=(beta1, beta2)),
    }


@lru_cache(maxsize=256)
def _run(name, problem, steps, lr, **extra):
    """One run of ``compare_adaptive``, cached on the values it depends on: a slider move
    recomputes only the runs that move changes (β₁ reaches Adam alone)."""
    return minimize(METHODS[name][0], problem, steps=steps, lr=lr, **extra)


def _label(name, trajectory):
    if trajectory.diverged:
        return f"{name} (diverged at step {trajectory.diverged_at})"
    return f"{name}: L = {trajectory.losses[-1]:.1e}"


def _draw_paths(fig, runs, *, lr, beta1, beta2, steps, problem):
    path_ax, loss_ax = fig.subplots(1, 2, width_ratios=[1.3, 1])
    draw_landscape(path_ax, problem)
    paths, curves = {}, {}
    for name, trajectory in runs.items():
        colour = METHODS[name][1]
        paths[name] = draw_path(path_ax, trajectory, color=colour)
        (curves[name],) = loss_ax.plot(
            trajectory.losses, color=colour, label=_label(name, trajectory)
        )
    path_ax.set_title("paths from the same start, same α", fontsize=10, y=1.0)
    # The axes limits are fixed (draw_landscape sets the path axes'), so everything but the
    # runs can be frozen into one background image after the first draw.
    log_axis(loss_ax)
    loss_ax.set_xlim(0, steps)
    loss_ax.set_ylim(1e-8, 1e3)
    loss_ax.set_xlabel("step t")
    loss_ax.set_ylabel("loss L(θ_t)")
    loss_ax.grid(alpha=0.3)
    legend = loss_ax.legend(fontsize=8, loc="lower left")
    background = FrozenBackground(fig, [path_ax, loss_ax])
    dynamic = [*paths.values(), *curves.values(), legend]

    def update(runs, **params):
        if background.image is None:
            background.capture(dynamic)
        for text, (name, trajectory) in zip(legend.get_texts(), runs.items(), strict=True):
            set_path(paths[name], trajectory)
            curves[name].set_data(range(len(trajectory.losses)), trajectory.losses)
            text.set_text(_label(name, trajectory))

    return update


@demo_factory
def adaptive_paths_demo(problem=VALLEY, steps: int = 80) -> Demo:
    """SGD (:func:`llmtrain.optim.sgd_step`), AdaGrad, RMSProp and Adam on an axis-aligned
    valley, with sliders for the shared learning rate α and Adam's β₁ and β₂ (which is also
    RMSProp's ρ)."""
    return Demo(
        compare_adaptive,
        _draw_paths,
        [
            Slider("lr", 1e-3, 0.5, 0.05, scale="log", label="learning rate α"),
            Slider("beta1", 0.0, 0.99, 0.9, step=0.01, label="β₁ (Adam)"),
            Slider("beta2", 0.5, 0.999, 0.99, step=0.001, label="β₂ (Adam) = ρ (RMSProp)"),
        ],
        fixed={"steps": steps, "problem": problem},
        alt=(
            "Left: contour lines of an axis-aligned quadratic valley and the paths of SGD "
            "(blue), AdaGrad (orange), RMSProp (green) and Adam (red) from the same start with "
            "the same learning rate; right: their losses against the step on a log scale, each "
            "final loss in the legend. The sliders set the shared learning rate α and Adam's β₁ "
            "and β₂ (also RMSProp's ρ)."
        ),
    )


# -- Adam + L2 against AdamW --------------------------------------------------------------

#: Gradient scales h_i of the coordinates of the weight-decay demo, from 0.01 to 100.
SCALES = np.logspace(-2, 2, 9)


def weight_decay_comparison(
    weight_decay, lr, *, steps=400, scales=SCALES, noise=0.5, seed=0, average_over=200
):
    """Adam with L2 regularisation against AdamW on L(θ) = Σ_i h_i (θ_i - 1)² / 2, whose
    coordinates differ only in the scale h_i of their gradients; each gradient carries noise
    of standard deviation ``noise`` · h_i.

    Both start at the unregularised minimum θ = 1 and see the same gradient noise. Returns a
    dict with the scales, the average of each run's last ``average_over`` iterates, and each
    run's effective decay per step: αλ / (√v̂_i + ε) for Adam with L2, where the decay term is
    divided by the same normaliser as the gradient, and αλ for AdamW.
    """
    h = np.asarray(scales, dtype=float)
    χ = np.random.default_rng(seed).standard_normal((steps, h.size))
    runs = {}
    for name, rule in (("Adam + L2", adam_step), ("AdamW", adamw_step)):
        θ, state, tail = np.ones_like(h), {}, []
        for t in range(steps):
            g = h * (θ - 1.0) + noise * h * χ[t]
            θ, state = rule(θ, g, state, lr=lr, weight_decay=weight_decay)
            if t >= steps - average_over:
                tail.append(θ)
        runs[name] = (np.mean(tail, axis=0), state)
    adam_state = runs["Adam + L2"][1]
    v̂ = adam_state["exp_avg_sq"] / (1 - 0.999 ** adam_state["step"])
    return {
        "scales": h,
        "theta": {name: run[0] for name, run in runs.items()},
        "decay": {
            "Adam + L2": lr * weight_decay / (np.sqrt(v̂) + 1e-8),
            "AdamW": np.full_like(h, lr * weight_decay),
        },
        # Where the expected gradient of L + λ‖θ‖²/2 vanishes: what L2 asks for.
        "l2_solution": h / (h + weight_decay),
    }


def _log_x(ax) -> None:
    """A log-scale x axis with plain tick labels (faster to draw than mathtext ones)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(LogFormatter())
    ax.xaxis.set_minor_locator(NullLocator())


def _draw_decay(fig, result, *, weight_decay, lr, **fixed):
    theta_ax, decay_ax = fig.subplots(1, 2)
    h = result["scales"]
    (l2_line,) = theta_ax.plot(h, result["l2_solution"], "k--", lw=1, label="L2 optimum h/(h+λ)")
    points = {}
    for name, colour, marker in (("Adam + L2", "C3", "o"), ("AdamW", "C0", "h")):
        (points[name],) = theta_ax.plot(
            h, result["theta"][name], marker=marker, color=colour, ls="-", label=name
        )
    _log_x(theta_ax)
    theta_ax.set_ylim(0, 1.1)
    theta_ax.axhline(1.0, color="grey", lw=0.6)
    theta_ax.set_xlabel("gradient scale h_i of the coordinate")
    theta_ax.set_ylabel("θ_i where the run settles")
    theta_ax.set_title("same λ, different solutions", fontsize=10, y=1.0)
    legends = [theta_ax.legend(fontsize=8, loc="lower right")]
    theta_ax.grid(alpha=0.3)
    decays = {}
    for name, colour, marker in (("Adam + L2", "C3", "o"), ("AdamW", "C0", "h")):
        (decays[name],) = decay_ax.plot(
            h, result["decay"][name], marker=marker, color=colour, label=name
        )
    _log_x(decay_ax)
    log_axis(decay_ax)
    decay_ax.set_ylim(1e-6, 1e1)
    decay_ax.set_xlabel("gradient scale h_i of the coordinate")
    decay_ax.set_ylabel("decay per step")
    decay_ax.set_title("effective weight decay per step", fontsize=10, y=1.0)
    legends.append(decay_ax.legend(fontsize=8, loc="upper right"))  # where "best" put it
    decay_ax.grid(alpha=0.3)
    for ax in (theta_ax, decay_ax):
        ax.set_xlim(ax.get_xlim())  # fixed from here on, so the background stays valid
    background = FrozenBackground(fig, [theta_ax, decay_ax])

    def update(result, **params):
        if background.image is None:
            background.capture([l2_line, *points.values(), *decays.values(), *legends])
            freeze_on_top(fig, legends)  # the legends stay on top of the moving lines
        l2_line.set_ydata(result["l2_solution"])
        for name in points:
            points[name].set_ydata(result["theta"][name])
            decays[name].set_ydata(result["decay"][name])

    return update


@demo_factory
def weight_decay_demo(steps: int = 400) -> Demo:
    """Adam with L2 regularisation (:func:`llmtrain.optim.adam_step`) against AdamW
    (:func:`llmtrain.optim.adamw_step`), with sliders for the weight decay λ and the learning
    rate α."""
    return Demo(
        weight_decay_comparison,
        _draw_decay,
        [
            Slider("weight_decay", 1e-2, 3.0, 0.5, scale="log", label="weight decay λ"),
            Slider("lr", 1e-3, 0.05, 0.01, scale="log", label="learning rate α"),
        ],
        fixed={"steps": steps},
        alt=(
            "Two panels against the gradient scale h_i of nine coordinates, on a log axis: left, "
            "the value where Adam with L2 regularisation (red circles) and AdamW (blue hexagons) "
            "settle, with the L2 optimum h/(h+λ) dashed; right, the effective weight decay per "
            "step of each, on a log scale. The sliders set the weight decay λ and the learning "
            "rate α."
        ),
    )


# -- AdaGrad's sum against RMSProp's average ------------------------------------------------


def accumulators(rho, *, steps=200, switch=100, before=1.0, after=0.1):
    """The accumulators of AdaGrad (s_t) and RMSProp (v_t, decay ρ) for a one-coordinate
    gradient of size ``before`` for the first ``switch`` steps and ``after`` from then on,
    with the step size each takes, α |g_t| / (√acc + ε) per unit α."""
    θ, ada, rms = np.zeros(1), {}, {}
    out = {"t": np.arange(1, steps + 1), "sum": [], "average": [], "ada_step": [], "rms_step": []}
    for t in range(1, steps + 1):
        g = np.array([before if t <= switch else after])
        θ_a, ada = adagrad_step(θ, g, ada, lr=1.0)
        θ_r, rms = rmsprop_step(θ, g, rms, lr=1.0, alpha=rho)
        out["sum"].append(ada["sum"][0])
        out["average"].append(rms["square_avg"][0])
        out["ada_step"].append(abs(θ_a[0] - θ[0]))
        out["rms_step"].append(abs(θ_r[0] - θ[0]))
    return {k: np.asarray(v) for k, v in out.items()}


def _draw_accumulators(fig, result, *, rho, **fixed):
    acc_ax, step_ax = fig.subplots(1, 2)
    t = result["t"]
    acc_ax.plot(t, result["sum"], color="C1", label="AdaGrad: sum s_t")
    (avg_line,) = acc_ax.plot(t, result["average"], color="C2", label="RMSProp: average v_t")
    log_axis(acc_ax)
    acc_ax.set_ylim(1e-3, 1e3)
    acc_ax.set_xlabel("step t")
    acc_ax.set_title("accumulated squared gradient", fontsize=10, y=1.0)
    # "upper right" is where loc="best" puts the legends for the default ρ; fixed, they need
    # no search on every draw.
    legends = [acc_ax.legend(fontsize=8, loc="upper right")]
    acc_ax.grid(alpha=0.3)
    step_ax.plot(t, result["ada_step"], color="C1", label="AdaGrad")
    (rms_line,) = step_ax.plot(t, result["rms_step"], color="C2", label="RMSProp")
    log_axis(step_ax)
    step_ax.set_ylim(1e-3, 1e2)
    step_ax.set_xlabel("step t")
    step_ax.set_title("step size |θ_t − θ_{t−1}| / α", fontsize=10, y=1.0)
    step_ax.axvline(100, color="grey", lw=0.6, ls=":")
    acc_ax.axvline(100, color="grey", lw=0.6, ls=":")
    legends.append(step_ax.legend(fontsize=8, loc="upper right"))
    step_ax.grid(alpha=0.3)
    for ax in (acc_ax, step_ax):
        ax.set_xlim(ax.get_xlim())  # fixed from here on, so the background stays valid
    # AdaGrad's curves do not depend on ρ: they stay in the frozen background.
    background = FrozenBackground(fig, [acc_ax, step_ax])

    def update(result, **params):
        if background.image is None:
            background.capture([avg_line, rms_line, *legends])
            freeze_on_top(fig, legends)  # the legends stay on top of the moving lines
        avg_line.set_ydata(result["average"])
        rms_line.set_ydata(result["rms_step"])

    return update


@demo_factory
def accumulator_demo() -> Demo:
    """AdaGrad's growing sum (:func:`llmtrain.optim.adagrad_step`) against RMSProp's moving
    average (:func:`llmtrain.optim.rmsprop_step`) when the gradient shrinks tenfold halfway,
    with a slider for RMSProp's decay ρ."""
    return Demo(
        accumulators,
        _draw_accumulators,
        [Slider("rho", 0.5, 0.999, 0.9, step=0.001, label="decay ρ (RMSProp)")],
        alt=(
            "Left: AdaGrad's growing sum of squared gradients (orange) and RMSProp's moving "
            "average (green) against the step, on a log scale, for a gradient that shrinks "
            "tenfold at step 100 (dotted line); right: the step size each takes per unit "
            "learning rate. The slider sets RMSProp's decay ρ."
        ),
    )
