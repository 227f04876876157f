"""Demos of the RLHF chapter: PPO on the book's SFT model against the learned reward model,
for three values of the KL coefficient β. The runs are cached
(:func:`~llmtrain.posttraining.cached_rl`): the chapter, this demo and the chapter's tests
load the same three."""

from __future__ import annotations

from functools import cache

import numpy as np

from ...posttraining import PPO_BETAS, PPO_TASKS, cached_rl, ppo_config
from ..demo import Demo, Slider, demo_factory

__all__ = ["ppo_beta_demo", "ppo_runs"]


@cache
def ppo_runs() -> dict:
    """``{β: AlignmentRun}``: the SFT model trained by PPO against the learned reward model
    (which also starts the value model) on the prompts of
    :data:`~llmtrain.posttraining.PPO_TASKS`, for every β of
    :data:`~llmtrain.posttraining.PPO_BETAS` (:func:`~llmtrain.posttraining.ppo_config`);
    cached on disk, and in memory for the process (the chapter and its demo share the runs:
    do not modify them)."""
    return {b: cached_rl(ppo_config(b), reward="learned", tasks=PPO_TASKS) for b in PPO_BETAS}


def _curves(run) -> dict:
    ev = run.records["evaluations"]
    return {k: np.array([e[k] for e in ev]) for k in ("iter", "reward", "gold", "kl")}


def _compute(*, beta, curves):
    b = min(curves, key=lambda v: abs(np.log(v) - np.log(beta)))  # the nearest run
    return {"beta": b, **curves[b]}


PANELS = (
    ("reward", "learned reward (mean)"),
    ("gold", "gold reward (exact match)"),
    ("kl", "KL to π_ref (nats per answer)"),
)


def _draw(fig, result, *, curves, **values):
    axes = fig.subplots(1, 3)
    lines = {}
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        for c in curves.values():  # every run, faint: the chosen one is drawn over it
            ax.plot(c["iter"], c[key], color="0.8", lw=1)
        lo = min(float(c[key].min()) for c in curves.values())
        hi = max(float(c[key].max()) for c in curves.values())
        pad = 0.05 * (hi - lo or 1.0)
        ax.set_ylim(lo - pad, hi + pad)
        (lines[key],) = ax.plot([], [], "o-", color="C0", ms=3)
        ax.set_xlabel("update")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    title = fig.suptitle("", fontsize=10)

    def update(result, **values):
        for key, _ in PANELS:
            lines[key].set_data(result["iter"], result[key])
        title.set_text(
            f"PPO with β = {result['beta']:g}: after {int(result['iter'][-1])} updates, learned "
            f"reward {result['reward'][-1]:.2f}, gold {result['gold'][-1]:.2f}, "
            f"KL {result['kl'][-1]:.2f} nats (grey: the other β)"
        )

    update(result, **values)
    return update


@demo_factory
def ppo_beta_demo() -> Demo:
    """PPO against the learned reward model for three KL coefficients β (:func:`ppo_runs`):
    the learned reward, the gold reward and the KL to the reference on the validation prompts
    during training. The runs are trained (or loaded from the cache) when the demo is made;
    moving the slider only looks one up."""
    curves = {b: _curves(run) for b, run in ppo_runs().items()}
    lo, hi = PPO_BETAS[0], PPO_BETAS[-1]
    return Demo(
        _compute,
        _draw,
        # Steps of a factor 10 on the log slider: only the runs' values.
        [Slider("beta", lo, hi, PPO_BETAS[1], step=1.0, scale="log", label="KL coefficient β")],
        fixed={"curves": curves},
        figsize=(10.0, 3.4),
        alt=(
            "Three panels against the PPO update: the mean learned reward, the gold reward "
            "(exact match) and the KL divergence to the reference model, measured on the same "
            "validation prompts every 10 updates, for the chosen KL coefficient β, with the runs "
            "of the other β in grey. The slider chooses β among "
            f"{', '.join(f'{b:g}' for b in PPO_BETAS)}."
        ),
        static_points=3,
        static_note="each position is a PPO run, and the grid holds all three",
    )
