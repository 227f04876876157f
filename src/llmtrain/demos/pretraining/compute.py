"""Demo of the compute chapter: days to train a model of N parameters on D tokens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...pretraining import time_to_train
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, moving_title

__all__ = ["H100_BF16_PEAK", "days_to_train_demo"]

H100_BF16_PEAK = 989e12
"""Peak dense bfloat16 FLOP/s of an NVIDIA H100 SXM."""

_DAY = 86_400.0
_DEVICES = np.geomspace(8, 65_536, 60)
_MARKS = {"1 day": 1, "1 week": 7, "1 month": 30, "1 year": 365}


@dataclass
class TrainingTime:
    """C = 6 N D, and the days it takes for every number of devices of the plot."""

    flops: float
    days: float  # at the slider's number of devices
    curve: np.ndarray  # days against _DEVICES


def _days(*, n_params, tokens, n_devices, mfu, peak):
    C = 6 * n_params * tokens
    days = time_to_train(C, int(n_devices), peak, mfu) / _DAY
    curve = np.array([time_to_train(C, int(n), peak, mfu) for n in _DEVICES]) / _DAY
    return TrainingTime(C, days, curve)


def _draw(fig, result, **params):
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(_DEVICES[0], _DEVICES[-1])
    ax.set_ylim(1e-3, 1e6)
    ax.set_xlabel("number of GPUs (H100, 989 TFLOP/s bf16 peak)")
    ax.set_ylabel("days to train")
    ax.grid(alpha=0.3, which="major")
    for label, days in _MARKS.items():
        ax.axhline(days, color="0.5", linestyle=":", linewidth=1)
        ax.text(_DEVICES[-1], days, f"{label} ", ha="right", va="bottom", fontsize=8, color="0.4")
    (curve,) = ax.plot(_DEVICES, result.curve, color="C0")
    (point,) = ax.plot([], [], "o", color="C3", markersize=8)
    title = moving_title(ax)
    background = FrozenBackground(fig, [ax])
    dynamic = [curve, point, title]
    state = {"first": True}

    def update(result, *, n_params, tokens, n_devices, mfu, **_):
        if state["first"]:
            state["first"] = False
        elif background.image is None:
            background.capture(dynamic)
        curve.set_ydata(result.curve)
        point.set_data([n_devices], [result.days])
        title.set_text(
            f"N = {n_params:.3g}, D = {tokens:.3g} tokens: C = 6ND = {result.flops:.2e} FLOPs; "
            f"{int(n_devices):,} GPUs at {mfu:.0%} MFU: {result.days:,.1f} days"
        )

    update(result, **params)
    return update


@demo_factory
def days_to_train_demo() -> Demo:
    """Days to train a model of N parameters on D tokens (C = 6 N D FLOPs) with
    :func:`llmtrain.pretraining.time_to_train`, against the number of H100 GPUs, at a
    model FLOPs utilisation set by a slider."""
    return Demo(
        _days,
        _draw,
        [
            Slider("n_params", 1e8, 1e12, 405e9, scale="log", label="parameters N"),
            Slider("tokens", 1e10, 1e14, 15.6e12, scale="log", label="training tokens D"),
            Slider("n_devices", 8, 65_536, 16_384, scale="log", integer=True, label="GPUs"),
            Slider("mfu", 0.05, 0.7, 0.4, step=0.01, label="MFU"),
        ],
        fixed={"peak": H100_BF16_PEAK},
        figsize=(9.0, 4.0),
        alt=(
            "Days to train against the number of H100 GPUs on log-log axes: a falling line for "
            "the chosen model size N, tokens D and MFU, a dot at the chosen number of GPUs, and "
            "dotted lines at one day, week, month and year. The title gives C = 6ND and the "
            "days."
        ),
        static_points=5,
        static_main=("n_params", "tokens", "n_devices"),
        static_note="four sliders make many combinations",
    )
