"""How much memory fine-tuning takes: all weights (full), a frozen 16-bit model plus LoRA
adapters, or a frozen NF4 model plus LoRA adapters (QLoRA).

The model states of Part III (:func:`llmtrain.pretraining.model_state_memory`) are counted
for the parameters that train; frozen weights only need their own storage. Activations are
left out: they depend on the batch and the sequence length, not on the method, and gradient
checkpointing makes them small next to the model states of a large model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..pretraining.memory import model_state_memory
from .lora import FINETUNE_PRESETS, _matrix_shapes, _model_shape, lora_parameter_count
from .nf4 import nf4_constant_bits

__all__ = ["FINETUNE_PRESETS", "FinetuneMemory", "finetune_memory"]

METHODS = ("full", "lora", "qlora")
PRECISIONS = ("mixed", "fp32", "bf16")


@dataclass(frozen=True)
class FinetuneMemory:
    """Bytes of each part of the memory of fine-tuning (activations not included)."""

    weights: float  # the model's own weights: trained (full) or frozen (16-bit or NF4 codes)
    constants: float  # NF4's quantisation constants (QLoRA only)
    adapters: float  # LoRA's matrices A and B
    gradients: float  # of the trained parameters
    optimizer: float  # of the trained parameters (with an fp32 master copy in "mixed")
    trainable: int  # number of trained parameters

    @property
    def total(self) -> float:
        return sum(getattr(self, f.name) for f in fields(self) if f.name != "trainable")

    def gigabytes(self) -> dict[str, float]:
        """Each part and the total in GB (10⁹ bytes)."""
        parts = {f.name: getattr(self, f.name) / 1e9 for f in fields(self) if f.name != "trainable"}
        return {**parts, "total": self.total / 1e9}


def _states(n: int, precision: str) -> tuple[float, float, float]:
    """Bytes of the weights, gradients and Adam state of n trained parameters."""
    if precision == "bf16":  # everything in 16 bits, Adam's two moments included
        return 2.0 * n, 2.0 * n, 4.0 * n
    return model_state_memory(n, precision=precision, optimizer="adamw")


def finetune_memory(
    model,
    method: str = "full",
    *,
    r: int = 16,
    matrices="all",
    precision: str = "mixed",
    block_size: int = 64,
    double_quant: bool = True,
) -> FinetuneMemory:
    """The memory of fine-tuning ``model`` with AdamW by ``method``.

    Implements :prf:ref:`alg-finetune-memory`.

    Parameters
    ----------
    model : str or ModelShape or GPTConfig
        A name of ``FINETUNE_PRESETS`` or of ``MODEL_PRESETS``,
        or a shape.
    method : str
        ``"full"``: every parameter trains. ``"lora"``: the model is frozen in 16 bits and
        LoRA of rank ``r`` on ``matrices`` trains. ``"qlora"``: as LoRA, but the weight
        matrices of the layers are stored in NF4 (4 bits, plus the constants of
        :func:`~llmtrain.posttraining.nf4_constant_bits`); embeddings and norms stay 16-bit.
    r, matrices
        LoRA's rank and adapted matrices, as in
        :func:`~llmtrain.posttraining.lora_parameter_count` (ignored for ``"full"``).
    precision : str
        How trained parameters are kept: ``"mixed"`` (16-bit weights and gradients, an fp32
        master copy and fp32 moments: 16 bytes a parameter, ZeRO's count), ``"fp32"`` (16
        bytes: 4 + 4 + 8) or ``"bf16"`` (everything in 16 bits: 2 + 2 + 4). Frozen weights
        take 4 bytes in ``"fp32"`` and 2 otherwise.
    block_size, double_quant
        NF4's block size and whether its constants are double-quantised (``"qlora"``).
    """
    shape = _model_shape(model)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    Ψ = shape.num_parameters
    if method == "full":
        weights, grads, states = _states(Ψ, precision)
        return FinetuneMemory(weights, 0.0, 0.0, grads, states, Ψ)
    n_lora = lora_parameter_count(shape, r, matrices)
    adapters, grads, states = _states(n_lora, precision)
    frozen_bytes = 4 if precision == "fp32" else 2
    if method == "lora":
        return FinetuneMemory(frozen_bytes * Ψ, 0.0, adapters, grads, states, n_lora)
    n_mat = shape.n_layer * sum(n_in * n_out for n_in, n_out in _matrix_shapes(shape).values())
    codes = 0.5 * n_mat  # 4 bits a weight
    constants = nf4_constant_bits(block_size, double_quant) / 8 * n_mat
    rest = frozen_bytes * (Ψ - n_mat)  # embeddings, norms (and biases) stay in 16 bits
    return FinetuneMemory(codes + rest, constants, adapters, grads, states, n_lora)
