"""Demos of the chapter on encoder objectives: BERT's masking, and MLM against causal LM."""

from __future__ import annotations

import numpy as np

from ...objectives import compare_objectives, mask_tokens
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground
from ..token_text import PASSAGE, STYLES, TokenText, WordVocab

__all__ = ["mlm_masking_demo", "objective_comparison_demo"]

_VOCAB = WordVocab()
_IDS = _VOCAB.encode(PASSAGE)
_MASK = _VOCAB.id("[MASK]")


def _mask(p_mask: float, seed: int):
    x̃, labels = mask_tokens(
        _IDS, vocab_size=len(_VOCAB), mask_id=_MASK, mlm_probability=p_mask, generator=seed
    )
    selected = labels != -100
    kinds = np.where(
        ~selected.numpy(),
        "plain",
        np.where((x̃ == _MASK).numpy(), "mask", np.where((x̃ == _IDS).numpy(), "same", "random")),
    )
    return [_VOCAB.token(int(i)) for i in x̃], list(kinds)


def _legend(fig, y):
    x = 0.02
    for kind, name in (
        ("mask", "[MASK] (80%)"),
        ("random", "random token (10%)"),
        ("same", "selected, unchanged (10%)"),
    ):
        fig.text(
            x,
            y,
            name,
            fontsize=9,
            va="top",
            bbox=dict(boxstyle="square,pad=0.15", facecolor=STYLES[kind], lw=0),
        )
        x += 0.065 + 0.0095 * len(name)


def _draw_mask(fig, result, *, p_mask, seed):
    tokens, _kinds = result
    fig.subplots().set_axis_off()  # an empty axes gives the layout engine something to lay out
    fig.text(
        0.02, 0.96, "corrupted input x̃ (BERT's masking rule)", fontsize=10, va="top", weight="bold"
    )
    text = TokenText(fig, len(tokens), x0=0.02, y0=0.82, x1=0.98, columns=90, line_height=0.12)
    _legend(fig, 0.19)
    counts = fig.text(0.02, 0.07, "", fontsize=9, va="top")

    def update(result, *, p_mask, seed):
        tokens, kinds = result
        text.update(tokens, kinds)
        n = {k: kinds.count(k) for k in ("mask", "random", "same")}
        counts.set_text(
            f"selected {sum(n.values())} of {len(tokens)} "
            f"(expected {p_mask * len(tokens):.1f}): "
            f"{n['mask']} [MASK], {n['random']} random, {n['same']} unchanged"
        )

    update(result, p_mask=p_mask, seed=seed)
    return update


@demo_factory
def mlm_masking_demo() -> Demo:
    """BERT's masking rule (:func:`llmtrain.objectives.mask_tokens`) applied to a short
    passage, with sliders for the masking probability p_mask and the random seed."""
    return Demo(
        _mask,
        _draw_mask,
        [
            Slider("p_mask", 0.0, 1.0, 0.15, step=0.01, label="masking probability p_mask"),
            Slider("seed", 0, 50, 0, integer=True, label="seed"),
        ],
        figsize=(9.0, 2.4),
        alt=(
            "A short passage after BERT's masking rule, each selected token coloured by what "
            "became of it: replaced by [MASK], replaced by a random token, or left unchanged, "
            "with the counts below. The sliders set the masking probability and the random seed."
        ),
    )


def _compare(lr, batch_size, momentum, steps, seed):
    return compare_objectives(
        lr=lr, batch_size=batch_size, momentum=momentum, steps=steps, seed=seed
    )


def _draw_curves(fig, curves, *, lr, batch_size, momentum, steps, seed):
    ax = fig.subplots()
    t = np.arange(steps)
    (causal,) = ax.plot(t, curves.causal, color="C0", label="causal LM (causal mask)")
    (masked,) = ax.plot(t, curves.masked, color="C3", label="MLM (full mask, 15% masked)")
    ax.axhline(curves.entropy_rate, color="C0", ls="--", lw=1, label="causal floor (entropy rate)")
    ax.axhline(
        curves.bidirectional_entropy, color="C3", ls="--", lw=1, label="MLM floor (both neighbours)"
    )
    ax.axhline(curves.unigram_entropy, color="grey", ls=":", lw=1.2, label="no context (unigram)")
    ax.set_xlim(0, steps - 1)
    ax.set_ylim(0.0, 6.0)
    ax.set_xlabel("step t")
    ax.set_ylabel("training loss (nats per predicted token)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, ncol=2)

    # Axes, grid, floors and legend never change: after the first move they are drawn once
    # into a background image, and a move redraws the two curves only.
    background = FrozenBackground(fig, [ax])

    def update(curves, **params):
        if background.image is None:  # the first move: the layout is final by now
            background.capture([causal, masked])
        causal.set_ydata(curves.causal)
        masked.set_ydata(curves.masked)

    return update


@demo_factory
def objective_comparison_demo(steps: int = 80, seed: int = 0) -> Demo:
    """The same tiny transformer trained as a causal decoder and as a masked LM
    (:func:`llmtrain.objectives.compare_objectives`), with sliders for the learning rate α,
    the batch size B and the momentum μ of :class:`llmtrain.optim.SGD`."""
    return Demo(
        _compare,
        _draw_curves,
        [
            Slider("lr", 0.01, 1.0, 0.1, scale="log", step=0.25, label="learning rate α"),
            Slider("batch_size", 4, 64, 32, step=4, integer=True, label="batch size B"),
            Slider("momentum", 0.0, 0.95, 0.9, step=0.05, label="momentum μ"),
        ],
        fixed={"steps": steps, "seed": seed},
        figsize=(8.0, 3.4),
        alt=(
            "The training loss against the step of the same tiny transformer trained as a causal "
            "language model (blue) and as a masked language model (red), with each one's floor "
            "dashed and the no-context level dotted. The sliders set the learning rate α, the "
            "batch size B and the momentum μ."
        ),
        static_points=3,
        static_note="each position trains two small transformers",
    )
