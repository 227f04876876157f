"""Demos of the training-recipe chapter: short live runs of the book's trainer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..._threads import one_torch_thread
from ...objectives import DEFAULT_SOURCE, synthetic_corpus
from ...pretraining import TrainConfig, TrainingDiverged, pretrain
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground

__all__ = ["training_recipe_demo"]


@dataclass
class RecipeRun:
    """One short run: the batch losses, the final validation loss and the schedule."""

    losses: np.ndarray
    val_loss: float
    lrs: np.ndarray
    diverged_at: int | None = None


@lru_cache(maxsize=1)
def _text() -> str:
    return synthetic_corpus(20_000, seed=0)


@lru_cache(maxsize=128)
def _train(lr, batch_size, beta1, warmup, steps, seed) -> RecipeRun:
    config = TrainConfig(
        n_layer=1,
        n_head=2,
        n_embd=32,
        block_size=32,
        batch_size=batch_size,
        max_iters=steps,
        warmup_iters=warmup,
        lr=lr,
        beta1=beta1,
        eval_interval=steps,
        eval_iters=4,
        seed=seed,
    )
    lrs = config.schedule(np.arange(1, steps + 1))
    with one_torch_thread():
        try:
            result = pretrain(_text(), config, progress=False)
        except TrainingDiverged as error:
            t = error.iteration
            return RecipeRun(np.full(t - 1, np.nan), math.nan, lrs, diverged_at=t)
    return RecipeRun(np.array(result.losses), result.val_loss, lrs)


def _run(*, lr, batch_size, beta1, warmup, steps, seed):
    return _train(float(lr), int(batch_size), float(beta1), int(warmup), steps, seed)


def _smooth(x: np.ndarray, window: int = 10) -> np.ndarray:
    """The running mean of the last ``window`` values (fewer at the start)."""
    c = np.concatenate(([0.0], np.cumsum(x)))
    i = np.arange(len(x))
    n = np.minimum(i + 1, window)
    return (c[i + 1] - c[i + 1 - n]) / n


def _draw(fig, run, *, steps, **_):
    loss_ax, lr_ax = fig.subplots(1, 2, width_ratios=[2, 1])
    floor, ln_V = DEFAULT_SOURCE.entropy_rate(), math.log(DEFAULT_SOURCE.vocab_size)
    (batch_curve,) = loss_ax.plot([], [], color="C0", alpha=0.3, linewidth=0.8)
    (mean_curve,) = loss_ax.plot([], [], color="C0", linewidth=1.8)
    loss_ax.axhline(ln_V, color="C3", linestyle="--", linewidth=1)
    loss_ax.axhline(floor, color="C2", linestyle="--", linewidth=1)
    loss_ax.text(steps, ln_V, "ln V (uniform) ", color="C3", ha="right", va="bottom", fontsize=8)
    loss_ax.text(
        steps, floor, "entropy rate (floor) ", color="C2", ha="right", va="top", fontsize=8
    )
    loss_ax.set_xlim(0, steps)
    loss_ax.set_ylim(floor - 0.3, ln_V + 0.4)
    loss_ax.set_xlabel("update t")
    loss_ax.set_ylabel("training loss (nats per character)")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(
        [batch_curve, mean_curve], ["batch loss", "mean of last 10"], fontsize=8, loc="center right"
    )
    title = loss_ax.text(0.5, 1.02, "", transform=loss_ax.transAxes, ha="center", va="bottom")
    title.set_fontsize(10)
    (lr_curve,) = lr_ax.plot([], [], color="C1")
    lr_ax.set_xlim(0, steps)
    lr_ax.set_ylim(1e-4 / 2, 1e-1 * 2)
    lr_ax.set_yscale("log")
    lr_ax.set_xlabel("update t")
    lr_ax.set_title("learning rate α_t", fontsize=10)
    lr_ax.grid(alpha=0.3)

    background = FrozenBackground(fig, [loss_ax, lr_ax])
    dynamic = [batch_curve, mean_curve, lr_curve, title]
    state = {"first": True}

    def update(run, *, steps, **_):
        if state["first"]:
            state["first"] = False
        elif background.image is None:
            background.capture(dynamic)
        t = np.arange(1, len(run.losses) + 1)
        batch_curve.set_data(t, run.losses)
        mean_curve.set_data(t, _smooth(run.losses))
        lr_curve.set_data(np.arange(1, steps + 1), run.lrs)
        if run.diverged_at is not None:
            title.set_text(f"diverged at update {run.diverged_at}")
        else:
            title.set_text(
                f"validation loss after {steps} updates: {run.val_loss:.3f} (floor {floor:.3f})"
            )

    update(run, steps=steps)
    return update


@demo_factory
def training_recipe_demo(steps: int = 120, seed: int = 0) -> Demo:
    """Short runs of :func:`llmtrain.pretraining.pretrain` (a one-layer GPT of width 32) on
    the synthetic corpus, with sliders for the peak learning rate, the batch size, β₁ and
    the warmup: the training loss against ln V and the entropy rate, and the schedule."""
    return Demo(
        _run,
        _draw,
        [
            Slider("lr", 1e-4, 1e-1, 1e-2, scale="log", label="peak learning rate α_max"),
            Slider("batch_size", 2, 64, 16, integer=True, label="batch size B"),
            Slider("beta1", 0.0, 0.99, 0.9, step=0.01, label="β₁ (momentum)"),
            Slider("warmup", 0, steps - 1, 10, integer=True, label="warmup T_w"),
        ],
        fixed={"steps": steps, "seed": seed},
        figsize=(10.0, 4.0),
        alt=(
            "Left: the training loss of a one-layer GPT against the update, per batch (faint) "
            "and as a mean of the last 10 (thick), between ln V and the entropy rate (dashed); "
            "right: the learning-rate schedule on a log scale. The sliders set the peak learning "
            "rate, the batch size, β₁ and the warmup."
        ),
        static_points=3,
        static_main=("lr", "beta1", "warmup"),
        static_note="each position trains a small GPT",
    )
