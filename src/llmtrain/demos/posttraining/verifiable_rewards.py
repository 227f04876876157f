"""Demo of the chapter on reinforcement learning with verifiable rewards: GRPO on the reversal
task of the task world, for two group sizes and two clip ranges (cached runs)."""

from __future__ import annotations

from functools import cache

import numpy as np

from ...posttraining.alignment_runs import cached_rl
from ...posttraining.rl import RLConfig
from ..demo import Demo, Slider, demo_factory

__all__ = [
    "GRID_ANSWERS",
    "GRID_CLIPS",
    "GRID_GROUP_SIZES",
    "GRPO_CONFIG",
    "grid_config",
    "grpo_grid",
    "grpo_grid_demo",
    "moving_average",
]

#: The chapter's GRPO run from the SFT model: 8 prompts and 8 answers to each per rollout,
#: two passes over every rollout (so that the ratio and its clip matter), 60 updates.
GRPO_CONFIG = RLConfig(
    method="grpo", group_size=8, batch_size=8, epochs=2, max_iters=60, eval_interval=60
)

#: The grid of the group-size and clip demo: n_grp answers per prompt, with the number of
#: answers per rollout fixed, and two clip ranges (four runs, to keep the build short).
GRID_GROUP_SIZES = (2, 8)
GRID_CLIPS = (0.1, 0.3)
#: Answers per rollout in every run of the grid (32 / n_grp prompts).
GRID_ANSWERS = 32
LOG_STEP = float(np.log10(4))  # the group-size slider's step on its log scale: a factor 4


def grid_config(group_size: int, clip: float) -> RLConfig:
    """A run of the grid: 20 updates of GRPO, two passes over each rollout of
    ``GRID_ANSWERS`` answers, ``group_size`` answers per prompt, clip range ``clip``."""
    return RLConfig(
        method="grpo",
        group_size=group_size,
        batch_size=GRID_ANSWERS // group_size,
        clip=clip,
        epochs=2,
        max_iters=20,
        eval_interval=20,
    )


@cache
def grpo_grid() -> dict[tuple[int, float], dict]:
    """The records (``history``, ``updates``) of every run of the grid, trained from the SFT
    model or loaded from the cache, keyed by (group size, clip). Kept for the process, so that
    the chapter and its demo load the runs once (treat the records as read-only)."""
    return {
        (G, clip): cached_rl(grid_config(G, clip)).records
        for G in GRID_GROUP_SIZES
        for clip in GRID_CLIPS
    }


def moving_average(values, window: int = 5) -> np.ndarray:
    """The mean of the last ``window`` values (fewer at the start) at every position."""
    x = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(x, 0, 0.0))
    n = np.minimum(np.arange(1, len(x) + 1), window)
    return (c[1:] - c[np.arange(1, len(x) + 1) - n]) / n


def _curves(records: dict) -> dict:
    history, updates = records["history"], records["updates"]
    return {
        "rollout_update": np.array([h["update"] for h in history], dtype=float),
        "gold": moving_average([h["gold"] for h in history]),
        "kl": np.array([h["kl_k3"] for h in history]),
        "update": np.arange(1, len(updates) + 1, dtype=float),
        "clipfrac": moving_average([u["clipfrac"] for u in updates]),
    }


def _nearest_group(value: float) -> int:
    return min(GRID_GROUP_SIZES, key=lambda g: abs(np.log(g) - np.log(value)))


def _compute(*, group_size, clip, curves):
    G = _nearest_group(group_size)
    c = min(GRID_CLIPS, key=lambda v: abs(v - clip))
    run = curves[G, c]
    return {
        "G": G,
        "clip": c,
        **run,
        "final_gold": float(np.mean(run["gold"][-1:])),
        "mean_clipfrac": float(np.mean(run["clipfrac"])),
    }


_PANELS = (
    ("rollout_update", "gold", "training reward (gold, mean of 5 rollouts)", (0.0, 1.0)),
    ("rollout_update", "kl", "KL to the reference (k3, per answer)", None),
    ("update", "clipfrac", "clipped fraction of tokens (mean of 5 updates)", None),
)


def _draw(fig, result, *, curves, **values):
    axes = fig.subplots(1, 3)
    lines = []
    for ax, (x, y, title, ylim) in zip(axes, _PANELS, strict=True):
        for run in curves.values():  # every run of the grid, faint, behind the chosen one
            ax.plot(run[x], run[y], color="0.8", lw=0.8)
        (line,) = ax.plot(result[x], result[y], color="C0", lw=2)
        lines.append((line, x, y))
        top = max(float(np.max(run[y])) for run in curves.values())
        ax.set_ylim(ylim or (0.0, 1.08 * top if top > 0 else 1.0))
        ax.set_xlabel("update")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    heading = fig.suptitle("", fontsize=10)

    def update(result, **values):
        for line, x, y in lines:
            line.set_data(result[x], result[y])
        heading.set_text(
            f"GRPO, group size {result['G']} ({GRID_ANSWERS // result['G']} prompts × "
            f"{result['G']} answers per rollout), clip ε = {result['clip']:g}: "
            f"final reward {result['final_gold']:.2f}, "
            f"mean clipped fraction {result['mean_clipfrac']:.3f}"
        )

    update(result, **values)
    return update


@demo_factory
def grpo_grid_demo() -> Demo:
    """GRPO on the reversal task from the SFT model for group sizes 2 and 8 (with
    ``GRID_ANSWERS`` answers per rollout) and clip ranges 0.1 and 0.3: the training reward,
    the KL to the reference and the fraction of clipped tokens. Every run of the grid is
    trained (or loaded from the cache) when the demo is made; a slider move looks one up."""
    curves = {key: _curves(records) for key, records in grpo_grid().items()}
    return Demo(
        _compute,
        _draw,
        [
            Slider("group_size", 2, 8, 8, step=LOG_STEP, scale="log", label="group size n_grp"),
            Slider("clip", 0.1, 0.3, 0.3, step=0.2, label="clip range ε_clip"),
        ],
        fixed={"curves": curves},
        figsize=(10.5, 3.4),
        alt=(
            "Three panels against the update of GRPO runs on the reversal task: the mean gold "
            "reward of the training rollouts, the KL divergence to the reference model (k3 "
            "estimate per answer) and the fraction of answer tokens whose ratio is clipped. "
            "The chosen run is a thick blue line, the other runs of the grid thin grey lines. "
            "The sliders choose the group size (2 or 8 answers per prompt, 32 answers per "
            "rollout) and the clip range (0.1 or 0.3)."
        ),
        static_points=2,
        static_note="each position is a GRPO run, and the grid holds all four",
    )
