"""Demos of the training-overview chapter."""

from __future__ import annotations

from ..optim import Quadratic, minimize, sgd_step
from .demo import Demo, Slider, demo_factory
from .plots import FrozenBackground, draw_landscape, draw_path, log_axis, set_path

__all__ = ["momentum_demo"]

#: A valley twenty times steeper across than along: plain gradient descent zig-zags here.
VALLEY = Quadratic(curvatures=(1.0, 20.0), angle=0.4)


def _run(lr: float, momentum: float, steps: int, problem):
    return minimize(sgd_step, problem, steps=steps, lr=lr, momentum=momentum)


def _draw(fig, trajectory, *, lr, momentum, steps, problem):
    path_ax, loss_ax = fig.subplots(1, 2, width_ratios=[1.3, 1])
    draw_landscape(path_ax, problem)
    path = draw_path(path_ax, trajectory)
    path_ax.set_title("path of θ on the loss surface", fontsize=10)
    (curve,) = loss_ax.plot(trajectory.losses, color="C0")
    log_axis(loss_ax)
    # Fixed limits, wide enough for the fastest convergence and for a run that blows up, so
    # that everything but the path and the curve can be drawn once and reused.
    loss_ax.set_xlim(0, steps)
    loss_ax.set_ylim(1e-12, 1e8)
    loss_ax.set_xlabel("step t")
    loss_ax.set_ylabel("loss L(θ_t)")
    loss_ax.set_title("loss", fontsize=10)
    loss_ax.grid(alpha=0.3)
    background = FrozenBackground(fig, [path_ax, loss_ax])

    def update(trajectory, **params):
        if background.image is None:
            background.capture([path, curve])
        set_path(path, trajectory)
        curve.set_data(range(len(trajectory.losses)), trajectory.losses)

    return update


@demo_factory
def momentum_demo(problem=VALLEY, steps: int = 80) -> Demo:
    """Gradient descent with heavy-ball momentum (:func:`llmtrain.optim.sgd_step`) on a narrow
    quadratic valley, with sliders for the learning rate α and the momentum μ."""
    return Demo(
        _run,
        _draw,
        [
            Slider("lr", 1e-3, 0.3, 0.04, scale="log", label="learning rate α"),
            Slider("momentum", 0.0, 0.99, 0.6, step=0.01, label="momentum μ"),
        ],
        fixed={"steps": steps, "problem": problem},
        alt=(
            "Left: contour lines of a narrow quadratic valley and the path of gradient descent "
            "with heavy-ball momentum from its start (circle) towards the minimum (star); right: "
            "the loss against the step on a log scale. The sliders set the learning rate α and "
            "the momentum μ."
        ),
    )
