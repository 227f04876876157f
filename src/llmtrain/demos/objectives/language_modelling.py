"""Demos of the autoregressive language-modelling chapter."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from ..._threads import one_torch_thread
from ...objectives import DEFAULT_SOURCE, CharVocab, generate, train_bigram_lm
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground

__all__ = ["bigram_training_demo"]


@lru_cache(maxsize=64)
def _train(lr, batch_size, momentum, steps, length, seed):
    return train_bigram_lm(
        lr=lr, batch_size=batch_size, momentum=momentum, steps=steps, length=length, seed=seed
    )


def _run(*, lr, batch_size, momentum, steps, length, seed):
    return _train(float(lr), int(batch_size), float(momentum), steps, length, seed)


_SAMPLES: dict = {}  # id(run) -> (run, sample): a cached run is not sampled again


def _sample(run, n_chars: int = 90) -> str:
    entry = _SAMPLES.get(id(run))
    if entry is not None and entry[0] is run:
        return entry[1]
    vocab = CharVocab(DEFAULT_SOURCE.alphabet)
    prompt = vocab.encode("t")[None]
    with one_torch_thread():
        text = vocab.decode(generate(run.model, prompt, n_chars - 1, seed=0)[0])
    if len(_SAMPLES) >= 128:
        _SAMPLES.clear()
    _SAMPLES[id(run)] = (run, text)
    return text


def _learned(run) -> np.ndarray:
    return torch.softmax(run.model.W.detach().to(torch.float64), -1).numpy()


def _draw(fig, run, *, steps, **_):
    loss_ax, table_ax = fig.subplots(1, 2, width_ratios=[1.5, 1])
    (batch_curve,) = loss_ax.plot([], [], color="C0", alpha=0.35, linewidth=0.8)
    (pop_curve,) = loss_ax.plot([], [], color="C0", linewidth=1.8)
    loss_ax.axhline(run.uniform_loss, color="C3", linestyle="--", linewidth=1)
    loss_ax.axhline(run.entropy_rate, color="C2", linestyle="--", linewidth=1)
    loss_ax.text(
        steps,
        run.uniform_loss,
        "ln V (uniform model) ",
        color="C3",
        ha="right",
        va="bottom",
        fontsize=8,
    )
    loss_ax.text(
        steps,
        run.entropy_rate,
        "entropy rate (best possible) ",
        color="C2",
        ha="right",
        va="top",
        fontsize=8,
    )
    loss_ax.set_xlim(0, steps)
    loss_ax.set_ylim(run.entropy_rate - 0.3, run.uniform_loss + 0.5)
    loss_ax.set_xlabel("step t")
    loss_ax.set_ylabel("loss (nats per character)")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(
        [batch_curve, pop_curve], ["minibatch loss", "expected loss"], fontsize=8, loc="lower left"
    )
    # A plain text rather than an axes title: a title moves itself on every draw.
    title = loss_ax.text(0.5, 1.02, "", transform=loss_ax.transAxes, ha="center", va="bottom")
    title.set_fontsize(10)

    image = table_ax.imshow(_learned(run), vmin=0.0, vmax=1.0, cmap="Blues")
    # Label a few characters only: every tick label is drawn again on each slider move.
    shown = [i for i, c in enumerate(DEFAULT_SOURCE.alphabet) if c in " .aeiot"]
    labels = [
        "␣" if DEFAULT_SOURCE.alphabet[i] == " " else DEFAULT_SOURCE.alphabet[i] for i in shown
    ]
    table_ax.set_xticks(shown, labels, fontsize=8)
    table_ax.set_yticks(shown, labels, fontsize=8)
    table_ax.set_xlabel("next character")
    table_ax.set_ylabel("current character")
    table_ax.set_title("learned p_θ(next | current)", fontsize=10)
    sample = fig.supxlabel("", fontsize=8, family="monospace")

    # Axes, ticks, labels, reference lines and legend never change: after the first move they
    # are drawn once into a background image, and a move redraws only what it changes.
    background = FrozenBackground(fig, [loss_ax, table_ax])
    dynamic = [batch_curve, pop_curve, image, title, sample, *table_ax.spines.values()]
    state = {"first": True}

    def update(run, *, steps, **_):
        if state["first"]:
            state["first"] = False
        elif background.image is None:
            background.capture(dynamic)
        batch_curve.set_data(np.arange(len(run.losses)), run.losses)
        pop_curve.set_data(np.arange(len(run.population_losses)), run.population_losses)
        image.set_data(_learned(run))
        final = run.population_losses[-1]
        if run.diverged_at is not None:
            title.set_text(f"diverged at step {run.diverged_at}: the loss blew up")
        else:
            title.set_text(
                f"final expected loss {final:.3f} nats = {final / np.log(2):.2f} bits per character"
            )
        text = "diverged" if run.diverged_at is not None else _sample(run)
        sample.set_text(f"sample: {text}")

    loss_ax.yaxis.set_major_locator(MaxNLocator(5))
    loss_ax.xaxis.set_major_locator(MaxNLocator(5))
    update(run, steps=steps)
    return update


@demo_factory
def bigram_training_demo(steps: int = 100, length: int = 32, seed: int = 0) -> Demo:
    """A bigram language model trained on the synthetic corpus with
    :class:`llmtrain.optim.SGD` (:func:`llmtrain.objectives.train_bigram_lm`), with sliders
    for the learning rate, the batch size and the momentum: its loss against ln V and the
    entropy rate, the learned table of next-character probabilities and a sample."""
    return Demo(
        _run,
        _draw,
        [
            Slider("lr", 0.01, 300.0, 10.0, scale="log", label="learning rate α"),
            Slider("batch_size", 1, 64, 16, integer=True, label="batch size B"),
            Slider("momentum", 0.0, 0.99, 0.5, step=0.01, label="momentum μ"),
        ],
        fixed={"steps": steps, "length": length, "seed": seed},
        figsize=(10.0, 4.2),
        alt=(
            "Left: the loss of a bigram language model against the step, per minibatch (faint) "
            "and expected (thick), between the uniform level ln V and the entropy rate (dashed); "
            "right: the learned table of next-character probabilities as a heat map; below, a "
            "sample of generated text. The sliders set the learning rate, the batch size and the "
            "momentum."
        ),
    )
