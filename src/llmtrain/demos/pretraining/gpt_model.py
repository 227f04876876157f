"""Demo of the chapter on the GPT model: where the parameters and the FLOPs of a GPT go."""

from __future__ import annotations

import numpy as np

from ...pretraining import GPTConfig, flops_per_token, parameter_count
from ..demo import Demo, Slider, demo_factory
from ..plots import moving_title

__all__ = ["model_size_demo"]

#: Parts of the parameter count and of the forward FLOPs per token, in the order drawn.
PARAMETER_PARTS = ("embeddings", "attention", "MLP", "norms")
FLOP_PARTS = ("projections", "attention scores", "MLP", "unembedding")
#: Same colour, same weights: attention's projections are its parameters, and the
#: unembedding multiplies by the (tied) embedding matrix.
_COLORS = {
    "parameters": ("#7f8c8d", "#5dade2", "#e67e22", "#27ae60"),
    "flops": ("#5dade2", "#1b4f72", "#e67e22", "#7f8c8d"),
}


def model_size(*, n_embd: int, n_layer: int, block_size: int, vocab_size: int):
    """Shares of the parameters and of the forward FLOPs per token of a GPT-2-shaped model
    (biases, learned positions, tied embeddings), and the two totals."""
    config = GPTConfig(
        vocab_size=vocab_size,
        block_size=block_size,
        n_layer=n_layer,
        n_head=1,  # the counts do not depend on the number of heads
        n_embd=n_embd,
        bias=True,
    )
    N, F = parameter_count(config), flops_per_token(config)
    parameters = np.array(
        [N.token_embedding + N.position_embedding + N.unembedding, N.attention, N.mlp, N.norms]
    )
    flops = np.array([F.projections, F.attention, F.mlp, F.unembedding])
    return {
        "parameters": parameters / parameters.sum(),
        "flops": flops / flops.sum(),
        "total": N.total,
        "non_embedding": N.non_embedding,
        "forward": F.forward,
    }


def _draw(fig, result, **params):
    ax = fig.subplots()
    bars = []
    for row, (key, names) in enumerate((("flops", FLOP_PARTS), ("parameters", PARAMETER_PARTS))):
        left = np.concatenate(([0.0], np.cumsum(result[key])[:-1]))
        group = ax.barh(
            [row] * 4, result[key], left=left, color=_COLORS[key], edgecolor="white", height=0.6
        )
        labels = [
            ax.text(0, row, "", ha="center", va="center", fontsize=8, color="white") for _ in names
        ]
        bars.append((key, names, group, labels))
    ax.set_yticks([0, 1], ["forward FLOPs\nper token", "parameters"])
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.5, 1.5)
    ax.set_xlabel("share of the total")
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    title = moving_title(ax)

    def update(result, **params):
        for key, names, group, labels in bars:
            left = 0.0
            for bar, label, name, share in zip(group, labels, names, result[key], strict=True):
                bar.set_x(left)
                bar.set_width(share)
                label.set_position((left + share / 2, bar.get_y() + bar.get_height() / 2))
                label.set_text(f"{name}\n{share:.0%}" if share > 0.09 else "")
                left += share
        title.set_text(
            f"{result['total'] / 1e6:,.1f}M parameters ({result['non_embedding'] / 1e6:,.1f}M "
            f"non-embedding); {result['forward'] / 1e9:,.3f} GFLOPs per token forward"
        )

    update(result, **params)
    return update


@demo_factory
def model_size_demo():
    """Shares of the parameters and the forward FLOPs of a GPT as its width d_model, depth
    n_layer, context n_ctx and vocabulary V change (defaults: GPT-2 small)."""
    return Demo(
        model_size,
        _draw,
        [
            Slider("n_embd", 64, 12288, 768, scale="log", integer=True, label="width d_model"),
            Slider("n_layer", 1, 96, 12, integer=True, label="depth n_layer"),
            Slider(
                "block_size", 64, 131072, 1024, scale="log", integer=True, label="context n_ctx"
            ),
            Slider(
                "vocab_size", 256, 262144, 50257, scale="log", integer=True, label="vocabulary V"
            ),
        ],
        figsize=(9.0, 2.8),
        alt=(
            "Two horizontal bars of shares: a GPT's parameters split into embeddings, attention, "
            "MLP and norms, and its forward FLOPs per token split into projections, attention "
            "scores, MLP and unembedding, with the totals in the title. The sliders set the "
            "width, the depth, the context length and the vocabulary size."
        ),
        static_main=("n_embd", "block_size", "vocab_size"),
    )
