"""4-bit NormalFloat (NF4) quantisation and the frozen NF4 linear layer of QLoRA.

QLoRA (Dettmers et al., 2023) stores the frozen weights of the model it fine-tunes in 4 bits.
The 16 values a code can stand for, the NF4 *levels*, are quantiles of a standard normal
distribution scaled into [-1, 1], because pretrained weights are roughly normal. A weight
tensor is cut into blocks of 64 values; each block is divided by its largest absolute value
(its *absmax*, one 32-bit constant per block) and each value replaced by the index of the
nearest level. Double quantisation then stores the constants themselves in 8 bits, in
blocks of 256. For a forward pass the weights are dequantised and the product computed in
bfloat16; only LoRA's matrices, in 16 bits or more, are trained.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_int

__all__ = [
    "NF4Linear",
    "dequantize_nf4",
    "double_dequantize",
    "double_quantize",
    "nf4_constant_bits",
    "nf4_levels",
    "quantize_linears_nf4",
    "quantize_nf4",
]

#: The default offset of bitsandbytes' ``create_normal_map`` (``bitsandbytes/functional.py``;
#: the QLoRA paper does not give it): the quantiles run from 1 - offset to offset. Neither
#: source explains the number; it equals 1 - (1/32 + 1/30) / 2, halfway between the choices
#: 1 - 1/(2·16) and 1 - 1/(2·15) for 16 and 15 values, which is the book's reconstruction.
NF4_OFFSET = 0.9677083
FP8_MAX = 448.0  # the largest float8 e4m3 number: the constants of a block are scaled to it


def nf4_levels() -> torch.Tensor:
    """The 16 NF4 levels q₀ < q₁ < ... < q₁₅, as float32, from -1 to 1 with an exact zero.

    Implements :prf:ref:`alg-nf4-levels`.

    8 positive levels are the standard normal quantiles Φ⁻¹(p) at 8 probabilities evenly
    spaced from ``NF4_OFFSET`` down to 1/2 (the last, Φ⁻¹(1/2) = 0, left out), 7 negative
    ones the mirror images of the quantiles at 7 probabilities from ``NF4_OFFSET`` to 1/2,
    plus 0; all are divided by the largest. The type is asymmetric (one more positive level)
    so that zero is represented exactly. This is bitsandbytes'
    ``create_normal_map(offset=0.9677083, use_extra_value=True)``, whose levels the tests
    compare against.
    """
    positive = torch.special.ndtri(torch.linspace(NF4_OFFSET, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -torch.special.ndtri(torch.linspace(NF4_OFFSET, 0.5, 8, dtype=torch.float64)[:-1])
    q = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return (q / q.max()).float()


def _blocks(w: torch.Tensor, block_size: int) -> torch.Tensor:
    block_size = check_int("block_size", block_size, 1)
    n = w.numel()
    if n % block_size:
        raise ValueError(
            f"block_size must divide the number of values {n} (a divisor in [1, {n}]), "
            f"got {block_size}"
        )
    return w.detach().reshape(-1, block_size).float()


def quantize_nf4(w: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-wise NF4 quantisation of ``w``: ``(codes, absmax)``.

    Implements :prf:ref:`alg-nf4-quantize`.

    The flattened tensor is cut into blocks of ``block_size`` values (which must divide its
    size); ``absmax`` holds each block's largest absolute value (float32, one per block) and
    ``codes`` (uint8 in [0, 16), the shape of ``w``) the index of the level nearest to each
    value divided by its block's absmax. A block of zeros gets absmax 0 and code 7 (zero).
    """
    blocks = _blocks(w, block_size)
    absmax = blocks.abs().amax(dim=1)
    x = blocks / torch.where(absmax > 0, absmax, 1.0)[:, None]
    q = nf4_levels()
    # the nearest level: count the midpoints between neighbouring levels that lie below x
    codes = torch.bucketize(x, (q[1:] + q[:-1]) / 2)
    return codes.to(torch.uint8).reshape(w.shape), absmax


def dequantize_nf4(codes: torch.Tensor, absmax: torch.Tensor, shape, block_size: int = 64):
    """The tensor of ``shape`` that ``quantize_nf4`` encoded: q[code] × its block's absmax.

    Implements :prf:ref:`alg-nf4-quantize` (dequantisation).
    """
    blocks = _blocks(codes, block_size)
    if absmax.numel() != blocks.shape[0]:
        raise ValueError(
            f"absmax must hold one constant per block ({blocks.shape[0]}), got {absmax.numel()}"
        )
    w = nf4_levels()[blocks.long()] * absmax.reshape(-1, 1).float()
    return w.reshape(shape)


def double_quantize(absmax: torch.Tensor, block_size: int = 256):
    """Quantise the constants of block-wise quantisation to 8 bits: ``(codes, scale, mean)``.

    Implements :prf:ref:`alg-double-quantization`.

    The constants' mean is subtracted (absmax values are all positive; centred they use the
    sign bit too), the centred values are cut into blocks of ``block_size`` (the last block
    may be shorter) and each block is divided by a float32 scale that maps its largest
    absolute value to 448 and rounded to float8 (e4m3: 4 exponent and 3 mantissa bits).
    ``codes`` are the float8 bytes as uint8, ``scale`` one float32 per block. (QLoRA stores
    the constants as "8-bit floats"; bitsandbytes uses its own 8-bit dynamic type there.)
    """
    block_size = check_int("block_size", block_size, 1)
    c = absmax.detach().float().reshape(-1)
    mean = c.mean()
    centred = c - mean
    pad = (-c.numel()) % block_size
    blocks = F.pad(centred, (0, pad)).reshape(-1, block_size)
    scale = blocks.abs().amax(dim=1) / FP8_MAX
    scaled = blocks / torch.where(scale > 0, scale, 1.0)[:, None]
    codes = scaled.to(torch.float8_e4m3fn).view(torch.uint8).reshape(-1)[: c.numel()]
    return codes, scale, mean


def double_dequantize(
    codes: torch.Tensor, scale: torch.Tensor, mean: torch.Tensor, block_size: int = 256
) -> torch.Tensor:
    """The constants ``double_quantize`` encoded (float32).

    Implements :prf:ref:`alg-double-quantization` (dequantisation).
    """
    block_size = check_int("block_size", block_size, 1)
    n = codes.numel()
    values = codes.reshape(-1).view(torch.float8_e4m3fn).float()
    values = F.pad(values, (0, (-n) % block_size)).reshape(-1, block_size) * scale[:, None]
    return values.reshape(-1)[:n] + mean


def nf4_constant_bits(
    block_size: int = 64, double_quant: bool = True, block_size2: int = 256
) -> float:
    """Bits per parameter that the quantisation constants cost.

    Implements :prf:ref:`alg-double-quantization` (its memory).

    One 32-bit absmax per block of ``block_size`` values: 32 / block_size bits per
    parameter (0.5 for blocks of 64). With double quantisation each constant takes 8 bits,
    plus one 32-bit scale per ``block_size2`` constants: 8 / block_size + 32 / (block_size ·
    block_size2), 0.127 for blocks of 64 and 256 (the mean, one number, is left out).
    """
    b1 = check_int("block_size", block_size, 1)
    b2 = check_int("block_size2", block_size2, 1)
    return 8 / b1 + 32 / (b1 * b2) if double_quant else 32 / b1


class NF4Linear(nn.Module):
    """A frozen linear layer whose weight is stored in NF4: two 4-bit codes per byte, plus
    the block constants (double-quantised or not) and the bias in ``compute_dtype``.

    Implements :prf:ref:`alg-qlora-linear`.

    The forward pass dequantises the weight, casts weight and input to ``compute_dtype``
    (bfloat16, as in QLoRA), computes x Wᵀ + bias there, and returns the result in the
    input's dtype. Nothing in it is trainable; wrap it in
    :class:`~llmtrain.posttraining.LoRALinear` to fine-tune it (QLoRA). Build it with
    :meth:`from_linear`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        block_size: int = 64,
        double_quant: bool = True,
        compute_dtype=torch.bfloat16,
    ):
        super().__init__()
        self.in_features = check_int("in_features", in_features, 1)
        self.out_features = check_int("out_features", out_features, 1)
        self.block_size, self.double_quant = block_size, double_quant
        self.compute_dtype = compute_dtype

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        block_size: int = 64,
        double_quant: bool = True,
        compute_dtype=torch.bfloat16,
    ) -> NF4Linear:
        """Quantise the weight of ``linear`` (its number of values must be even and divisible
        by ``block_size``)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        layer = cls(
            linear.in_features,
            linear.out_features,
            block_size=block_size,
            double_quant=double_quant,
            compute_dtype=compute_dtype,
        )
        W = linear.weight.detach()
        codes, absmax = quantize_nf4(W, block_size)
        flat = codes.reshape(-1)
        if flat.numel() % 2:
            raise ValueError(f"linear must have an even number of weights, got {flat.numel()}")
        layer.register_buffer("packed", (flat[0::2] << 4) | flat[1::2])  # two codes a byte
        if double_quant:
            c_codes, c_scale, c_mean = double_quantize(absmax)
            layer.register_buffer("absmax_codes", c_codes)
            layer.register_buffer("absmax_scale", c_scale)
            layer.register_buffer("absmax_mean", c_mean)
        else:
            layer.register_buffer("absmax", absmax)
        bias = None if linear.bias is None else linear.bias.detach().to(compute_dtype).clone()
        layer.register_buffer("bias", bias)
        return layer

    def constants(self) -> torch.Tensor:
        """The block constants (absmax), dequantised if double-quantised."""
        if self.double_quant:
            return double_dequantize(self.absmax_codes, self.absmax_scale, self.absmax_mean)
        return self.absmax

    def dequantize(self) -> torch.Tensor:
        """The weight W (out_features × in_features, float32) the codes stand for."""
        codes = torch.stack([self.packed >> 4, self.packed & 15], dim=1).reshape(-1)
        shape = (self.out_features, self.in_features)
        return dequantize_nf4(codes, self.constants(), shape, self.block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        W = self.dequantize().to(self.compute_dtype)
        y = F.linear(x.to(self.compute_dtype), W, self.bias)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"block_size={self.block_size}, double_quant={self.double_quant}"
        )


def quantize_linears_nf4(
    model: nn.Module,
    target_modules,
    *,
    block_size: int = 64,
    double_quant: bool = True,
    compute_dtype=torch.bfloat16,
) -> nn.Module:
    """Replace the ``nn.Linear`` layers of ``model`` named (or suffixed) by ``target_modules``
    with :class:`NF4Linear`, in place, and return the model: the first step of QLoRA, before
    :func:`~llmtrain.posttraining.apply_lora`.

    Implements :prf:ref:`alg-qlora-linear` (for a whole model).
    """
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    match = lambda name, t: name == t or name.endswith("." + t)  # noqa: E731
    unmatched = [t for t in targets if not any(match(n, t) for n in linears)]
    if unmatched or not targets:
        raise ValueError(f"target_modules must name nn.Linear layers; {unmatched} match none")
    for name in linears:
        if any(match(name, t) for t in targets):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            linear = getattr(parent, child)
            setattr(
                parent,
                child,
                NF4Linear.from_linear(linear, block_size, double_quant, compute_dtype),
            )
    return model
