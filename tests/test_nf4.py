"""NF4 (QLoRA): the levels against bitsandbytes, block-wise quantisation, double quantisation
of the constants and the frozen NF4 linear layer."""

import pytest
import torch
from torch import nn

from llmtrain.posttraining import (
    NF4Linear,
    dequantize_nf4,
    double_dequantize,
    double_quantize,
    nf4_constant_bits,
    nf4_levels,
    quantize_linears_nf4,
    quantize_nf4,
)
from llmtrain.pretraining import GPT, GPTConfig

# bitsandbytes' NF4 table (bitsandbytes/functional.py, get_4bit_type("nf4"); the CUDA
# kernel's dDequantizeNF4 holds the same 16 numbers), float32 as published.
BNB_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]  # fmt: skip


@pytest.mark.algorithm("alg-nf4-levels")
def test_levels_match_bitsandbytes():
    q = nf4_levels()
    assert q.dtype == torch.float32 and q.shape == (16,)
    torch.testing.assert_close(q, torch.tensor(BNB_NF4), rtol=0, atol=1e-6)
    # asymmetric: 7 negative levels, an exact zero, 8 positive levels, from -1 to 1
    assert (q < 0).sum() == 7 and (q == 0).sum() == 1 and (q > 0).sum() == 8
    assert q[0] == -1 and q[-1] == 1 and bool((q.diff() > 0).all())


def gaussian(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.02


@pytest.mark.algorithm("alg-nf4-quantize")
@pytest.mark.parametrize("block_size", [16, 64, 256])
def test_every_weight_maps_to_its_nearest_level_times_its_block_absmax(block_size):
    w = gaussian((48, 64))
    codes, absmax = quantize_nf4(w, block_size)
    assert codes.dtype == torch.uint8 and codes.shape == w.shape and int(codes.max()) < 16
    assert absmax.shape == (w.numel() // block_size,) and absmax.dtype == torch.float32
    blocks = w.reshape(-1, block_size)
    torch.testing.assert_close(absmax, blocks.abs().amax(1), rtol=0, atol=0)
    x = blocks / absmax[:, None]
    q = nf4_levels()
    distance = (x[..., None] - q).abs()  # to each of the 16 levels
    chosen = distance.gather(-1, codes.reshape(-1, block_size, 1).long())[..., 0]
    assert bool((chosen <= distance.min(-1).values + 1e-7).all())
    # the largest value of each block is represented exactly, by ±1
    w_hat = dequantize_nf4(codes, absmax, w.shape, block_size)
    assert w_hat.shape == w.shape
    rows = torch.arange(blocks.shape[0])
    top = blocks.abs().argmax(1)
    torch.testing.assert_close(
        w_hat.reshape(-1, block_size)[rows, top], blocks[rows, top], rtol=0, atol=0
    )
    torch.testing.assert_close(
        w_hat.reshape(-1, block_size), q[codes.reshape(-1, block_size).long()] * absmax[:, None]
    )


@pytest.mark.algorithm("alg-nf4-quantize")
def test_dequantisation_error_is_bounded_per_block():
    w = gaussian((32, 128), seed=1)
    w[0, :64] = 0.0  # a block of zeros survives exactly
    codes, absmax = quantize_nf4(w, 64)
    w_hat = dequantize_nf4(codes, absmax, w.shape, 64)
    q = nf4_levels()
    half_gap = (q.diff().max() / 2).item()  # the widest gap: between -1 and -0.6962
    assert half_gap == pytest.approx((1 - 0.6961928009986877) / 2)
    error = (w_hat - w).abs().reshape(-1, 64)
    assert bool((error <= half_gap * absmax[:, None] * (1 + 1e-6)).all())
    assert w_hat[0, :64].abs().max() == 0 and absmax[0] == 0
    # the bound is not loose everywhere: some weight comes within 60% of it
    assert (error / (half_gap * absmax[:, None]).clamp_min(1e-12)).max() > 0.6


@pytest.mark.algorithm("alg-nf4-quantize")
def test_nf4_beats_uniform_4_bit_levels_on_normal_weights():
    # the point of NF4: levels at normal quantiles give a smaller error on normal data than
    # 16 evenly spaced levels on [-1, 1] with the same absmax blocks
    w = gaussian((64, 256), seed=2)
    codes, absmax = quantize_nf4(w, 64)
    nf4_error = (dequantize_nf4(codes, absmax, w.shape, 64) - w).square().mean()
    uniform = torch.linspace(-1, 1, 16)
    x = w.reshape(-1, 64) / absmax[:, None]
    nearest = uniform[(x[..., None] - uniform).abs().argmin(-1)]
    uniform_error = (nearest * absmax[:, None] - w.reshape(-1, 64)).square().mean()
    assert nf4_error < 0.9 * uniform_error


@pytest.mark.algorithm("alg-double-quantization")
def test_double_quantisation_restores_the_constants_closely():
    torch.manual_seed(3)
    absmax = 0.05 + 0.01 * torch.rand(1000)  # not a multiple of 256: a short last block
    codes, scale, mean = double_quantize(absmax, 256)
    assert codes.dtype == torch.uint8 and codes.shape == (1000,) and scale.shape == (4,)
    assert mean.item() == pytest.approx(absmax.mean().item())
    c_hat = double_dequantize(codes, scale, mean, 256)
    centred = (absmax - mean).abs()
    # float8 e4m3 keeps 3 mantissa bits: relative error at most 2⁻⁴ of the centred value
    # (plus half the smallest subnormal step of the block's scale, 2⁻¹⁰ · 448 · scale)
    bound = 2**-4 * centred + 2**-10 * 448 * scale.repeat_interleave(256)[:1000]
    assert bool(((c_hat - absmax).abs() <= bound * (1 + 1e-6)).all())
    assert (c_hat - absmax).abs().max() < 5e-3 * absmax.mean()


@pytest.mark.algorithm("alg-double-quantization")
def test_bits_per_parameter_of_the_constants():
    assert nf4_constant_bits(64, double_quant=False) == 0.5
    assert nf4_constant_bits(64) == 8 / 64 + 32 / (64 * 256)
    assert round(nf4_constant_bits(64), 3) == 0.127
    assert nf4_constant_bits(64) / nf4_constant_bits(64, False) == pytest.approx(0.254, abs=1e-3)
    assert nf4_constant_bits(128, double_quant=False) == 0.25


@pytest.mark.algorithm("alg-qlora-linear")
@pytest.mark.parametrize("double_quant", [True, False])
def test_nf4_linear_dequantises_then_computes_in_bfloat16(double_quant):
    torch.manual_seed(4)
    linear = nn.Linear(128, 64)
    layer = NF4Linear.from_linear(linear, 64, double_quant=double_quant)
    assert not any(True for _ in layer.parameters())  # frozen: buffers only
    codes, absmax = quantize_nf4(linear.weight, 64)
    W = dequantize_nf4(codes, absmax, linear.weight.shape, 64)
    tol = 2e-3 * absmax.max() if double_quant else 0
    torch.testing.assert_close(layer.dequantize(), W, rtol=0, atol=tol)
    x = torch.randn(3, 128)
    expected = nn.functional.linear(
        x.bfloat16(), layer.dequantize().bfloat16(), linear.bias.bfloat16()
    ).float()
    y = layer(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    # ... and close to the full-precision layer
    assert (y - linear(x)).abs().max() < 0.1 * linear(x).abs().max()
    # storage: two codes a byte, plus the constants
    stored = sum(b.numel() * b.element_size() for n, b in layer.named_buffers() if n != "bias")
    n = linear.weight.numel()
    constants = nf4_constant_bits(64, double_quant) * n / 8
    if double_quant:  # one 256-block of constants here, plus the 4-byte mean
        assert stored == n // 2 + n // 64 + 4 + 4
    else:
        assert stored == n // 2 + constants


@pytest.mark.algorithm("alg-qlora-linear")
def test_quantize_linears_nf4_on_the_book_gpt():
    torch.manual_seed(5)
    config = GPTConfig(vocab_size=13, block_size=12, n_layer=2, n_head=2, n_embd=64)
    model = GPT(config).eval()
    idx = torch.randint(0, 13, (2, 12))
    before = model(idx)[0]
    quantize_linears_nf4(model, ["c_attn", "c_proj", "c_fc"])
    assert sum(isinstance(m, NF4Linear) for m in model.modules()) == 8
    after = model(idx)[0]
    assert (after - before).abs().max() < 0.05 * before.abs().max()


def test_errors_name_the_argument_and_its_range():
    with pytest.raises(ValueError, match=r"block_size must divide the number of values 100"):
        quantize_nf4(torch.randn(10, 10), 64)
    with pytest.raises(ValueError, match=r"block_size must be an integer in \[1, inf\]"):
        quantize_nf4(torch.randn(64), 0)
    with pytest.raises(ValueError, match="absmax must hold one constant per block"):
        dequantize_nf4(torch.zeros(128, dtype=torch.uint8), torch.ones(3), (128,), 64)
    with pytest.raises(TypeError, match=r"linear must be an nn\.Linear"):
        NF4Linear.from_linear(nn.ReLU())
    with pytest.raises(ValueError, match=r"target_modules .*\['nope'\] match none"):
        quantize_linears_nf4(nn.Sequential(nn.Linear(64, 64)), ["nope"])


def test_exercise_the_price_of_larger_blocks():
    from chapters import run_solution

    ns = run_solution("posttraining/peft.md", "ex-peft-block128")
    assert round(ns["bits_128"], 4) == 4.0635
    assert round(ns["saved_128"], 1) == 0.5
