"""How much memory training a GPT takes: model states, activations, and ZeRO's sharding.

Training keeps four things in memory: the weights, their gradients, the optimizer's state
(together the *model states*) and the *activations* that the forward pass saves for the
backward pass. The first three scale with the number of parameters Ψ, the last with the
tokens of a micro-batch. :func:`training_memory` adds them up for a model shape, a precision,
an optimizer, a recomputation strategy and a ZeRO stage; :func:`model_state_memory` follows
ZeRO's accounting (Rajbhandari et al., 2020) and :func:`activation_memory` the count of
Korthikanti et al. (2022). The two ``measure_*`` functions measure the same quantities on a
model that trains, which is how the tests check the formulas.

Shapes: s is the sequence length, b the micro-batch, h = d the width, a the number of heads,
f the MLP's hidden width, L the number of layers and V the vocabulary size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from .._checks import check_int
from ..optim.state_memory import OPTIMIZER_STATES
from .gpt import GPTConfig

__all__ = [
    "MODEL_PRESETS",
    "ActivationMemory",
    "MemoryBreakdown",
    "ModelShape",
    "activation_memory",
    "measure_model_states",
    "measure_saved_activations",
    "model_state_memory",
    "training_memory",
]

PRECISIONS = ("fp32", "mixed")
RECOMPUTE = ("none", "selective", "full")
ATTENTION = ("explicit", "fused")


@dataclass(frozen=True)
class ModelShape:
    """The shape of a decoder-only Transformer, as far as memory is concerned.

    Unlike :class:`~llmtrain.pretraining.GPTConfig` it can describe grouped-query attention
    (``n_kv_head`` < ``n_head``, Llama 2 70B and Llama 3) and any MLP width ``d_ff``, so that
    it holds the published models. :meth:`from_config` turns a GPTConfig into one.
    """

    n_layer: int
    n_embd: int
    n_head: int
    n_kv_head: int
    d_ff: int
    vocab_size: int
    n_ctx: int
    mlp: str = "gelu"  # "gelu": two matrices d x f; "swiglu": three
    bias: bool = True
    norm: str = "layernorm"
    position: str = "learned"
    tie_embeddings: bool = True

    @classmethod
    def from_config(cls, config: GPTConfig) -> ModelShape:
        """The shape of ``GPT(config)``."""
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        return cls(
            n_layer=config.n_layer,
            n_embd=config.n_embd,
            n_head=config.n_head,
            n_kv_head=config.n_head,
            d_ff=config.mlp_hidden,
            vocab_size=config.vocab_size,
            n_ctx=config.block_size,
            mlp=config.mlp,
            bias=config.bias,
            norm=config.norm,
            position=config.position,
            tie_embeddings=config.tie_embeddings,
        )

    @property
    def num_parameters(self) -> int:
        """Ψ, the number of parameters (a tied matrix counted once)."""
        d, f, β = self.n_embd, self.d_ff, int(self.bias)
        d_kv = self.n_kv_head * (d // self.n_head)  # width of the keys (and of the values)
        attention = d * (d + 2 * d_kv) + d * d + β * (2 * d + 2 * d_kv)
        if self.mlp == "gelu":
            mlp = 2 * d * f + β * (f + d)
        else:
            mlp = 3 * d * f + β * (2 * f + d)
        norm = d if self.norm == "rmsnorm" else (1 + β) * d
        embeddings = self.vocab_size * d * (1 if self.tie_embeddings else 2)
        positions = self.n_ctx * d if self.position == "learned" else 0
        return self.n_layer * (attention + mlp + 2 * norm) + norm + embeddings + positions


def _gpt2(n_layer, n_embd, n_head) -> ModelShape:
    # Radford et al. (2019), Table 2 and the released hyperparameters: V = 50257, 1024
    # positions, biases, LayerNorm, a GELU MLP of width 4d, tied embeddings.
    return ModelShape(n_layer, n_embd, n_head, n_head, 4 * n_embd, 50257, 1024)


def _llama_ffn(d: int, multiplier: float = 1.0, multiple_of: int = 256) -> int:
    """The MLP width of Meta's Llama reference code: 2/3 · 4d, times an optional multiplier,
    rounded up to a multiple of ``multiple_of``."""
    hidden = int(multiplier * int(2 * 4 * d / 3))
    return multiple_of * math.ceil(hidden / multiple_of)


def _llama(n_layer, n_embd, n_head, n_kv_head, d_ff, vocab_size, n_ctx) -> ModelShape:
    # RMSNorm, SwiGLU, RoPE, no biases, an untied output matrix.
    return ModelShape(
        n_layer, n_embd, n_head, n_kv_head, d_ff, vocab_size, n_ctx,
        mlp="swiglu", bias=False, norm="rmsnorm", position="rope", tie_embeddings=False,
    )  # fmt: skip


#: Published model shapes, from their papers and reference code (see the memory chapter).
MODEL_PRESETS: dict[str, ModelShape] = {
    "GPT-2 small (124M)": _gpt2(12, 768, 12),
    "GPT-2 medium (350M)": _gpt2(24, 1024, 16),
    "GPT-2 large (774M)": _gpt2(36, 1280, 20),
    "GPT-2 XL (1.5B)": _gpt2(48, 1600, 25),
    "Llama 2 7B": _llama(32, 4096, 32, 32, _llama_ffn(4096), 32000, 4096),
    "Llama 3 8B": _llama(32, 4096, 32, 8, _llama_ffn(4096, 1.3, 1024), 128256, 8192),
    "Llama 2 13B": _llama(40, 5120, 40, 40, _llama_ffn(5120), 32000, 4096),
    "Llama 2 70B": _llama(80, 8192, 64, 8, _llama_ffn(8192, 1.3, 4096), 32000, 4096),
    "Llama 3 70B": _llama(80, 8192, 64, 8, _llama_ffn(8192, 1.3, 4096), 128256, 8192),
    # Brown et al. (2020), Table 2.1: the GPT-2 design at 96 layers of width 12288.
    "GPT-3 175B": ModelShape(96, 12288, 96, 96, 4 * 12288, 50257, 2048),
}


def _shape(model) -> ModelShape:
    if isinstance(model, ModelShape):
        return model
    if isinstance(model, GPTConfig):
        return ModelShape.from_config(model)
    if isinstance(model, str):
        if model not in MODEL_PRESETS:
            raise ValueError(f"model must be one of {list(MODEL_PRESETS)}, got {model!r}")
        return MODEL_PRESETS[model]
    raise TypeError(
        f"model must be a preset name, a ModelShape or a GPTConfig, got {type(model).__name__}"
    )


def _choice(name: str, value, allowed: tuple) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def model_state_memory(
    n_params: int,
    *,
    precision: str = "mixed",
    optimizer: str = "adamw",
    zero_stage: int = 0,
    dp_degree: int = 1,
) -> tuple[float, float, float]:
    """Bytes per device of the weights, the gradients and the optimizer state of Ψ =
    ``n_params`` parameters, trained data-parallel on ``dp_degree`` devices.

    Implements :prf:ref:`alg-training-memory` (its model states).

    ``precision="fp32"``: 4 bytes per weight and per gradient, 4 per optimizer value.
    ``"mixed"``: 2 + 2 bytes of 16-bit weights and gradients, and an optimizer state of
    K bytes per parameter: a 4-byte fp32 master copy of the weights plus 4 bytes per
    optimizer value, K = 12 for Adam (Rajbhandari et al., 2020). ZeRO stage 1 shards the
    optimizer state over the ``dp_degree`` devices, stage 2 the gradients too, stage 3 the
    weights too; stage 0 is plain data parallelism, where every device holds everything.
    """
    check_int("n_params", n_params, 0)
    _choice("precision", precision, PRECISIONS)
    if optimizer not in OPTIMIZER_STATES or optimizer == "adafactor":
        allowed = tuple(k for k in OPTIMIZER_STATES if k != "adafactor")
        raise ValueError(f"optimizer must be one of {allowed}, got {optimizer!r}")
    zero_stage = check_int("zero_stage", zero_stage, 0, 3)
    N_d = check_int("dp_degree", dp_degree, 1)
    Ψ = n_params
    values = len(OPTIMIZER_STATES[optimizer])  # optimizer values per parameter
    if precision == "fp32":
        weight, grad, K = 4, 4, 4 * values
    else:
        weight, grad, K = 2, 2, 4 + 4 * values
    return (
        weight * Ψ / (N_d if zero_stage >= 3 else 1),
        grad * Ψ / (N_d if zero_stage >= 2 else 1),
        K * Ψ / (N_d if zero_stage >= 1 else 1),
    )


@dataclass(frozen=True)
class ActivationMemory:
    """Bytes of the activations saved for the backward pass of one micro-batch."""

    per_layer: float  # one Transformer layer
    layers: float  # all L layers
    output: float  # the final norm's and the unembedding's inputs, and the fp32 log-softmax

    @property
    def total(self) -> float:
        return self.layers + self.output


def activation_memory(
    model,
    seq_len: int,
    micro_batch: int,
    *,
    bytes_per_value: int = 2,
    dropout: bool = True,
    attention: str = "explicit",
    recompute: str = "none",
) -> ActivationMemory:
    """The activations a forward pass saves for the backward pass, counted tensor by tensor.

    Implements :prf:ref:`alg-training-memory` (its activations).

    Per layer, with p = ``bytes_per_value`` and m = 1 byte per dropout mask (0 without
    dropout), in units of s b: the inputs of the two norms 2ph, the input of the Q, K, V
    projection ph, the queries, keys and values p(h + 2 h_kv), the input of the output
    projection ph and its dropout mask mh, the MLP's input ph, its hidden values 2pf (GELU:
    the input and output of the activation) or 4pf (SwiGLU: gate and value, the activated gate
    and the product), and its dropout mask mh. Explicit attention also keeps the softmax's
    output (p a s), its dropout mask and dropped output ((m + p) a s with dropout); a fused
    kernel (FlashAttention, PyTorch's SDPA) keeps none of these, only statistics of size a s b.
    For a GPT-2 layer (f = 4h, h_kv = h) in 16 bits with dropout this is Korthikanti et al.'s
    s b h (34 + 5 a s / h). ``recompute="selective"`` recomputes the attention core, dropping
    its a s² terms; ``"full"`` keeps only each layer's input, p s b h. Terms of size s b (norm
    statistics, token ids) are left out. The output adds the final norm's and the
    unembedding's inputs, 2 p s b h, and the log-softmax of the loss in fp32, 4 s b V.
    """
    shape = _shape(model)
    s = check_int("seq_len", seq_len, 1)
    b = check_int("micro_batch", micro_batch, 1)
    p = check_int("bytes_per_value", bytes_per_value, 1)
    _choice("attention", attention, ATTENTION)
    _choice("recompute", recompute, RECOMPUTE)
    if not isinstance(dropout, bool):
        raise TypeError(f"dropout must be a bool, got {dropout!r}")
    h, a, f = shape.n_embd, shape.n_head, shape.d_ff
    h_kv = shape.n_kv_head * (h // a)
    m = 1 if dropout else 0
    if recompute == "full":
        per_token = p * h
    else:
        norms = 2 * p * h
        attn = p * h + p * (h + 2 * h_kv) + p * h + m * h
        hidden = (2 if shape.mlp == "gelu" else 4) * p * f
        mlp = p * h + hidden + m * h
        core = (p + (m + p if dropout else 0)) * a * s if attention == "explicit" else 0
        per_token = norms + attn + mlp + (core if recompute == "none" else 0)
    per_layer = float(s * b * per_token)
    output = float(s * b * (2 * p * h + 4 * shape.vocab_size))
    return ActivationMemory(per_layer, shape.n_layer * per_layer, output)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per device of each part of the memory of a training step."""

    parameters: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return sum(getattr(self, f.name) for f in fields(self))

    def gigabytes(self) -> dict[str, float]:
        """Each part and the total in GB (10⁹ bytes, as ZeRO reports them)."""
        parts = {f.name: getattr(self, f.name) / 1e9 for f in fields(self)}
        return {**parts, "total": self.total / 1e9}


def training_memory(
    model,
    seq_len: int,
    micro_batch: int,
    *,
    precision: str = "mixed",
    optimizer: str = "adamw",
    recompute: str = "none",
    zero_stage: int = 0,
    dp_degree: int = 1,
) -> MemoryBreakdown:
    """The memory one device needs to train ``model``: a name of ``MODEL_PRESETS``, a
    :class:`ModelShape` or a :class:`~llmtrain.pretraining.GPTConfig`.

    Implements :prf:ref:`alg-training-memory`.

    Model states from :func:`model_state_memory`, activations of one micro-batch of
    ``micro_batch`` sequences of ``seq_len`` tokens from :func:`activation_memory`, in 16 bits
    for ``precision="mixed"`` and 32 for ``"fp32"``, with explicit attention and dropout (the
    layer Korthikanti et al. count). ZeRO shards model states only; every device keeps the
    activations of its own micro-batch.
    """
    shape = _shape(model)
    weights, grads, states = model_state_memory(
        shape.num_parameters,
        precision=precision,
        optimizer=optimizer,
        zero_stage=zero_stage,
        dp_degree=dp_degree,
    )
    p = 4 if precision == "fp32" else 2
    acts = activation_memory(shape, seq_len, micro_batch, bytes_per_value=p, recompute=recompute)
    return MemoryBreakdown(weights, grads, states, acts.total)


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def measure_saved_activations(model: torch.nn.Module, *inputs, **kwargs) -> int:
    """Run ``model(*inputs, **kwargs)`` and return the bytes of the tensors autograd saves for
    the backward pass, each storage counted once; the model's parameters and buffers (which
    are model state, not activations) are left out.

    Saved tensors pass through ``torch.autograd.graph.saved_tensors_hooks``, so this counts
    exactly what the backward pass will read, views of one tensor counted once.
    """
    own = {_storage_key(t) for t in (*model.parameters(), *model.buffers())}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in own:
            saved[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*inputs, **kwargs)
    return sum(saved.values())


def measure_model_states(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Bytes of the weights, the gradients and the optimizer's state tensors of a model after
    a training step (step counters, which are single numbers, are left out)."""
    params = list(model.parameters())
    state = [
        v for p in params for v in optimizer.state.get(p, {}).values()
        if isinstance(v, torch.Tensor) and v.dim() > 0
    ]  # fmt: skip
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    return {
        "parameters": nbytes(params),
        "gradients": nbytes(p.grad for p in params if p.grad is not None),
        "optimizer": nbytes(state),
    }
