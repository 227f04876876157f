"""Demos of the momentum chapter: paths in a narrow valley, the rate map, and Rosenbrock."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import FuncNorm

from ...optim import (
    Quadratic,
    Rosenbrock,
    Trajectory,
    gd_rate,
    minimize,
    momentum_rate,
    optimal_gd,
    optimal_heavy_ball,
    sgd_step,
)
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, draw_landscape, draw_path, log_axis, moving_title, set_path

__all__ = ["rate_map_demo", "rosenbrock_demo", "valley_demo"]

GD_COLOR, MOMENTUM_COLOR = "C1", "C0"


@dataclass(frozen=True)
class Runs:
    """A momentum run and the plain gradient-descent run it is compared with.

    ``diverged_at`` is the momentum run's, so that the demo helper labels the figure when
    that run blows up; the comparison run reports its own divergence in the legend.
    """

    momentum: Trajectory
    gd: Trajectory
    problem: object
    rates: tuple[float, float] | None = None  # predicted (GD, momentum) rates, if known

    @property
    def diverged_at(self) -> int | None:
        return self.momentum.diverged_at

    @property
    def diverged(self) -> bool:
        return self.momentum.diverged


def valley(κ: float, angle: float = 0.4) -> Quadratic:
    """A rotated quadratic valley with curvatures (1/κ, 1), so condition number κ."""
    return Quadratic(curvatures=(1.0 / κ, 1.0), angle=angle)


def _gd_label(trajectory: Trajectory) -> str:
    if trajectory.diverged:
        return f"gradient descent (diverged at step {trajectory.diverged_at})"
    return "gradient descent (μ = 0)"


def _set_curve(line, trajectory: Trajectory) -> None:
    line.set_data(np.arange(len(trajectory.losses)), trajectory.losses)


# -- (1) paths in an ill-conditioned valley -----------------------------------------------------


@lru_cache(maxsize=64)
def _valley_gd(lr, kappa, steps) -> Trajectory:
    """The comparison run, which moving μ does not change: computed once per (α, κ)."""
    return minimize(sgd_step, valley(kappa), steps=steps, lr=lr)


def _valley_runs(lr, momentum, kappa, steps):
    problem = valley(kappa)
    return Runs(
        momentum=minimize(sgd_step, problem, steps=steps, lr=lr, momentum=momentum),
        gd=_valley_gd(lr, kappa, steps),
        problem=problem,
        rates=(gd_rate(lr, problem.curvatures), momentum_rate(lr, momentum, problem.curvatures)),
    )


def _rate_text(rates) -> str:
    rate_gd, rate_m = rates
    return f"predicted rate: GD {rate_gd:.3f}, momentum {rate_m:.3f}"


def _valley_draw(fig, runs: Runs, *, lr, momentum, kappa, steps):
    path_ax, loss_ax = fig.subplots(1, 2, width_ratios=[1.3, 1])
    state = {"kappa": kappa, "contours": None, "star": None}

    def landscape(problem):
        if state["contours"] is not None:
            state["contours"].remove()
            state["star"].remove()  # the star at the minimum, drawn again below
        n_before = len(path_ax.collections)
        draw_landscape(path_ax, problem, resolution=60, levels=12)
        state["contours"] = path_ax.collections[n_before]
        state["star"] = path_ax.lines[-1]

    landscape(runs.problem)
    gd_path = draw_path(path_ax, runs.gd, color=GD_COLOR, label=_gd_label(runs.gd))
    gd_path.set_zorder(3)  # on top: where the paths overlap, the slower one ends first
    m_path = draw_path(path_ax, runs.momentum, color=MOMENTUM_COLOR, label="momentum")
    legend = path_ax.legend(loc="lower right", fontsize=8)
    path_ax.set_title("paths of θ from the circle to the star", fontsize=10)
    (gd_curve,) = loss_ax.plot([], [], color=GD_COLOR, label="gradient descent")
    (m_curve,) = loss_ax.plot([], [], color=MOMENTUM_COLOR, label="momentum")
    log_axis(loss_ax)
    loss_ax.set_xlim(0, steps)
    loss_ax.set_ylim(1e-16, 1e3)
    loss_ax.set_yticks([1e-15, 1e-10, 1e-5, 1.0])
    loss_ax.set_xlabel("step t")
    loss_ax.set_ylabel("loss L(θ_t)")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(loc="lower left", fontsize=8)
    title = moving_title(loss_ax, _rate_text(runs.rates), fontsize=9)

    background = FrozenBackground(fig, [path_ax, loss_ax])
    dynamic = [gd_path, m_path, legend, gd_curve, m_curve, title]

    def apply(runs: Runs):
        set_path(gd_path, runs.gd)
        set_path(m_path, runs.momentum)
        legend.get_texts()[0].set_text(_gd_label(runs.gd))
        _set_curve(gd_curve, runs.gd)
        _set_curve(m_curve, runs.momentum)
        title.set_text(_rate_text(runs.rates))

    def update(runs: Runs, *, lr, momentum, kappa, steps):
        if kappa != state["kappa"]:
            state["kappa"] = kappa
            landscape(runs.problem)
            background.capture(dynamic)
        elif background.image is None:
            background.capture(dynamic)
        apply(runs)

    apply(runs)
    return update


@demo_factory
def valley_demo(steps: int = 100) -> Demo:
    """Heavy-ball momentum (:func:`llmtrain.optim.sgd_step`) against plain gradient descent
    in a rotated quadratic valley with curvatures 1/κ and 1: sliders for the learning rate α,
    the momentum μ and the condition number κ."""
    return Demo(
        _valley_runs,
        _valley_draw,
        [
            Slider("lr", 0.01, 4.0, 1.0, scale="log", label="learning rate α"),
            Slider("momentum", 0.0, 0.99, 0.6, step=0.01, label="momentum μ"),
            Slider("kappa", 2.0, 200.0, 20.0, scale="log", label="condition number κ"),
        ],
        fixed={"steps": steps},
        alt=(
            "Left: contour lines of a rotated quadratic valley and the paths of gradient descent "
            "(orange) and heavy-ball momentum (blue) from a circle towards the minimum (star); "
            "right: their losses against the step on a log scale, titled with the predicted "
            "convergence rates. The sliders set the learning rate α, the momentum μ and the "
            "condition number κ."
        ),
    )


# -- (2) the rate map ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateMap:
    """The heavy-ball rate over a grid of (α, μ) for curvatures (1/κ, 1), and the optima."""

    lr: np.ndarray
    momentum: np.ndarray
    rate: np.ndarray
    kappa: float
    best: tuple[float, float, float]  # (α*, μ*, rate*) of heavy ball
    best_gd: tuple[float, float]  # (α*, rate*) of gradient descent


LR_MAX = 4.2


def rate_map(kappa: float, resolution: int = 161) -> RateMap:
    """Evaluate :func:`llmtrain.optim.momentum_rate` on a grid of α in (0, 4.2], μ in [0, 1)."""
    α = np.linspace(LR_MAX / resolution, LR_MAX, resolution)
    μ = np.linspace(0.0, 0.995, resolution)
    A, M = np.meshgrid(α, μ)
    h = (1.0 / kappa, 1.0)
    return RateMap(α, μ, momentum_rate(A, M, h), kappa, optimal_heavy_ball(*h), optimal_gd(*h))


def _rate_norm() -> FuncNorm:
    # Equal colour steps for rate = 0.9, 0.99, 0.999: the differences that matter are near 1.
    def forward(rate):
        return -np.log10(1.0 - np.clip(rate, 0.0, 0.9999))

    def inverse(y):
        return 1.0 - 10.0 ** (-y)

    return FuncNorm((forward, inverse), vmin=0.0, vmax=0.999)


def _rate_map_compute(kappa, resolution):
    return rate_map(kappa, resolution)


def _rate_map_draw(fig, result: RateMap, *, kappa, resolution):
    map_ax, kappa_ax = fig.subplots(1, 2, width_ratios=[1.25, 1])
    cmap = colormaps["viridis_r"].with_extremes(bad="#d9d9d9")
    extent = (0.0, LR_MAX, 0.0, 0.995)

    def masked(r):
        return np.ma.masked_where(r.rate >= 1.0, r.rate)

    image = map_ax.imshow(
        masked(result),
        origin="lower",
        extent=extent,
        aspect="auto",
        cmap=cmap,
        norm=_rate_norm(),
        interpolation="nearest",
    )
    bar = fig.colorbar(image, ax=map_ax, ticks=[0.0, 0.5, 0.9, 0.99, 0.999])
    bar.ax.set_yticklabels(["0", "0.5", "0.9", "0.99", "0.999"])
    bar.set_label("rate (error shrinks like rate^t)")
    μ_line = np.linspace(0.0, 0.995, 2)
    (edge,) = map_ax.plot(2 * (1 + μ_line), μ_line, color="#b00020", linewidth=1.2)
    label = map_ax.text(3.0, 0.12, "diverges\n(gray)", color="#b00020", fontsize=9)
    (star,) = map_ax.plot([], [], "*", color="white", markeredgecolor="black", markersize=14)
    (gd_dot,) = map_ax.plot([], [], "o", color="white", markeredgecolor="black", markersize=7)
    map_ax.set_xlim(0.0, LR_MAX)
    map_ax.set_ylim(0.0, 0.995)
    map_ax.set_xlabel("learning rate α (curvatures 1/κ … 1)")
    map_ax.set_ylabel("momentum μ")
    title = moving_title(map_ax, "\n", fontsize=9)

    κs = np.geomspace(1.0, 1e4, 200)
    rate_gd = [optimal_gd(1.0 / k, 1.0)[1] for k in κs]
    rate_hb = [optimal_heavy_ball(1.0 / k, 1.0)[2] for k in κs]
    kappa_ax.semilogx(κs, rate_gd, color=GD_COLOR, label="GD, best α: (κ−1)/(κ+1)")
    kappa_ax.semilogx(
        κs, rate_hb, color=MOMENTUM_COLOR, label="heavy ball, best α, μ: (√κ−1)/(√κ+1)"
    )
    marker = kappa_ax.axvline(kappa, color="black", linewidth=0.8, linestyle="--")
    kappa_ax.set_xlabel("condition number κ")
    kappa_ax.set_ylabel("best rate q")
    kappa_ax.set_ylim(0.0, 1.02)
    kappa_ax.grid(alpha=0.3)
    kappa_ax.legend(loc="lower right", fontsize=7.5)

    background = FrozenBackground(fig, [map_ax, kappa_ax], extra=[bar.ax])
    dynamic = [image, edge, label, star, gd_dot, marker, title]  # drawn over the image

    def update(result: RateMap, *, kappa, resolution):
        if background.image is None and first_done:
            background.capture(dynamic)
        image.set_data(masked(result))
        α, μ, rate = result.best
        star.set_data([α], [μ])
        gd_dot.set_data([result.best_gd[0]], [0.0])
        marker.set_xdata([kappa, kappa])
        title.set_text(
            f"κ = {kappa:.3g}: best heavy ball (star) α = {α:.2f}, μ = {μ:.2f}, "
            f"rate = {rate:.3f}\n"
            f"best gradient descent (dot) α = {result.best_gd[0]:.2f}, "
            f"rate = {result.best_gd[1]:.3f}"
        )

    first_done = False
    update(result, kappa=kappa, resolution=resolution)
    first_done = True
    return update


@demo_factory
def rate_map_demo(resolution: int = 161) -> Demo:
    """The convergence rate of heavy-ball momentum (:func:`llmtrain.optim.momentum_rate`) over
    the (α, μ) plane for a quadratic with curvatures 1/κ and 1, with a slider for κ."""
    return Demo(
        _rate_map_compute,
        _rate_map_draw,
        [Slider("kappa", 1.5, 1000.0, 100.0, scale="log", label="condition number κ")],
        fixed={"resolution": resolution},
        figsize=(9.5, 3.8),
        alt=(
            "Left: a colour map of the convergence rate of heavy-ball momentum over the learning "
            "rate α (across) and the momentum μ (up), grey where it diverges, right of a red "
            "edge, with a star at the best (α, μ) and a dot at the best α of gradient descent; "
            "right: the best rate of gradient descent (orange) and of heavy ball (blue) against "
            "the condition number on a log axis, a dashed line at the current κ. The slider sets "
            "κ."
        ),
    )


# -- (3) Rosenbrock ------------------------------------------------------------------------------

ROSENBROCK = Rosenbrock()


@lru_cache(maxsize=64)
def _rosenbrock_gd(lr, steps) -> Trajectory:
    """The comparison run, which moving μ or Nesterov does not change: computed once per α."""
    return minimize(sgd_step, ROSENBROCK, steps=steps, lr=lr)


def _rosenbrock_runs(lr, momentum, nesterov, steps):
    return Runs(
        momentum=minimize(
            sgd_step,
            ROSENBROCK,
            steps=steps,
            lr=lr,
            momentum=momentum,
            nesterov=bool(nesterov) and momentum > 0,
        ),
        gd=_rosenbrock_gd(lr, steps),
        problem=ROSENBROCK,
    )


def _method(momentum, nesterov) -> str:
    if momentum == 0:
        return "μ = 0 (no momentum)"
    return "Nesterov" if nesterov else "heavy ball"


def _rosenbrock_draw(fig, runs: Runs, *, lr, momentum, nesterov, steps):
    path_ax, loss_ax = fig.subplots(1, 2, width_ratios=[1.3, 1])
    draw_landscape(path_ax, runs.problem, resolution=90, levels=16)
    gd_path = draw_path(path_ax, runs.gd, color=GD_COLOR, label=_gd_label(runs.gd))
    gd_path.set_zorder(3)  # on top: where the paths overlap, the slower one ends first
    m_path = draw_path(path_ax, runs.momentum, color=MOMENTUM_COLOR, label="momentum")
    for line in (gd_path, m_path):
        line.set_marker("")  # a thousand steps: the dots would only thicken the line
    legend = path_ax.legend(loc="lower right", fontsize=8)
    path_ax.set_title("Rosenbrock valley: paths from the circle", fontsize=10)
    (gd_curve,) = loss_ax.plot([], [], color=GD_COLOR, label="gradient descent")
    (m_curve,) = loss_ax.plot([], [], color=MOMENTUM_COLOR, label="momentum")
    log_axis(loss_ax)
    loss_ax.set_xlim(0, steps)
    loss_ax.set_ylim(1e-12, 1e4)
    loss_ax.set_yticks([1e-12, 1e-8, 1e-4, 1.0, 1e4])
    loss_ax.set_xlabel("step t")
    loss_ax.set_ylabel("loss L(θ_t)")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(loc="lower left", fontsize=8)
    title = moving_title(loss_ax, fontsize=9)

    background = FrozenBackground(fig, [path_ax, loss_ax])
    dynamic = [gd_path, m_path, legend, gd_curve, m_curve, title]

    def update(runs: Runs, *, lr, momentum, nesterov, steps):
        if background.image is None and first_done:
            background.capture(dynamic)
        set_path(gd_path, runs.gd)
        set_path(m_path, runs.momentum)
        texts = legend.get_texts()
        texts[0].set_text(_gd_label(runs.gd))
        texts[1].set_text(_method(momentum, nesterov))
        _set_curve(gd_curve, runs.gd)
        _set_curve(m_curve, runs.momentum)
        title.set_text(
            f"{_method(momentum, nesterov)}: loss {runs.momentum.losses[-1]:.1e} "
            f"after {len(runs.momentum.losses) - 1} steps"
        )

    first_done = False
    update(runs, lr=lr, momentum=momentum, nesterov=nesterov, steps=steps)
    first_done = True
    return update


@demo_factory
def rosenbrock_demo(steps: int = 1000) -> Demo:
    """Gradient descent, heavy ball and Nesterov momentum (:func:`llmtrain.optim.sgd_step`)
    on the Rosenbrock valley, with sliders for α, μ and Nesterov on (1) or off (0)."""
    return Demo(
        _rosenbrock_runs,
        _rosenbrock_draw,
        [
            Slider("lr", 1e-4, 3e-3, 1e-3, scale="log", label="learning rate α"),
            Slider("momentum", 0.0, 0.99, 0.9, step=0.01, label="momentum μ"),
            Slider("nesterov", 0, 1, 0, integer=True, label="Nesterov (0 off, 1 on)"),
        ],
        fixed={"steps": steps},
        alt=(
            "Left: contour lines of the Rosenbrock valley and the paths from a circle of "
            "gradient descent (orange) and of momentum, heavy ball or Nesterov (blue); right: "
            "their losses against the step over 1000 steps on a log scale. The sliders set the "
            "learning rate α, the momentum μ and whether Nesterov's variant is on."
        ),
    )
