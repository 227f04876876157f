"""Demos of the chapter on training on many processes: pipeline schedules and their bubble."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from ...pretraining import pipeline_bubble, pipeline_schedule
from ..demo import Demo, Slider, demo_factory

__all__ = ["pipeline_demo"]

MAX_STAGES, MAX_MICRO = 8, 16
_IDLE = (0.85, 0.85, 0.85)


def _image(grid, m: int) -> np.ndarray:
    """The schedule as an RGB image: a row per stage, a column per time step; forwards in
    blues, backwards in oranges, darker for later micro-batches; idle steps grey."""
    image = np.ones((len(grid), len(grid[0]), 3))
    shades = {"F": colormaps["Blues"], "B": colormaps["Oranges"]}
    for s, row in enumerate(grid):
        for t, cell in enumerate(row):
            if cell is None:
                image[s, t] = _IDLE
            else:
                j, phase = cell
                image[s, t] = shades[phase](0.35 + 0.55 * j / max(m - 1, 1))[:3]
    return image


def _compute(*, p, m):
    p, m = int(p), int(m)
    return {kind: pipeline_schedule(p, m, kind) for kind in ("gpipe", "1f1b")}


def _draw(fig, schedules, *, p, m):
    axes = fig.subplots(2, 1, sharex=True)
    images, titles = {}, {}
    for ax, kind in zip(axes, schedules, strict=True):
        images[kind] = ax.imshow(
            _image(schedules[kind].grid, int(m)), aspect="auto", interpolation="nearest"
        )
        ax.set_ylabel("stage")
        titles[kind] = ax.set_title("", fontsize=10)
    axes[1].set_xlabel("time step (blue: forward, orange: backward, grey: idle)")

    def update(schedules, *, p, m):
        p, m = int(p), int(m)
        for kind, name in (("gpipe", "GPipe"), ("1f1b", "1F1B")):
            s = schedules[kind]
            images[kind].set_data(_image(s.grid, m))
            images[kind].set_extent((0, s.steps, p - 0.5, -0.5))
            images[kind].axes.set_yticks(range(p))
            titles[kind].set_text(
                f"{name}: {s.steps} steps, bubble {s.bubble:.3f} "
                f"(formula {float(pipeline_bubble(p, m)):.3f}), "
                f"stage 0 keeps {s.peak_activations[0]} micro-batches"
            )

    update(schedules, p=p, m=m)
    return update


@demo_factory
def pipeline_demo() -> Demo:
    """GPipe and 1F1B on p stages and m micro-batches
    (:func:`llmtrain.pretraining.pipeline_schedule`): who computes what at each time step,
    the idle fraction against (p − 1)/(m + p − 1), and the activations stage 0 must keep."""
    return Demo(
        _compute,
        _draw,
        [
            Slider("p", 1, MAX_STAGES, 4, integer=True, label="stages N_p"),
            Slider("m", 1, MAX_MICRO, 8, integer=True, label="micro-batches K"),
        ],
        figsize=(9.0, 4.8),
        alt=(
            "Two timelines, GPipe above and 1F1B below: a row per pipeline stage, a column "
            "per time step, forward passes in blue and backward passes in orange, idle steps "
            "in grey. Both take 2(m + p − 1) steps with the same idle triangles; 1F1B "
            "interleaves forwards and backwards so that a stage holds at most p micro-batches."
        ),
    )
