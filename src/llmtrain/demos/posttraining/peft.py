"""Demos of the parameter-efficient fine-tuning chapter: NF4's block size, the memory of
full fine-tuning, LoRA and QLoRA, and LoRA's rank and α on the book's model."""

from __future__ import annotations

import numpy as np
import torch

from ...posttraining import (
    FINETUNE_PRESETS,
    LORA_SWEEP_ALPHAS,
    LORA_SWEEP_CONFIG,
    LORA_SWEEP_RANKS,
    base_model,
    dequantize_nf4,
    finetune_memory,
    lora_sweep,
    make_examples,
    nf4_constant_bits,
    nf4_levels,
    quantize_nf4,
)
from ..demo import Demo, Slider, demo_factory

__all__ = ["finetune_memory_demo", "lora_rank_demo", "nf4_block_demo"]

LOG2_BLOCKS = range(4, 13)  # block sizes 16 ... 4096
SIGMA = 0.02  # the standard deviation of GPT-2's initialisation


def gaussian_weights(rows: int = 256, cols: int = 256, seed: int = 0) -> torch.Tensor:
    """A weight matrix like a pretrained one: normal with σ = 0.02 and a few outliers (one
    value in a thousand drawn ten times wider), which set the absmax of their blocks."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * SIGMA
    outliers = torch.rand(rows, cols, generator=g) < 1e-3
    return torch.where(outliers, 10 * w, w)


def nf4_block_sweep(w: torch.Tensor) -> dict:
    """For every block size of the demo: the relative RMS error of NF4 on ``w`` and the bits
    per parameter of NF4 with and without double quantisation."""
    sizes = [2**k for k in LOG2_BLOCKS]
    errors = []
    for b in sizes:
        codes, absmax = quantize_nf4(w, b)
        w_hat = dequantize_nf4(codes, absmax, w.shape, b)
        errors.append(float((w_hat - w).square().mean().sqrt() / w.std()))
    return {
        "sizes": sizes,
        "error": errors,
        "bits": [4 + nf4_constant_bits(b, double_quant=False) for b in sizes],
        "bits_dq": [4 + nf4_constant_bits(b, double_quant=True) for b in sizes],
    }


_W = gaussian_weights()
_SWEEP = nf4_block_sweep(_W)


def _nf4_compute(*, log2_block):
    b = 2 ** int(log2_block)
    absmax = quantize_nf4(_W, b)[1]
    i = int(absmax.argmin())  # the block with the smallest absmax: no outlier in it
    j = int(absmax.argmax())  # the block with an outlier
    return {"block": b, "calm": float(absmax[i]), "outlier": float(absmax[j])}


def _nf4_draw(fig, result, **values):
    ax_levels, ax_error = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    w = _W.reshape(-1).numpy()
    ax_levels.hist(w, bins=np.linspace(-0.12, 0.12, 121), color="0.75", density=True)
    q = nf4_levels().numpy()
    calm = ax_levels.vlines(
        np.zeros(16), 0, 1, color="C0", lw=1.2, label="levels, block without outlier"
    )
    wide = ax_levels.vlines(
        np.zeros(16), 0, 1, color="C3", lw=1.2, ls=":", label="levels, block with an outlier"
    )
    ax_levels.set_xlim(-0.12, 0.12)
    top = ax_levels.get_ylim()[1]
    ax_levels.set_xlabel("weight value")
    ax_levels.set_yticks([])
    ax_levels.legend(loc="upper left", fontsize=8, frameon=False)

    sizes = _SWEEP["sizes"]
    ax_error.plot(sizes, _SWEEP["error"], "o-", color="C0", ms=3, label="relative RMS error")
    ax_error.set_xscale("log", base=2)
    ax_error.set_xlabel("block size")
    ax_error.set_ylabel("RMS error / σ of the weights", color="C0")
    ax_bits = ax_error.twinx()
    ax_bits.plot(sizes, _SWEEP["bits"], "s-", color="C1", ms=3, label="bits / param")
    ax_bits.plot(sizes, _SWEEP["bits_dq"], "^-", color="C2", ms=3, label="with double quant.")
    ax_bits.set_ylabel("bits per parameter")
    ax_bits.legend(loc="upper center", fontsize=8, frameon=False)
    marker = ax_error.axvline(sizes[0], color="k", lw=1, ls="--")
    title = fig.suptitle("", fontsize=10)

    def update(result, *, log2_block):
        b = result["block"]
        for lines, c in ((calm, result["calm"]), (wide, result["outlier"])):
            lines.set_segments([[(x, 0), (x, top)] for x in q * c])
        marker.set_xdata([b, b])
        k = list(sizes).index(b)
        title.set_text(
            f"block size {b}: error {_SWEEP['error'][k]:.3f} σ, "
            f"{_SWEEP['bits'][k]:.3f} bits/param ({_SWEEP['bits_dq'][k]:.3f} double-quantised)"
        )

    update(result, **values)
    return update


@demo_factory
def nf4_block_demo() -> Demo:
    """NF4 on a normal weight matrix with rare outliers: the 16 levels of two blocks, the
    quantisation error and the bits per parameter, as the block size changes."""
    return Demo(
        _nf4_compute,
        _nf4_draw,
        [Slider("log2_block", 4, 12, 6, integer=True, label="log₂ of the block size")],
        figsize=(10.0, 3.6),
        alt=(
            "Left: a histogram of the values of a normal weight matrix with σ = 0.02 and the 16 "
            "NF4 levels of two blocks, one without and one with an outlier, as vertical lines. "
            "Right: the relative quantisation error and the bits per parameter, with and without "
            "double quantisation, against the block size, with a dashed line at the chosen size."
        ),
    )


METHODS = ("full", "lora", "qlora")
METHOD_LABELS = ("full fine-tuning", "LoRA (16-bit base)", "QLoRA (NF4 base)")
PRESET_NAMES = list(FINETUNE_PRESETS)
PARTS = ("weights", "constants", "adapters", "gradients", "optimizer")
LABELS = ("weights", "NF4 constants", "LoRA A, B", "gradients", "optimizer state")
GPUS = (24, 48, 80)


def _memory_compute(*, preset, method, log2_rank):
    return finetune_memory(
        PRESET_NAMES[int(preset)], METHODS[int(method)], r=2 ** int(log2_rank), matrices="all"
    )


def _memory_draw(fig, result, **values):
    ax = fig.subplots()
    bars = [ax.barh([0], [0], left=[0], height=0.6, color=f"C{i}")[0] for i in range(5)]
    for gb in GPUS:
        ax.axvline(gb, color="k", linestyle="--", linewidth=1)
        ax.text(gb, -0.45, f"{gb} GB ", va="bottom", ha="right", rotation=90, fontsize=7)
    ax.set_yticks([])
    ax.set_ylim(-0.5, 0.9)
    ax.set_xlabel("memory (GB), activations not included")
    ax.grid(axis="x", alpha=0.3)
    legend = ax.legend(
        bars, LABELS, ncols=5, loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=8, frameon=False
    )
    title = ax.text(1.0, 0.93, "", transform=ax.transAxes, ha="right", va="top", fontsize=10)

    def update(result, *, preset, method, log2_rank):
        gb = [getattr(result, part) / 1e9 for part in PARTS]
        left = 0.0
        for bar, x, label, text in zip(bars, gb, LABELS, legend.get_texts(), strict=True):
            bar.set_x(left)
            bar.set_width(x)
            text.set_text(f"{label} {x:,.1f} GB")
            left += x
        ax.set_xlim(0, max(100.0, 1.08 * left))
        rank = "" if METHODS[int(method)] == "full" else f", r = {2 ** int(log2_rank)} on all"
        title.set_text(
            f"{PRESET_NAMES[int(preset)]}, {METHOD_LABELS[int(method)]}{rank}: "
            f"{result.total / 1e9:,.1f} GB, {result.trainable / 1e6:,.1f}M trainable"
        )

    update(result, **values)
    return update


@demo_factory
def finetune_memory_demo() -> Demo:
    """:func:`llmtrain.posttraining.finetune_memory`: the memory of full fine-tuning, LoRA and
    QLoRA of models from 7B to 175B, by part, against 24, 48 and 80 GB GPUs."""
    return Demo(
        _memory_compute,
        _memory_draw,
        [
            Slider(
                "preset",
                0,
                len(PRESET_NAMES) - 1,
                PRESET_NAMES.index("LLaMA 65B"),
                integer=True,
                label="model (Llama 2 7B ... LLaMA 65B)",
            ),
            Slider("method", 0, 2, 2, integer=True, label="method (0 full, 1 LoRA, 2 QLoRA)"),
            Slider("log2_rank", 1, 8, 6, integer=True, label="log₂ of the LoRA rank r"),
        ],
        figsize=(10.0, 3.0),
        alt=(
            "A horizontal stacked bar of the memory of fine-tuning a model with AdamW: weights, "
            "NF4 constants, LoRA matrices, gradients and optimizer state, in GB, against dashed "
            "lines at 24, 48 and 80 GB. The sliders choose the model, the method (full, LoRA, "
            "QLoRA) and the LoRA rank."
        ),
    )


N_TEST = 400  # the test prompts of the chapters: make_examples("test", 400, seed=1)


def _nearest(grid, value):
    """The grid value nearest to a slider's value (on a log scale: the ranks are 2, 8, 32)."""
    return min(grid, key=lambda v: abs(np.log(v) - np.log(value)))


def _rank_compute(*, rank, alpha, sweep, n_base):
    r, a = _nearest(LORA_SWEEP_RANKS, rank), _nearest(LORA_SWEEP_ALPHAS, alpha)
    return {"r": r, "alpha": a, "n_base": n_base, **sweep[r, a]}


def _rank_draw(fig, result, **values):
    ax = fig.subplots()
    tasks = list(result["accuracy"])
    x = np.arange(len(tasks) + 1)
    bars = ax.bar(x, np.zeros(len(x)), color=[f"C{i}" for i in range(len(tasks))] + ["0.4"])
    texts = [ax.text(i, 0, "", ha="center", va="bottom", fontsize=9) for i in x]
    ax.set_xticks(x, [t.replace("_", " ") for t in tasks] + ["all tasks"])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel(f"exact match ({N_TEST} test prompts)")
    ax.grid(axis="y", alpha=0.3)
    title = ax.set_title("", fontsize=10)

    def update(result, **values):
        heights = [result["accuracy"][t] for t in tasks] + [result["overall"]]
        for bar, text, h in zip(bars, texts, heights, strict=True):
            bar.set_height(h)
            text.set_position((bar.get_x() + bar.get_width() / 2, h + 0.01))
            text.set_text(f"{100 * h:.0f}%")
        n = result["trainable"]
        title.set_text(
            f"LoRA r = {result['r']}, α = {result['alpha']:g} (scale α/r = "
            f"{result['alpha'] / result['r']:g}): {n:,} trained parameters, "
            f"{100 * n / result['n_base']:.1f}% of the model's {result['n_base']:,}"
        )

    update(result, **values)
    return update


@demo_factory
def lora_rank_demo() -> Demo:
    """LoRA on the book's model (:func:`llmtrain.posttraining.lora_sweep`): exact match
    per task after the short runs of :data:`~llmtrain.posttraining.LORA_SWEEP_CONFIG`, and
    the trained parameters, for ranks r = 2, 8, 32 and α = 8, 32. Every run of the grid is
    trained (or loaded from the cache) when the demo is made, so that moving a slider only
    looks a result up."""
    sweep = lora_sweep(make_examples("test", N_TEST, seed=1))
    n_base = base_model()[0].num_parameters()
    return Demo(
        _rank_compute,
        _rank_draw,
        [
            # Steps of a factor 4 (log10 4 on the log slider) and of 24: only the grid's values.
            Slider("rank", 2, 32, 32, step=float(np.log10(4)), scale="log", label="LoRA rank r"),
            Slider("alpha", 8, 32, 32, step=24, label="α"),
        ],
        fixed={"sweep": sweep, "n_base": n_base},
        figsize=(9.0, 3.6),
        alt=(
            "Bars of the exact match of LoRA fine-tuning of the book's model on each task of the "
            "task world (reverse, capitals, length, first letter) and on all tasks, after "
            f"{LORA_SWEEP_CONFIG.max_iters} updates, with the rank, α, the scale α/r and the "
            "number of trained parameters in the title. The sliders choose the rank r (2, 8 or "
            "32) and α (8 or 32)."
        ),
        static_points=3,
        static_note="each position is a fine-tuning run, and the grid holds all six",
    )
