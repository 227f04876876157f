"""The size of a GPT as formulas: its number of parameters and its FLOPs per token.

Both are functions of the :class:`~llmtrain.pretraining.GPTConfig` alone, so they can be
evaluated for models far too large to build (GPT-2, GPT-3); the tests check them against the
parameters of a built model and against PyTorch's count of its matrix multiplications.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .._checks import check_int
from .gpt import GPTConfig

__all__ = ["FlopsPerToken", "ParameterCount", "flops_per_token", "parameter_count"]


@dataclass(frozen=True)
class ParameterCount:
    """The parameters of a GPT, by where they sit. Each field is a number of scalars."""

    token_embedding: int  # V d
    position_embedding: int  # T_ctx d with learned positions, 0 with RoPE
    attention: int  # all L layers: Q, K, V and output projections (and their biases)
    mlp: int  # all L layers
    norms: int  # 2L + 1 norms: gains (and LayerNorm biases)
    unembedding: int  # V d if untied, 0 if tied to the token embedding

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    @property
    def non_embedding(self) -> int:
        """N of Kaplan et al. (2020): all but the token and position embeddings (an untied
        unembedding is counted in N)."""
        return self.total - self.token_embedding - self.position_embedding


def parameter_count(config: GPTConfig) -> ParameterCount:
    """The number of parameters of ``GPT(config)``, from the formula.

    With d = ``n_embd``, L = ``n_layer``, h the MLP's hidden width, β = 1 with biases and 0
    without, one layer has 4d² + 4βd parameters in attention, (2 or 3)·d h + β(h or 2h) + βd
    in the MLP (GELU or SwiGLU), and 2 norms of (1 + β)d (LayerNorm) or d (RMSNorm).
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    d, L, V, h = config.n_embd, config.n_layer, config.vocab_size, config.mlp_hidden
    β = int(config.bias)
    attention = 4 * d * d + 4 * β * d  # c_attn: d x 3d; c_proj: d x d
    if config.mlp == "gelu":
        mlp = 2 * d * h + β * (h + d)  # c_fc: d x h; c_proj: h x d
    else:
        mlp = 3 * d * h + β * (2 * h + d)  # c_fc: d x 2h (gate and value); c_proj: h x d
    norm = d if config.norm == "rmsnorm" else (1 + β) * d
    return ParameterCount(
        token_embedding=V * d,
        position_embedding=config.block_size * d if config.position == "learned" else 0,
        attention=L * attention,
        mlp=L * mlp,
        norms=(2 * L + 1) * norm,
        unembedding=0 if config.tie_embeddings else V * d,
    )


@dataclass(frozen=True)
class FlopsPerToken:
    """Floating-point operations of the matrix multiplications of one token's forward pass,
    2 per multiply-add, by where they happen."""

    projections: int  # Q, K, V and output projections: 2 · 4d² per layer
    attention: int  # Q Kᵀ and the weighted sum of V: 2 · 2 T d per layer
    mlp: int  # 2 · (2 or 3) d h per layer
    unembedding: int  # 2 V d

    @property
    def forward(self) -> int:
        return self.projections + self.attention + self.mlp + self.unembedding

    @property
    def training(self) -> int:
        """Forward and backward: the backward pass multiplies each matrix twice (once for the
        gradient of its input, once for that of its weights), so 3 times the forward."""
        return 3 * self.forward


def flops_per_token(config: GPTConfig, context: int | None = None) -> FlopsPerToken:
    """The FLOPs per token of the matrix multiplications of ``GPT(config)`` reading sequences
    of ``context`` tokens (default ``block_size``), with attention computed densely over the
    full T x T score matrix, as ``scaled_dot_product_attention`` and the written-out attention
    both do (the causal mask zeroes half of it after the fact).

    Left out, because they are not matrix multiplications and are O(d) or O(T) per token
    against the O(d²) and O(T d) kept: the embedding lookups, biases, norms, activations,
    RoPE, the softmax and the mask. In terms of the non-embedding parameter count N of a model
    with tied embeddings, this is 2N + 4 L T d + 2 V d up to those terms. Kaplan et al. (2020,
    Table 1) write 2N + 2 L T d: a single attention term, half the dense one (what attending
    only to the T/2 keys a causal query sees on average would cost; the paper does not say),
    and the unembedding's 2 V d left out of the total.
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    T = config.block_size if context is None else check_int("context", context, 1)
    d, L, V, h = config.n_embd, config.n_layer, config.vocab_size, config.mlp_hidden
    return FlopsPerToken(
        projections=L * 2 * 4 * d * d,
        attention=L * 2 * 2 * T * d,
        mlp=L * 2 * (2 if config.mlp == "gelu" else 3) * d * h,
        unembedding=2 * V * d,
    )
