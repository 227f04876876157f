"""LoRA: the adapted layer against its formula, gradients, merging, the book's GPT and the
parameter counts of Hu et al. (2021)."""

import math

import pytest
import torch
from torch import nn

from llmtrain.posttraining import (
    LoRALinear,
    NF4Linear,
    apply_lora,
    lora_parameter_count,
    merge_lora,
)
from llmtrain.pretraining import GPT, GPTConfig

f64 = torch.float64


def tiny_gpt(dtype=torch.float32):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=13, block_size=12, n_layer=2, n_head=2, n_embd=16)
    return GPT(config).to(dtype).eval()


def random_lora(base, r=3, alpha=6.0, **kwargs):
    layer = LoRALinear(base, r, alpha, **kwargs)
    with torch.no_grad():  # B is zero at initialisation; make the update visible
        layer.lora_B.normal_()
    return layer


@pytest.mark.algorithm("alg-lora-linear")
@pytest.mark.parametrize("rslora", [False, True])
def test_forward_equals_the_formula(rslora):
    torch.manual_seed(1)
    base = nn.Linear(10, 7).to(f64)
    layer = random_lora(base, r=3, alpha=6.0, rslora=rslora)
    x = torch.randn(4, 5, 10, dtype=f64)
    W0, b, A, B = base.weight, base.bias, layer.lora_A, layer.lora_B
    scale = 6.0 / (math.sqrt(3) if rslora else 3)
    expected = x @ W0.T + b + scale * (x @ A.T @ B.T)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    assert layer.scale == pytest.approx(scale)


@pytest.mark.algorithm("alg-lora-linear")
def test_initialisation_follows_the_reference_implementations():
    torch.manual_seed(2)
    layer = LoRALinear(nn.Linear(100, 30), r=8, alpha=16)
    assert layer.lora_A.shape == (8, 100) and layer.lora_B.shape == (30, 8)
    assert torch.count_nonzero(layer.lora_B) == 0
    # kaiming_uniform_(a=√5): uniform on ±1/√n_in, like nn.Linear's own weight
    bound = 1 / math.sqrt(100)
    assert layer.lora_A.abs().max() <= bound
    assert layer.lora_A.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


@pytest.mark.algorithm("alg-lora-linear")
def test_only_A_and_B_get_gradients():
    torch.manual_seed(3)
    layer = random_lora(nn.Linear(6, 4), dropout=0.3)
    layer.train()
    layer(torch.randn(8, 6)).square().sum().backward()
    assert layer.base.weight.grad is None and layer.base.bias.grad is None
    assert not layer.base.weight.requires_grad
    assert layer.lora_A.grad.abs().sum() > 0 and layer.lora_B.grad.abs().sum() > 0
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A", "lora_B"}


@pytest.mark.algorithm("alg-lora-linear")
def test_dropout_acts_on_the_update_only():
    torch.manual_seed(4)
    base = nn.Linear(6, 4).to(f64)
    layer = random_lora(base, r=2, alpha=3.0, dropout=0.5).train()  # B ≠ 0: update visible
    x = torch.randn(8, 6, dtype=f64)
    torch.manual_seed(40)
    update = layer(x) - base(x)
    torch.manual_seed(40)  # the same mask again, drawn by a dropout layer of our own
    dropped = nn.functional.dropout(x, p=0.5, training=True)
    assert 0 < torch.count_nonzero(dropped) < x.numel()  # the mask drops some inputs, not all
    A, B = layer.lora_A, layer.lora_B
    torch.testing.assert_close(update, 1.5 * (dropped @ A.T @ B.T), rtol=1e-12, atol=1e-12)
    # the frozen layer sees the whole input: without dropout the update would differ
    assert (update - 1.5 * (x @ A.T @ B.T)).abs().max() > 1e-3
    layer.eval()  # no dropout at evaluation
    torch.testing.assert_close(layer(x) - base(x), 1.5 * (x @ A.T @ B.T), rtol=1e-12, atol=1e-12)


@pytest.mark.algorithm("alg-lora-linear")
@pytest.mark.parametrize("bias", [True, False])
def test_merged_layer_equals_the_wrapped_one(bias):
    torch.manual_seed(5)
    layer = random_lora(nn.Linear(9, 5, bias=bias).to(f64), r=4, alpha=3.0)
    merged = layer.merge()
    assert type(merged) is nn.Linear and merged.weight.dtype == f64
    x = torch.randn(3, 9, dtype=f64)
    torch.testing.assert_close(merged(x), layer(x), rtol=1e-12, atol=1e-12)
    expected_W = layer.base.weight + 3.0 / 4 * layer.lora_B @ layer.lora_A
    torch.testing.assert_close(merged.weight, expected_W, rtol=0, atol=1e-14)


@pytest.mark.algorithm("alg-lora-linear")
def test_wrapped_gpt_equals_the_base_model_at_initialisation_and_merges_back():
    model = tiny_gpt(f64)
    idx = torch.randint(0, 13, (2, 12), generator=torch.Generator().manual_seed(0))
    before = model(idx)[0]
    n_before = model.num_parameters()
    apply_lora(model, r=4, alpha=8, target_modules=["c_attn", "c_proj", "c_fc"])
    torch.testing.assert_close(model(idx)[0], before, rtol=0, atol=0)
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 2 * 4  # 2 blocks × (c_attn, attn.c_proj, c_fc, mlp.c_proj)
    trainable = {n.rsplit(".", 1)[-1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A", "lora_B"}
    # 2 blocks × r (n_in + n_out) for c_attn 16→48, attn.c_proj 16→16, c_fc 16→64, c_proj 64→16
    expected = 2 * 4 * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    for m in model.modules():  # train a little: make the update non-zero
        if isinstance(m, LoRALinear):
            nn.init.normal_(m.lora_B, std=0.1)
    adapted = model(idx)[0]
    assert (adapted - before).abs().max() > 1e-3
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(model(idx)[0], adapted, rtol=1e-10, atol=1e-10)
    assert model.num_parameters() == n_before


@pytest.mark.algorithm("alg-lora-linear")
def test_lora_on_an_nf4_layer_is_qlora():
    torch.manual_seed(6)
    base = NF4Linear.from_linear(nn.Linear(64, 32), block_size=64)
    layer = random_lora(base, r=2, alpha=4.0)
    x = torch.randn(5, 64)
    W0 = base.dequantize().to(torch.bfloat16)
    expected = nn.functional.linear(x.to(torch.bfloat16), W0, base.bias).float()
    expected = expected + 2.0 * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    layer(x).sum().backward()
    assert layer.lora_A.grad is not None and layer.lora_B.grad is not None
    merged = layer.merge()
    W = base.dequantize() + 2.0 * layer.lora_B @ layer.lora_A
    torch.testing.assert_close(merged.weight, W.detach())
    # The merged layer computes in float32, the adapted one rounds x and W₀ to bfloat16 (unit
    # roundoff 2⁻⁹ each) for the base product: outputs agree to bfloat16, not float32, rounding.
    with torch.no_grad():
        gap = (merged(x) - layer(x)).abs()
        torch.testing.assert_close(merged(x), x @ W.T + base.bias.float(), rtol=1e-5, atol=1e-5)
        bound = 2**-7 * (x.abs() @ base.dequantize().abs().T + base.bias.float().abs())
    assert (gap <= bound).all()
    assert gap.max() > 1e-4  # far above float32 rounding: the merge is not exact here


def test_errors_name_the_argument_and_its_range():
    with pytest.raises(ValueError, match=r"r must be an integer in \[1, inf\], got 0"):
        LoRALinear(nn.Linear(4, 4), r=0, alpha=1.0)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, inf\), got -1"):
        LoRALinear(nn.Linear(4, 4), r=2, alpha=-1)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, inf\), got 0"):
        LoRALinear(nn.Linear(4, 4), r=2, alpha=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1"):
        LoRALinear(nn.Linear(4, 4), r=2, alpha=1.0, dropout=1)
    with pytest.raises(TypeError, match="base must be a linear layer"):
        LoRALinear(nn.ReLU(), r=2, alpha=1.0)
    with pytest.raises(ValueError, match=r"target_modules .*\['q_proj'\] match none"):
        apply_lora(tiny_gpt(), r=2, alpha=4, target_modules=["c_attn", "q_proj"])
    with pytest.raises(ValueError, match="r must be"):
        apply_lora(tiny_gpt(), r=-1, alpha=4, target_modules=["c_attn"])
    with pytest.raises(ValueError, match="matrices must be"):
        lora_parameter_count("GPT-3 175B", 4, ("W_Q", "W_3"))  # GPT-3 has no W_3


@pytest.mark.algorithm("alg-lora-count")
def test_parameter_counts_reproduce_hu_et_al():
    # Hu et al. (2021), Sec. 7.1: an 18M budget (about 35 MB in fp16) on GPT-3 175B is
    # r = 8 on one type of attention matrix, r = 4 on two, r = 2 on all four
    for r, matrices in [(8, ("W_Q",)), (4, ("W_Q", "W_V")), (2, ("W_Q", "W_K", "W_V", "W_O"))]:
        n = lora_parameter_count("GPT-3 175B", r, matrices)
        assert n == 96 * 2 * 12288 * 8
        assert round(n / 1e6) == 19 and 2 * n / 2**20 == pytest.approx(36, abs=0.1)
    # Table 4: the GPT-3 LoRA runs with 4.7M and 37.7M trainable parameters
    assert round(lora_parameter_count("GPT-3 175B", 1, ("W_Q", "W_V")) / 1e5) == 47
    assert round(lora_parameter_count("GPT-3 175B", 8, ("W_Q", "W_V")) / 1e5) == 377
    # "10,000 times fewer trainable parameters" than the 175B of full fine-tuning
    ratio = 174.6e9 / lora_parameter_count("GPT-3 175B", 4, ("W_Q", "W_V"))
    assert 9000 < ratio < 10000
    # one 4096 × 4096 matrix at r = 8: 65,536 parameters, 0.39% of the matrix
    shape_7b = "Llama 2 7B"
    per_matrix = lora_parameter_count(shape_7b, 8, ("W_Q",)) // 32
    assert per_matrix == 65536 and per_matrix / 4096**2 == pytest.approx(0.0039, abs=1e-4)


@pytest.mark.algorithm("alg-lora-count")
def test_parameter_count_matches_the_adapted_gpt():
    config = GPTConfig(vocab_size=13, block_size=12, n_layer=2, n_head=2, n_embd=16)
    model = apply_lora(GPT(config), r=3, alpha=3, target_modules=["c_attn", "c_fc", "c_proj"])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # c_attn holds W_Q, W_K, W_V as one 16 → 48 matrix: r (16 + 48) instead of 3 r (16 + 16)
    count = lora_parameter_count(config, 3, "all")
    assert count - trainable == 2 * 3 * (3 * 32 - 64)
    # with grouped-query attention W_K and W_V are narrower (Llama 2 70B: 8 of 64 heads)
    n = lora_parameter_count("Llama 2 70B", 1, ("W_K",))
    assert n == 80 * (8192 + 1024)


def test_exercise_lora_on_every_matrix_of_llama_7b():
    from chapters import run_solution

    ns = run_solution("posttraining/peft.md", "ex-peft-llama7b")
    assert ns["n_lora_7b"] == 32 * 16 * (4 * 8192 + 3 * (4096 + 11008)) == 39_976_960
    assert round(100 * ns["fraction_7b"], 2) == 0.59
