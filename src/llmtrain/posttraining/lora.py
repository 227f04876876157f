"""LoRA: fine-tune a frozen linear layer through a trainable low-rank update.

A linear layer y = W₀x (+ bias) with W₀ of shape n_out × n_in is frozen, and a product of two
small matrices is trained beside it: y = W₀x + (α_lora / r) · B A x, with A of shape r × n_in
and B of shape n_out × r (Hu et al., 2021). B starts at zero, so the adapted model starts as
the pretrained one; A starts random: Gaussian in the paper (its Sec. 4.1), like the weight
of a fresh ``nn.Linear`` (uniform) in Microsoft's ``loralib``, Hugging Face's ``peft`` and
here. After training, B A can be added into W₀ once, and the merged layer costs nothing
extra at inference.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_int, check_real
from ..pretraining.memory import MODEL_PRESETS, ModelShape, _shape

__all__ = ["LORA_MATRICES", "LoRALinear", "apply_lora", "lora_parameter_count", "merge_lora"]


def _base_weight(base: nn.Module) -> torch.Tensor:
    """W₀ of a frozen linear layer: an ``nn.Linear``'s weight, or a quantised layer's
    dequantised weight."""
    if hasattr(base, "dequantize"):
        return base.dequantize()
    return base.weight


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update.

    Implements :prf:ref:`alg-lora-linear`.

    Parameters
    ----------
    base : torch.nn.Module
        The layer to adapt: an ``nn.Linear``, or any module with ``in_features``,
        ``out_features`` and a forward pass ``base(x)`` (such as
        :class:`~llmtrain.posttraining.NF4Linear`, which makes this QLoRA). Its parameters
        are frozen.
    r : int
        Rank of the update, at least 1.
    alpha : float
        α_lora > 0; the update is scaled by α_lora / r.
    dropout : float
        Dropout probability in [0, 1) on the input of the update (not of the frozen layer).
    rslora : bool
        Scale by α_lora / √r instead (rank-stabilised LoRA, Kalajdzievski, 2023).

    Examples
    --------
    >>> layer = LoRALinear(torch.nn.Linear(16, 8), r=2, alpha=4.0)
    >>> layer.lora_A.shape, layer.lora_B.shape
    (torch.Size([2, 16]), torch.Size([8, 2]))
    """

    def __init__(
        self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0, *, rslora: bool = False
    ):
        super().__init__()
        self.r = check_int("r", r, 1)
        self.alpha = check_real("alpha", alpha, 0.0, low_open=True)
        p = check_real("dropout", dropout, 0.0, 1.0, high_open=True)
        if not all(hasattr(base, a) for a in ("in_features", "out_features")):
            raise TypeError(f"base must be a linear layer, got {type(base).__name__}")
        self.base = base
        for param in base.parameters():
            param.requires_grad_(False)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.scale = self.alpha / (math.sqrt(self.r) if rslora else self.r)
        weight = getattr(base, "weight", None)
        dtype = weight.dtype if isinstance(weight, torch.Tensor) else torch.float32
        device = next((t.device for t in (*base.parameters(), *base.buffers())), None)
        self.lora_A = nn.Parameter(
            torch.empty(self.r, self.in_features, dtype=dtype, device=device)
        )
        self.lora_B = nn.Parameter(
            torch.zeros(self.out_features, self.r, dtype=dtype, device=device)
        )
        # A like a fresh nn.Linear's weight (loralib, peft); B = 0, so that B A = 0 at the start.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        A, B = self.lora_A, self.lora_B
        return self.base(x) + self.scale * (self.dropout(x) @ A.T @ B.T)

    def merge(self) -> nn.Linear:
        """A plain ``nn.Linear`` with weight W₀ + (α_lora / r) B A and the base's bias.

        For an ``nn.Linear`` base the merged layer computes what the adapted one does, up to
        rounding in the dtype of the weights. For a quantised base such as
        :class:`~llmtrain.posttraining.NF4Linear` it does not quite: the adapted layer rounds
        the input and the dequantised W₀ to bfloat16 and computes the base product there,
        while the merged layer adds the update to the dequantised W₀ in the dtype of the LoRA
        matrices (float32 by default) and computes everything in that dtype. The two outputs
        then differ by bfloat16 rounding (a relative error of order 2⁻⁸), not float32
        rounding; the tests check this bound.
        """
        W0 = _base_weight(self.base).detach()
        bias = getattr(self.base, "bias", None)
        merged = nn.Linear(
            self.in_features,
            self.out_features,
            bias=bias is not None,
            device=W0.device,
            dtype=self.lora_A.dtype,
        )
        with torch.no_grad():
            delta = self.scale * (self.lora_B @ self.lora_A)
            merged.weight.copy_(W0.to(delta.dtype) + delta)
            if bias is not None:
                merged.bias.copy_(bias.detach())
        return merged

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scale={self.scale:g}"


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def apply_lora(
    model: nn.Module,
    r: int,
    alpha: float,
    target_modules,
    *,
    dropout: float = 0.0,
    rslora: bool = False,
) -> nn.Module:
    """Freeze ``model`` and wrap its linear layers named in ``target_modules`` in
    :class:`LoRALinear`, in place; return the model.

    Implements :prf:ref:`alg-lora-linear` (for a whole model).

    ``target_modules`` holds module names or name suffixes: in the book's GPT, ``"c_attn"``
    (the query, key and value matrices together), ``"attn.c_proj"`` (W_O), ``"c_fc"`` (the
    MLP's input) and ``"mlp.c_proj"`` (its output); ``"c_proj"`` matches both projections.
    Every name must match at least one linear layer. Afterwards only the LoRA matrices
    require gradients.
    """
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    targets = list(target_modules)
    if not targets:
        raise ValueError("target_modules must name at least one module, got []")
    check_int("r", r, 1)
    check_real("alpha", alpha, 0.0, low_open=True)
    check_real("dropout", dropout, 0.0, 1.0, high_open=True)
    wrapped = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    layers = {  # linear layers not yet adapted (a LoRALinear's base is adapted already)
        name: module
        for name, module in model.named_modules()
        if hasattr(module, "in_features")
        and not isinstance(module, LoRALinear)
        and not any(name.startswith(w + ".") for w in wrapped)
    }
    chosen = {name for name in layers if any(_matches(name, t) for t in targets)}
    unmatched = [t for t in targets if not any(_matches(name, t) for name in layers)]
    if unmatched:
        raise ValueError(
            f"target_modules must name linear layers of the model; {unmatched} match none "
            f"(linear layers: {sorted(layers)[:8]}...)"
        )
    for param in model.parameters():
        param.requires_grad_(False)
    for name in sorted(chosen):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(layers[name], r, alpha, dropout, rslora=rslora))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` of ``model`` by its merged ``nn.Linear``, in place;
    return the model, which then has the pretrained architecture again.

    Implements :prf:ref:`alg-lora-linear` (merging for inference).
    """
    wrapped = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in wrapped:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, getattr(parent, child).merge())
    return model


#: The matrices of a Transformer layer LoRA can adapt, in the book's symbols: attention's
#: W_Q, W_K, W_V, W_O and the MLP's W_1 (input), W_2 (output), W_3 (SwiGLU's value input).
LORA_MATRICES = ("W_Q", "W_K", "W_V", "W_O", "W_1", "W_2", "W_3")


#: Models from 7B to 175B: Part III's presets, and LLaMA 65B (Touvron et al., 2023: 80 layers
#: of width 8192, 64 heads, SwiGLU of width 22016, V = 32000), the model of QLoRA's claims.
FINETUNE_PRESETS: dict[str, ModelShape] = {
    name: shape for name, shape in MODEL_PRESETS.items() if shape.num_parameters > 6e9
}
FINETUNE_PRESETS["LLaMA 65B"] = ModelShape(
    80,
    8192,
    64,
    64,
    22016,
    32000,
    2048,
    mlp="swiglu",
    bias=False,
    norm="rmsnorm",
    position="rope",
    tie_embeddings=False,
)


def _model_shape(model) -> ModelShape:
    """A ModelShape from a name of FINETUNE_PRESETS or MODEL_PRESETS, a shape or a config."""
    if isinstance(model, str) and model in FINETUNE_PRESETS:
        return FINETUNE_PRESETS[model]
    return _shape(model)


def _matrix_shapes(shape) -> dict[str, tuple[int, int]]:
    """(n_in, n_out) of each weight matrix of one layer of a ModelShape."""
    d, f = shape.n_embd, shape.d_ff
    d_kv = shape.n_kv_head * (d // shape.n_head)
    shapes = {
        "W_Q": (d, d),
        "W_K": (d, d_kv),
        "W_V": (d, d_kv),
        "W_O": (d, d),
        "W_1": (d, f),
        "W_2": (f, d),
    }
    if shape.mlp == "swiglu":
        shapes["W_3"] = (d, f)
    return shapes


def lora_parameter_count(model, r: int, matrices=("W_Q", "W_V")) -> int:
    """The number of trainable parameters LoRA of rank ``r`` adds to ``model``.

    Implements :prf:ref:`alg-lora-count`.

    ``model`` is a name of ``FINETUNE_PRESETS`` or of
    ``MODEL_PRESETS``, a
    :class:`~llmtrain.pretraining.ModelShape` or a :class:`~llmtrain.pretraining.GPTConfig`;
    ``matrices`` a tuple of names from ``LORA_MATRICES``, or ``"all"``. Each adapted
    n_out × n_in matrix of each of the n_layer layers gets r (n_in + n_out) parameters.

    Examples
    --------
    >>> lora_parameter_count("GPT-3 175B", r=4)  # W_Q and W_V of 96 layers of width 12288
    18874368
    """
    shape = _model_shape(model)
    r = check_int("r", r, 1)
    shapes = _matrix_shapes(shape)
    names = tuple(shapes) if matrices == "all" else tuple(matrices)
    bad = [m for m in names if m not in shapes]
    if bad or not names:
        raise ValueError(f"matrices must be 'all' or names from {tuple(shapes)}, got {matrices!r}")
    return shape.n_layer * sum(r * sum(shapes[m]) for m in names)
