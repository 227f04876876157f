"""Demo of the chapter on the critical batch size: the steps/examples trade-off."""

from __future__ import annotations

import numpy as np

from ...optim import steps_examples_tradeoff
from ..demo import Demo, Slider, demo_factory
from ..plots import log_axis, moving_title
from .sgd import log_x_axis

__all__ = ["tradeoff_demo"]

#: The batch sizes the curves are drawn at.
_B = np.logspace(0, 5, 200)


def _tradeoff(B_noise, batch_size):
    return steps_examples_tradeoff(_B, B_noise), steps_examples_tradeoff(batch_size, B_noise)


def _draw(fig, result, *, B_noise, batch_size):
    left, right = fig.subplots(1, 2)
    log_x_axis(left)
    log_axis(left)
    steps = left.plot([], [], color="C0", label="steps N_upd / N_upd,min")[0]
    examples = left.plot([], [], color="C3", label="examples N_ex / N_ex,min")[0]
    marks = left.plot([], [], "o", color="black", markersize=5)[0]
    noise_line = left.axvline(1.0, color="gray", linestyle="--", linewidth=0.8, label="B_noise")
    left.set_xlim(_B[0], _B[-1])
    left.set_ylim(0.9, 1e3)
    left.set_xlabel("batch size B")
    left.set_ylabel("cost relative to its minimum")
    left.grid(alpha=0.3)
    left.legend(loc="upper center", fontsize=8)
    left_title = moving_title(left, "")

    log_x_axis(right)
    log_axis(right)
    u = np.logspace(-3, 3, 200)  # N_upd/N_upd,min − 1 along the hyperbola
    right.plot(1 + u, 1 + 1 / u, color="C2")  # the same for every B_noise
    point = right.plot([], [], "o", color="black", markersize=6)[0]
    right.plot([2], [2], "+", color="gray", markersize=10)
    right.set_xlim(0.9, 1e3)
    right.set_ylim(0.9, 1e3)
    right.set_xlabel("steps N_upd / N_upd,min (time)")
    right.set_ylabel("examples N_ex / N_ex,min (compute)")
    right.grid(alpha=0.3)
    right_title = moving_title(right, "")

    def update(result, *, B_noise, batch_size):
        (s, e), (s_B, e_B) = result
        steps.set_data(_B, s)
        examples.set_data(_B, e)
        marks.set_data([batch_size, batch_size], [s_B, e_B])
        noise_line.set_xdata([B_noise, B_noise])
        point.set_data([s_B], [e_B])
        left_title.set_text(f"B_noise = {B_noise:.0f}, B = {batch_size}")
        right_title.set_text(
            f"{float(s_B):.2f}× the fewest steps, {float(e_B):.2f}× the least data"
        )

    update(result, B_noise=B_noise, batch_size=batch_size)
    return update


@demo_factory
def tradeoff_demo() -> Demo:
    """The steps and examples needed to reach a loss against the batch size B, relative to
    their minima (:func:`llmtrain.optim.steps_examples_tradeoff`), with sliders for the
    noise scale B_noise and the batch size B."""
    return Demo(
        _tradeoff,
        _draw,
        [
            Slider("B_noise", 1.0, 1e4, 300.0, scale="log", label="noise scale B_noise"),
            Slider("batch_size", 1, 100_000, 64, integer=True, scale="log", label="batch size B"),
        ],
        alt=(
            "Left: against the batch size B, both axes logarithmic, the steps (blue) and the "
            "examples (red) needed to reach a given loss, each relative to its minimum, with "
            "black dots at the chosen B and a dashed line at B_noise; right: the two costs "
            "against each other along a hyperbola, a dot marking the chosen B. The sliders set "
            "the noise scale B_noise and the batch size B."
        ),
    )
