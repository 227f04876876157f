"""Demos of the loss-functions chapter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from ..._threads import one_torch_thread
from ...objectives import cross_entropy
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, moving_title

__all__ = ["logit_demo"]

#: Logits of the classes 2, 3, 4, which stay fixed while the slider moves z_1.
OTHER_LOGITS = (1.5, 0.5, -1.0)
#: The range of z_1 drawn on the curves.
Z_RANGE = (-8.0, 8.0)
#: The sliders' starting values; the figure is laid out for them whatever the values drawn.
DEFAULTS = {"z1": 1.0, "temperature": 1.0, "label_smoothing": 0.0}


@dataclass(frozen=True)
class LogitSweep:
    """Loss and gradient along z_1, and the full picture at the slider's z_1."""

    z1_grid: np.ndarray
    losses: np.ndarray  # loss for each z_1 on the grid
    dz1: np.ndarray  # ∂ loss / ∂ z_1 for each z_1 on the grid
    loss: float  # at the slider's z_1
    p: np.ndarray  # softmax(z / τ) at the slider's z_1
    y: np.ndarray  # the (smoothed) target distribution
    gradient: np.ndarray  # ∂ loss / ∂ z at the slider's z_1, (p - y) / τ


def _sweep(**params):
    with one_torch_thread():
        return _sweep_logit(**params)


def _sweep_logit(*, z1, temperature, label_smoothing, others=OTHER_LOGITS, points=161):
    grid = np.linspace(*Z_RANGE, points)
    values = np.append(grid, z1)  # the slider's value is the last row
    z = torch.empty(len(values), 1 + len(others), dtype=torch.float64)
    z[:, 0] = torch.from_numpy(values)
    z[:, 1:] = torch.tensor(others, dtype=torch.float64)
    z.requires_grad_(True)
    targets = torch.zeros(len(values), dtype=torch.long)  # class 1 (index 0) is correct
    losses = cross_entropy(
        z / temperature, targets, label_smoothing=label_smoothing, reduction="none"
    )
    losses.sum().backward()  # rows are independent: row i's gradient is ∂ loss_i / ∂ z_i
    C = z.shape[1]
    y = np.full(C, label_smoothing / C)
    y[0] += 1.0 - label_smoothing
    p = torch.softmax(z[-1].detach() / temperature, 0).numpy()
    gradient = z.grad[-1].numpy()
    return LogitSweep(
        grid,
        losses[:-1].detach().numpy(),
        z.grad[:-1, 0].numpy(),
        float(losses[-1].detach()),
        p,
        y,
        gradient,
    )


def _draw(fig, r: LogitSweep, *, z1, temperature, label_smoothing, **_):
    loss_ax, grad_ax, bar_ax = fig.subplots(1, 3, width_ratios=[1, 1, 1.1])
    (loss_curve,) = loss_ax.plot(r.z1_grid, r.losses, color="C0")
    (loss_dot,) = loss_ax.plot([z1], [r.loss], "o", color="C3")
    loss_ax.set_xlim(*Z_RANGE)
    loss_ax.set_xlabel("logit z₁ of the correct class")
    loss_ax.set_title("loss ℓ (nats)", fontsize=10)
    loss_ax.grid(alpha=0.3)

    (grad_curve,) = grad_ax.plot(r.z1_grid, r.dz1, color="C1")
    (grad_dot,) = grad_ax.plot([z1], [r.gradient[0]], "o", color="C3")
    grad_zero = grad_ax.axhline(0.0, color="black", linewidth=0.6)
    grad_ax.set_xlim(*Z_RANGE)
    grad_ax.set_xlabel("logit z₁ of the correct class")
    grad_ax.set_title("∂ℓ/∂z₁ = (p₁ − y₁)/τ", fontsize=10)
    grad_ax.grid(alpha=0.3)

    C = len(r.p)
    x = np.arange(C)
    w = 0.27
    p_bars = bar_ax.bar(x - w, r.p, w, label="p = softmax(z/τ)", color="C0")
    y_bars = bar_ax.bar(x, r.y, w, label="target y", color="C2")
    g_bars = bar_ax.bar(x + w, r.p - r.y, w, label="p − y", color="C1")
    bar_zero = bar_ax.axhline(0.0, color="black", linewidth=0.6)
    bar_ax.set_xticks(x, [f"class {k + 1}" for k in range(C)], fontsize=8)
    bar_ax.set_ylim(-1.05, 1.05)
    bar_ax.legend(fontsize=7, loc="upper right")
    title = moving_title(bar_ax, fontsize=10)

    # Everything but the curves, dots, bars, title and the two y axes (whose limits follow τ
    # and ε_ls) is drawn once into an image after the first move. What the original stacking
    # draws over those (zero lines, spines) is drawn with them.
    background = FrozenBackground(fig, [loss_ax, grad_ax, bar_ax])
    dynamic = [loss_curve, loss_dot, grad_curve, grad_dot, *p_bars, *y_bars, *g_bars, title]
    dynamic += [loss_ax.yaxis, grad_ax.yaxis, grad_zero, bar_zero]
    dynamic += [spine for ax in (loss_ax, grad_ax, bar_ax) for spine in ax.spines.values()]
    first_done = False

    def update(r: LogitSweep, *, z1, temperature, label_smoothing, **_):
        if background.image is None and first_done:
            background.capture(dynamic)
        loss_curve.set_ydata(r.losses)
        loss_dot.set_data([z1], [r.loss])
        top = float(max(r.losses.max(), r.loss))
        loss_ax.set_ylim(0.0, 1.05 * top + 0.05)
        grad_curve.set_ydata(r.dz1)
        grad_dot.set_data([z1], [r.gradient[0]])
        grad_ax.set_ylim(-1.1 / temperature, 1.1 / temperature)
        for bars, heights in ((p_bars, r.p), (y_bars, r.y), (g_bars, r.p - r.y)):
            for bar, h in zip(bars, heights, strict=True):
                bar.set_height(h)
        title.set_text(f"at z₁ = {z1:.2f}: ℓ = {r.loss:.3f}")

    # Few tick labels: drawing them is most of the cost of a slider move.
    for ax in (loss_ax, grad_ax):
        ax.set_xticks([-8, -4, 0, 4, 8])
        ax.yaxis.set_major_locator(MaxNLocator(4))
    bar_ax.set_yticks([-1.0, -0.5, 0.0, 0.5, 1.0])
    update(r, z1=z1, temperature=temperature, label_smoothing=label_smoothing)
    first_done = True
    return update


@demo_factory
def logit_demo() -> Demo:
    """Cross-entropy (:func:`llmtrain.objectives.cross_entropy`) of four classes as the
    correct class's logit z₁ moves, with sliders for z₁, the temperature τ and the label
    smoothing ε_ls: the loss curve, its derivative, and p, y and p − y at z₁."""
    return Demo(
        _sweep,
        _draw,
        [
            Slider("z1", *Z_RANGE, DEFAULTS["z1"], step=0.1, label="logit z₁"),
            Slider(
                "temperature",
                0.25,
                4.0,
                DEFAULTS["temperature"],
                scale="log",
                label="temperature τ",
            ),
            Slider(
                "label_smoothing",
                0.0,
                0.5,
                DEFAULTS["label_smoothing"],
                step=0.01,
                label="label smoothing ε_ls",
            ),
        ],
        figsize=(11.0, 3.4),
        alt=(
            "Three panels for four classes: the cross-entropy loss and its derivative against "
            "the correct class's logit z₁, each with a dot at the current z₁, and bars of the "
            "predicted probabilities p, the target y and p − y for each class. The sliders set "
            "z₁, the temperature τ and the label smoothing."
        ),
    )
