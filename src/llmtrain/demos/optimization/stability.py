"""Demos of the stability chapter: clipping gradient spikes, and accumulating micro-batches."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..._threads import one_torch_thread
from ...optim import Quadratic, accumulate_gradients, clip_by_global_norm, sgd_step
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, freeze_on_top, log_axis

__all__ = ["accumulation_demo", "clipping_demo", "train_with_spikes"]

#: A well-conditioned quadratic: without spikes, SGD at these rates converges quickly.
BOWL = Quadratic(curvatures=(1.0, 3.0), angle=0.5)


@dataclass(frozen=True)
class SpikeRuns:
    """Losses and gradient norms of the same noisy run with and without clipping."""

    losses_plain: np.ndarray
    losses_clipped: np.ndarray
    norms: np.ndarray
    spikes: np.ndarray


def train_with_spikes(
    max_norm: float | None,
    *,
    lr: float,
    spike: float,
    steps: int = 150,
    every: int = 25,
    noise: float = 0.05,
    seed: int = 0,
    problem=BOWL,
):
    """SGD on ``problem`` whose gradient is multiplied by ``spike`` every ``every`` steps
    (a bad batch), clipped at global norm ``max_norm`` (None: no clipping).

    Returns the losses L(θ_0..θ_T), the pre-clip gradient norms, and the spike steps."""
    rng = np.random.default_rng(seed)
    θ = np.array(problem.start, dtype=float)
    losses, norms, state = [float(problem.loss(θ))], [], {}
    spikes = np.arange(every, steps + 1, every)
    for t in range(1, steps + 1):
        g = problem.grad(θ) + noise * rng.standard_normal(θ.shape)
        if t % every == 0:
            g = spike * g
        if max_norm is None:
            norms.append(float(np.linalg.norm(g)))
        else:
            (g,), norm = clip_by_global_norm([g], max_norm)
            norms.append(norm)
        θ, state = sgd_step(θ, g, state, lr=lr)
        losses.append(float(problem.loss(θ)))
    return np.array(losses), np.array(norms), spikes


@lru_cache(maxsize=64)
def _unclipped(lr, spike, steps, problem):
    """The run without clipping, which moving c does not change: computed once per (α, spike)."""
    return train_with_spikes(None, lr=lr, spike=spike, steps=steps, problem=problem)


def _spike_runs(max_norm, lr, spike, steps, problem):
    plain, norms, spikes = _unclipped(lr, spike, steps, problem)
    clipped, _, _ = train_with_spikes(max_norm, lr=lr, spike=spike, steps=steps, problem=problem)
    return SpikeRuns(plain, clipped, norms, spikes)


def _draw_spikes(fig, runs, *, max_norm, steps, **params):
    loss_ax, norm_ax = fig.subplots(1, 2)
    x = np.arange(steps + 1)
    (plain,) = loss_ax.plot(x, runs.losses_plain, color="C3", label="no clipping")
    (clipped,) = loss_ax.plot(x, runs.losses_clipped, color="C0", label="clipped at c")
    log_axis(loss_ax)
    loss_ax.set_ylim(1e-5, 1e6)
    loss_ax.set_xlim(0, steps)
    loss_ax.set_xlabel("step t")
    loss_ax.set_ylabel("loss L(θ_t)")
    loss_legend = loss_ax.legend(fontsize=8, loc="upper right")
    loss_ax.set_title("a spike every 25 steps", fontsize=10)
    (norm_line,) = norm_ax.plot(np.arange(1, steps + 1), runs.norms, ".", color="C3", ms=3)
    threshold = norm_ax.axhline(max_norm, color="C0", linestyle="--", label="threshold c")
    log_axis(norm_ax)
    norm_ax.set_ylim(1e-3, 1e4)
    norm_ax.set_xlim(0, steps)
    norm_ax.set_xlabel("step t")
    norm_ax.set_ylabel("‖g_t‖ before clipping (unclipped run)")
    norm_legend = norm_ax.legend(fontsize=8, loc="upper right")

    # No limit or label changes: after the first move everything but the curves is one frozen
    # image, and the legends (which a full draw puts above the curves) another one on top.
    background = FrozenBackground(fig, [loss_ax, norm_ax])
    legends = [loss_legend, norm_legend]

    def update(runs, *, max_norm, **params):
        if background.image is None and first_done:
            background.capture([plain, clipped, norm_line, threshold, *legends])
            freeze_on_top(fig, legends)
        plain.set_ydata(np.maximum(runs.losses_plain, 1e-12))
        clipped.set_ydata(np.maximum(runs.losses_clipped, 1e-12))
        norm_line.set_ydata(runs.norms)
        threshold.set_ydata([max_norm, max_norm])

    first_done = False
    update(runs, max_norm=max_norm)
    first_done = True
    return update


@demo_factory
def clipping_demo(steps: int = 150, problem=BOWL) -> Demo:
    """SGD with an occasional gradient spike, with and without clipping by global norm
    (:func:`llmtrain.optim.clip_by_global_norm`); sliders for c, the spike and α."""
    return Demo(
        _spike_runs,
        _draw_spikes,
        [
            Slider("max_norm", 0.01, 100.0, 1.0, scale="log", label="clip threshold c"),
            Slider("spike", 1.0, 1000.0, 200.0, scale="log", label="spike factor"),
            Slider("lr", 0.01, 0.6, 0.1, scale="log", label="learning rate α"),
        ],
        fixed={"steps": steps, "problem": problem},
        alt=(
            "Left: the loss against the step of SGD with a gradient spike every 25 steps, "
            "without clipping (red) and with clipping at global norm c (blue), on a log scale; "
            "right: the gradient norm at each step of the unclipped run, with the threshold c "
            "dashed. The sliders set c, the spike factor and the learning rate α."
        ),
    )


# -- accumulation ----------------------------------------------------------------------------

WEIGHTINGS = ("size", "equal", "sum")
_LABELS = ("B_j / B\n(correct)", "1 / K\n(mean of means)", "none\n(sum)")
_FLOOR = 1e-18  # where an exact zero is drawn on the log axis


@dataclass(frozen=True)
class AccumulationErrors:
    """Largest difference between accumulated and large-batch gradients, per weighting."""

    errors: np.ndarray
    sizes: tuple


def _model_and_data(B: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (B,), generator=g)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
    ).double()
    return model, x, y


def _accumulation_errors(K, batch_size, seed):
    with one_torch_thread():
        return _errors(min(K, batch_size), batch_size, seed)


def _errors(K, batch_size, seed):
    model, x, y = _model_and_data(batch_size, seed)
    loss = lambda b: torch.nn.functional.cross_entropy(model(b[0]), b[1])  # noqa: E731
    model.zero_grad()
    loss((x, y)).backward()
    full = torch.cat([p.grad.flatten() for p in model.parameters()])
    # K micro-batches whose sizes differ by at most one when K does not divide B.
    bounds = np.cumsum([0, *(len(part) for part in np.array_split(np.arange(batch_size), K))])
    micro = [(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)]
    errors = []
    for weighting in WEIGHTINGS:
        model.zero_grad()
        accumulate_gradients(loss, micro, weighting=weighting)
        acc = torch.cat([p.grad.flatten() for p in model.parameters()])
        errors.append(float((acc - full).abs().max()))
    return AccumulationErrors(np.array(errors), tuple(len(b[0]) for b in micro))


def _draw_accumulation(fig, result, **params):
    ax = fig.subplots()
    heights = np.maximum(result.errors, _FLOOR)
    bars = ax.bar(range(3), heights, color=["C2", "C1", "C3"], bottom=_FLOOR / 10)
    log_axis(ax)
    ax.set_ylim(_FLOOR / 10, 1e2)
    ax.set_xticks(range(3), _LABELS)
    ax.axhspan(_FLOOR / 10, 1e-13, color="C2", alpha=0.08)
    ax.text(-0.45, 2e-14, "rounding error", fontsize=8, ha="left", va="top", color="C2")
    ax.set_ylabel("max |accumulated − full gradient|")
    title = ax.set_title("", fontsize=10)

    def update(result, **params):
        for bar, h in zip(bars, np.maximum(result.errors, _FLOOR), strict=True):
            bar.set_height(h)
        sizes = ", ".join(map(str, result.sizes))
        title.set_text(f"K = {len(result.sizes)} micro-batches of sizes {sizes}")

    update(result)
    return update


@demo_factory
def accumulation_demo(seed: int = 0) -> Demo:
    """Gradient accumulation (:func:`llmtrain.optim.accumulate_gradients`) over K micro-batches
    against one large batch, for the correct weighting and two wrong ones."""
    return Demo(
        _accumulation_errors,
        _draw_accumulation,
        [
            Slider("K", 1, 16, 4, integer=True, label="micro-batches K"),
            Slider("batch_size", 1, 64, 30, integer=True, label="batch size B"),
        ],
        fixed={"seed": seed},
        figsize=(8.0, 3.6),
        alt=(
            "Bars, on a log scale, of the largest difference between a gradient accumulated over "
            "K micro-batches and the gradient of the whole batch, for three weightings of the "
            "micro-batches: B_j / B (correct, at rounding error), 1 / K, and none (a sum). The "
            "sliders set K and the batch size B."
        ),
    )
