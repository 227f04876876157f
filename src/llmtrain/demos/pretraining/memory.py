"""Demos of the memory chapter: the training-memory calculator against one 80 GB GPU."""

from __future__ import annotations

from ...pretraining import MODEL_PRESETS, training_memory
from ..demo import Demo, Slider, demo_factory

__all__ = ["PRESET_NAMES", "memory_demo"]

PRESET_NAMES = list(MODEL_PRESETS)  # ordered by size, GPT-2 small first
RECOMPUTE = ("none", "selective", "full")
PARTS = ("parameters", "gradients", "optimizer", "activations")
LABELS = ("weights", "gradients", "optimizer state", "activations")
GPU_GB = 80.0


def _compute(*, preset, seq_len, micro_batch, zero_stage, dp_log2, recompute):
    return training_memory(
        PRESET_NAMES[int(preset)],
        int(seq_len),
        int(micro_batch),
        zero_stage=int(zero_stage),
        dp_degree=2 ** int(dp_log2),
        recompute=RECOMPUTE[int(recompute)],
    )


def _draw(fig, result, **values):
    ax = fig.subplots()
    bars = [ax.barh([0], [0], left=[0], height=0.6, color=f"C{i}")[0] for i in range(4)]
    ax.axvline(GPU_GB, color="k", linestyle="--", linewidth=1.2)
    ax.text(GPU_GB, 0.42, " one 80 GB GPU", va="bottom", fontsize=9)
    ax.set_yticks([])
    ax.set_ylim(-0.5, 0.9)
    ax.set_xlabel("memory per GPU (GB)")
    ax.grid(axis="x", alpha=0.3)
    legend = ax.legend(bars, LABELS, ncols=4, loc="lower left", bbox_to_anchor=(0, 1.0),
                       fontsize=9, frameon=False)  # fmt: skip
    title = ax.text(1.0, 0.93, "", transform=ax.transAxes, ha="right", va="top", fontsize=10)

    def update(result, *, preset, zero_stage, dp_log2, recompute, **_):
        gb = [getattr(result, part) / 1e9 for part in PARTS]
        left = 0.0
        for bar, x, label, text in zip(bars, gb, LABELS, legend.get_texts(), strict=True):
            bar.set_x(left)
            bar.set_width(x)
            text.set_text(f"{label} {x:,.1f} GB")
            left += x
        ax.set_xlim(0, max(100.0, 1.08 * left))
        total = result.total / 1e9
        verdict = "fits" if total <= GPU_GB else f"needs {total / GPU_GB:.1f}x"
        title.set_text(
            f"{PRESET_NAMES[int(preset)]}, ZeRO-{int(zero_stage)} on {2 ** int(dp_log2)} GPUs, "
            f"recompute {RECOMPUTE[int(recompute)]}: {total:,.1f} GB ({verdict})"
        )

    update(result, **values)
    return update


@demo_factory
def memory_demo() -> Demo:
    """:func:`llmtrain.pretraining.training_memory` for the published models: the memory one
    GPU needs in mixed-precision AdamW, by part, against an 80 GB GPU."""
    return Demo(
        _compute,
        _draw,
        [
            Slider(
                "preset",
                0,
                len(PRESET_NAMES) - 1,
                0,
                integer=True,
                label="model (GPT-2 small ... GPT-3 175B)",
            ),
            Slider("zero_stage", 0, 3, 0, integer=True, label="ZeRO stage"),
            Slider(
                "recompute", 0, 2, 0, integer=True, label="recompute (0 none, 1 selective, 2 full)"
            ),
            Slider("seq_len", 256, 8192, 1024, step=256, integer=True, label="sequence length s"),
            Slider("micro_batch", 1, 32, 4, integer=True, label="micro-batch b"),
            Slider("dp_log2", 0, 10, 3, integer=True, label="log₂ of data-parallel GPUs N_d"),
        ],
        figsize=(10.0, 3.0),
        alt=(
            "A horizontal stacked bar of the memory one GPU needs to train a model in "
            "mixed-precision AdamW: weights, gradients, optimizer state and activations, in GB, "
            "against a dashed line at 80 GB. The sliders choose the model, the ZeRO stage, the "
            "recomputation, the sequence length, the micro-batch and the number of GPUs."
        ),
    )
