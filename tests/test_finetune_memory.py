"""The fine-tuning memory calculator against the claims of LoRA and QLoRA and against the
storage of the book's own layers."""

import pytest
import torch
from torch import nn

from llmtrain.posttraining import (
    FINETUNE_PRESETS,
    NF4Linear,
    finetune_memory,
    lora_parameter_count,
    nf4_constant_bits,
)
from llmtrain.pretraining import GPTConfig, model_state_memory


@pytest.mark.algorithm("alg-finetune-memory")
def test_llama_65b_preset_has_65b_parameters():
    assert FINETUNE_PRESETS["LLaMA 65B"].num_parameters / 1e9 == pytest.approx(65.29, abs=0.01)
    sizes = [s.num_parameters for s in FINETUNE_PRESETS.values()]
    assert min(sizes) > 6.5e9 and max(sizes) < 175e9


@pytest.mark.algorithm("alg-finetune-memory")
def test_qlora_claims_65b_on_one_48gb_gpu():
    # Dettmers et al. (2023): 16-bit fine-tuning of LLaMA 65B needs more than 780 GB ...
    full = finetune_memory("LLaMA 65B", "full")
    assert full.total > 780e9
    assert full.optimizer / 1e9 == pytest.approx(783.4, abs=0.1)  # 12 bytes a parameter
    # ... QLoRA (NF4, double quantisation, r = 64 on every matrix as for Guanaco 65B) fits
    # one 48 GB GPU, before activations
    qlora = finetune_memory("LLaMA 65B", "qlora", r=64, matrices="all")
    assert qlora.total < 48e9
    assert qlora.trainable == lora_parameter_count("LLaMA 65B", 64, "all")
    lora16 = finetune_memory("LLaMA 65B", "lora", r=64, matrices="all")
    assert lora16.total > 130e9  # a frozen 16-bit model alone is 131 GB
    # the 4-bit storage: half a byte per matrix weight plus 0.127 bits of constants
    n_mat = 80 * (4 * 8192**2 + 3 * 8192 * 22016)
    assert qlora.constants == pytest.approx(n_mat * nf4_constant_bits() / 8)
    assert qlora.weights == pytest.approx(0.5 * n_mat + 2 * (65_285_660_672 - n_mat))


@pytest.mark.algorithm("alg-finetune-memory")
def test_lora_claims_for_gpt3_175b():
    # Hu et al. (2021): training memory 1.2 TB -> 350 GB. In 16 bits the frozen weights are
    # 349 GB; full fine-tuning adds Adam's two moments (1.05 TB) and the gradients (1.40 TB):
    # the reported 1.2 TB lies between.
    lora = finetune_memory("GPT-3 175B", "lora", r=4, matrices=("W_Q", "W_V"), precision="bf16")
    assert lora.total / 1e9 == pytest.approx(350, rel=0.01)
    full = finetune_memory("GPT-3 175B", "full", precision="bf16")
    assert (full.weights + full.optimizer) < 1.2e12 < full.total
    assert 3 <= full.total / lora.total <= 4.1  # "3 times" less hardware memory


@pytest.mark.algorithm("alg-finetune-memory")
def test_full_and_lora_reuse_part_iii_model_states():
    shape = FINETUNE_PRESETS["Llama 2 7B"]
    full = finetune_memory("Llama 2 7B", "full")
    assert (full.weights, full.gradients, full.optimizer) == model_state_memory(
        shape.num_parameters
    )
    assert full.total / shape.num_parameters == 16
    lora = finetune_memory("Llama 2 7B", "lora", r=8, matrices=("W_Q", "W_V"))
    n = lora_parameter_count("Llama 2 7B", 8, ("W_Q", "W_V"))
    assert lora.trainable == n == 32 * 2 * 8 * 8192
    assert lora.adapters + lora.gradients + lora.optimizer == 16 * n
    assert lora.weights == 2 * shape.num_parameters
    # QLoRA for 7B fits a 24 GB consumer GPU with room to spare
    assert finetune_memory("Llama 2 7B", "qlora", r=64).total < 8e9
    # methods order as expected for every preset
    for name in FINETUNE_PRESETS:
        totals = [finetune_memory(name, m).total for m in ("full", "lora", "qlora")]
        assert totals[0] > totals[1] > totals[2]


@pytest.mark.algorithm("alg-finetune-memory")
def test_qlora_weights_match_the_storage_of_nf4_layers():
    # the calculator's NF4 bytes for a GPTConfig equal what NF4Linear layers store
    config = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_embd=256, bias=False)
    calc = finetune_memory(config, "qlora", r=2, double_quant=False)
    torch.manual_seed(0)
    stored = 0
    for n_in, n_out in [(256, 768), (256, 256), (256, 1024), (1024, 256)]:
        layer = NF4Linear.from_linear(nn.Linear(n_in, n_out, bias=False), double_quant=False)
        stored += sum(b.numel() * b.element_size() for b in layer.buffers() if b is not None)
    n_mat = 2 * (4 * 256**2 + 2 * 256 * 1024)
    assert 2 * stored == 0.5 * n_mat + calc.constants
    assert calc.constants == n_mat / 64 * 4


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="method must be one of"):
        finetune_memory("Llama 2 7B", "prefix")
    with pytest.raises(ValueError, match="precision must be one of"):
        finetune_memory("Llama 2 7B", precision="fp8")
    with pytest.raises(ValueError, match="model must be one of"):
        finetune_memory("Llama 9 7B")
    with pytest.raises(ValueError, match=r"r must be an integer in \[1, inf\]"):
        finetune_memory("Llama 2 7B", "lora", r=0)
