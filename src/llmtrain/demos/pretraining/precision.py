"""Demo of the number-formats chapter: which gradients of a small GPT survive a cast to
float16, as the loss scale moves them up the exponent range."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..._threads import one_torch_thread
from ...pretraining import FLOAT_FORMATS, TrainConfig, cast_statistics, pretrain, stdlib_corpus
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, freeze_on_top, moving_title

__all__ = ["gpt_gradients", "logit_gradients", "loss_scale_demo"]


@lru_cache(maxsize=2)
def gpt_gradients(steps: int = 15, seed: int = 0) -> dict[str, torch.Tensor]:
    """Float32 gradients of a small GPT after ``steps`` updates on Python source: of all its
    weights, and of its logits (an activation gradient, the kind the backward pass of
    mixed-precision training holds in float16). One batch of 16 windows of 64 characters."""
    text = stdlib_corpus()[:100_000]
    config = TrainConfig(
        n_layer=2,
        n_head=2,
        n_embd=48,
        block_size=64,
        batch_size=16,
        max_iters=steps,
        warmup_iters=3,
        lr=1e-2,
        eval_interval=steps,
        eval_iters=1,
        seed=seed,
    )
    with one_torch_thread():
        run = pretrain(text, config, progress=False)
        model = run.model
        ids = torch.tensor(run.tokenizer.encode(text[-20_000:]))
        starts = torch.randint(0, len(ids) - 65, (16,), generator=torch.Generator().manual_seed(1))
        windows = torch.stack([ids[i : i + 65] for i in starts])
        model.zero_grad()
        logits, loss = model(windows[:, :-1], windows[:, 1:])
        logits.retain_grad()
        loss.backward()
    weights = torch.cat([p.grad.flatten() for p in model.parameters()])
    return {"weights": weights, "logits": logits.grad.flatten()}


@dataclass
class ScaledCast:
    """The gradients, and the fractions of their nonzero entries that a cast of S · g to
    float16 turns into zero, a subnormal, or infinity."""

    gradients: torch.Tensor
    underflow: float
    subnormal: float
    overflow: float


def logit_gradients(log2_tokens: int) -> torch.Tensor:
    """The logits' gradients of :func:`gpt_gradients` as a batch of 2^k tokens would have them.

    The gradient of the mean loss over n tokens with respect to a logit is
    (softmax - one-hot) / n, so the same predictions in a larger batch give the same gradients
    divided by the number of tokens (exactly, for a power of two)."""
    return gpt_gradients()["logits"] * (_BATCH_TOKENS / 2.0**log2_tokens)


_BATCH_TOKENS = 16 * 64  # the tokens of gpt_gradients's batch


def _cast(*, log2_scale, log2_tokens):
    gradients = logit_gradients(log2_tokens)
    s = cast_statistics(gradients, torch.float16, 2.0**log2_scale)
    return ScaledCast(gradients, s.underflow, s.subnormal, s.overflow)


def _draw(fig, result, *, log2_scale, log2_tokens):
    ax = fig.subplots()
    bins = np.arange(-50, 20.5, 0.5)
    ax.set_yscale("log")
    ax.set_xlim(bins[0], bins[-1])
    ax.set_ylim(0.5, 1e5)
    ax.set_xlabel("log₂ |g| of the float32 gradient entries (logits)")
    ax.set_ylabel("entries")
    ax.grid(alpha=0.3)
    fp16 = FLOAT_FORMATS["float16"]
    edges = {
        "underflow": np.log2(fp16.smallest_subnormal / 2),
        "normal": np.log2(fp16.smallest_normal),
        "max": np.log2(fp16.max),
    }
    counts, _ = np.histogram(np.log2(result.gradients[result.gradients != 0].abs().numpy()), bins)
    hist = ax.stairs(counts, bins, fill=True, color="C0", alpha=0.7)
    lost = ax.axvspan(0, 1, color="C3", alpha=0.15)
    sub = ax.axvspan(0, 1, color="C1", alpha=0.12)
    over = ax.axvspan(0, 1, color="C3", alpha=0.15)
    labels = [
        ax.text(0, 4e4, "→ 0 ", color="C3", ha="right", va="top", fontsize=8, clip_on=True),
        ax.text(0, 4e4, "subnormal", color="C1", ha="center", va="top", fontsize=8, clip_on=True),
        ax.text(0, 4e4, " → inf", color="C3", ha="left", va="top", fontsize=8, clip_on=True),
    ]
    title = moving_title(ax)
    legend = ax.legend(
        [lost, sub],
        ["lost in float16 (0 or inf)", "subnormal in float16: fewer bits"],
        loc="upper left",
        fontsize=8,
    )
    # A full draw puts the grid (z-order 1.5) between the bars and bands (1) and the legend
    # (5) above them all; the frozen path must stack them the same way, or the figure would
    # change colour after the first move.
    for patch in (hist, lost, sub, over):
        patch.set_zorder(1.6)
    background = FrozenBackground(fig, [ax])
    dynamic = [hist, lost, sub, over, *labels, title, legend]
    state = {"first": True}

    def update(result, *, log2_scale, log2_tokens):
        if state["first"]:
            state["first"] = False
        elif background.image is None:
            background.capture(dynamic)
            freeze_on_top(fig, [legend])
        g = result.gradients
        counts, _ = np.histogram(np.log2(g[g != 0].abs().numpy()), bins)
        hist.set_data(counts)
        # S · g is what is cast, so in terms of g the float16 thresholds sit at threshold / S.
        u, n, m = (edges[k] - log2_scale for k in ("underflow", "normal", "max"))
        lost.set_x(bins[0] - 60)
        lost.set_width(u - bins[0] + 60)
        sub.set_x(u)
        sub.set_width(n - u)
        over.set_x(m)
        over.set_width(60)
        labels[0].set_x(u)
        labels[1].set_x((u + n) / 2)
        labels[2].set_x(m)
        title.set_text(
            f"{2**log2_tokens:,} tokens per batch, S = 2^{log2_scale}: "
            f"{result.underflow:.1%} → 0, {result.subnormal:.1%} subnormal, "
            f"{result.overflow:.1%} → inf"
        )

    update(result, log2_scale=log2_scale, log2_tokens=log2_tokens)
    return update


@demo_factory
def loss_scale_demo() -> Demo:
    """The float32 gradients of a small GPT's logits, as a batch of 2^k tokens gives them, as a
    histogram of log₂|g|, with the ranges where S · g underflows to zero, is subnormal or
    overflows in float16, for a loss scale S = 2^j; sliders set k and j."""
    return Demo(
        _cast,
        _draw,
        [
            Slider("log2_scale", 0, 24, 0, integer=True, label="log₂ of the loss scale S"),
            Slider("log2_tokens", 10, 22, 19, integer=True, label="log₂ of the tokens per batch"),
        ],
        figsize=(9.0, 4.0),
        alt=(
            "A histogram of the base-2 exponents of the float32 gradients of a small GPT's "
            "logits, with shaded bands where, after multiplying by the loss scale S and casting "
            "to float16, an entry would round to zero, become subnormal or overflow to "
            "infinity; the title gives the fraction of entries in each band. The sliders set "
            "log₂ S and the number of tokens in the batch, which divides every gradient."
        ),
    )
