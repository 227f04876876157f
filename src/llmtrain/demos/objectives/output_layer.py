"""Demos of the chapter on distillation and the output layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..._threads import one_torch_thread
from ...objectives import distillation_loss
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, moving_title

__all__ = ["distillation_demo"]

#: Logits z_T of a confident teacher and z_S of a student that ranks the tokens differently.
TEACHER_LOGITS = (6.0, 3.5, 3.0, 1.0, 0.5, 0.0, -1.0, -2.0)
STUDENT_LOGITS = (4.0, 1.0, 3.5, 2.0, -0.5, 0.5, 0.0, -1.5)
#: The temperatures drawn on the loss curves.
TAU_RANGE = (0.25, 16.0)


@dataclass(frozen=True)
class DistillationView:
    """The softened distributions at the slider's τ, and the loss along τ."""

    teacher_logits: np.ndarray
    student_logits: np.ndarray
    p: np.ndarray  # the teacher's p_T = softmax(z_T / τ)
    q: np.ndarray  # the student's p_S = softmax(z_S / τ)
    loss: float  # τ² KL(p_T ‖ p_S) at the slider's τ
    gradient: np.ndarray  # ∂ loss / ∂ z_S = τ (p_S - p_T)
    tau_grid: np.ndarray
    losses: np.ndarray  # τ² KL along the grid
    kl: np.ndarray  # KL along the grid, without the τ² factor
    limit: float  # τ² KL as τ → ∞: ‖(s - mean s) - (t - mean t)‖² / (2V)


def _compute(*, temperature):
    with one_torch_thread():
        t = torch.tensor(TEACHER_LOGITS, dtype=torch.float64)
        s = torch.tensor(STUDENT_LOGITS, dtype=torch.float64, requires_grad=True)
        loss = distillation_loss(s, t, temperature=temperature)
        loss.backward()
        grid = np.geomspace(*TAU_RANGE, 120)
        τ = torch.tensor(grid, dtype=torch.float64)[:, None]
        # One row per τ: logits divided by τ at temperature 1 give the KL at temperature τ.
        kl = distillation_loss(s.detach() / τ, t / τ, reduction="none").numpy()
        return DistillationView(
            t.numpy(),
            s.detach().numpy(),
            torch.softmax(t / temperature, 0).numpy(),
            torch.softmax(s.detach() / temperature, 0).numpy(),
            loss.item(),
            s.grad.numpy(),
            grid,
            grid**2 * kl,
            kl,
            float(((s.detach() - s.detach().mean()) - (t - t.mean())).pow(2).sum() / (2 * len(t))),
        )


def _draw(fig, r: DistillationView, *, temperature, **_):
    bar_ax, loss_ax = fig.subplots(1, 2, width_ratios=[1.3, 1])
    V = len(r.p)
    x = np.arange(V)
    w = 0.38
    p_bars = bar_ax.bar(x - w / 2, r.p, w, label="teacher p_T = softmax(z_T/τ)", color="C0")
    q_bars = bar_ax.bar(x + w / 2, r.q, w, label="student p_S = softmax(z_S/τ)", color="C1")
    bar_ax.set_xticks(x, [f"{k + 1}" for k in range(V)], fontsize=8)
    bar_ax.set_xlabel("token")
    bar_ax.set_ylim(0.0, 1.0)
    bar_ax.legend(fontsize=8, loc="upper right")
    title = moving_title(bar_ax, fontsize=10)

    loss_ax.plot(r.tau_grid, r.losses, color="C3", label="τ² KL(p_T ‖ p_S)")
    loss_ax.plot(r.tau_grid, r.kl, color="C3", linestyle="--", label="KL(p_T ‖ p_S)")
    loss_ax.axhline(r.limit, color="grey", linestyle=":", label="limit τ → ∞")
    (dot,) = loss_ax.plot([temperature], [r.loss], "o", color="black")
    loss_ax.set_xscale("log")
    loss_ax.set_xlim(*TAU_RANGE)
    loss_ax.set_ylim(0.0, 1.05 * float(r.losses.max()))
    loss_ax.set_xlabel("temperature τ")
    loss_ax.set_title("distillation loss (nats)", fontsize=10)
    loss_ax.legend(fontsize=8)
    loss_ax.grid(alpha=0.3)

    background = FrozenBackground(fig, [bar_ax, loss_ax])
    dynamic = [*p_bars, *q_bars, dot, title]
    first_done = False

    def update(r: DistillationView, *, temperature, **_):
        if background.image is None and first_done:
            background.capture(dynamic)
        for bars, heights in ((p_bars, r.p), (q_bars, r.q)):
            for bar, height in zip(bars, heights, strict=True):
                bar.set_height(height)
        dot.set_data([temperature], [r.loss])
        title.set_text(f"τ = {temperature:.2f}: τ² KL = {r.loss:.3f}")

    update(r, temperature=temperature)
    first_done = True
    return update


@demo_factory
def distillation_demo() -> Demo:
    """The distillation loss (:func:`llmtrain.objectives.distillation_loss`) of a student
    against a teacher over 8 tokens, with a slider for the temperature τ: both softened
    distributions, and the loss with and without the τ² factor along τ."""
    return Demo(
        _compute,
        _draw,
        [Slider("temperature", 0.25, 16.0, 1.0, scale="log", label="temperature τ")],
        figsize=(10.0, 3.4),
        alt=(
            "Left: bars of the teacher's (blue) and the student's (orange) softened "
            "distributions over 8 tokens; right: the distillation loss against the temperature τ "
            "on a log axis, with (solid) and without (dashed) the τ² factor, its limit for large "
            "τ dotted and a dot at the current τ. The slider sets τ."
        ),
    )
