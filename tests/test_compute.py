"""Compute: the FLOPs of a matmul and of a training step against PyTorch's FLOP counter,
MFU against PaLM's published figure, time to train, and measured speeds in physical ranges."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from llmtrain.pretraining import (
    PUBLISHED_RUNS,
    GPTConfig,
    TrainConfig,
    flops_per_token,
    measure_matmul_flops,
    measure_training_throughput,
    model_flops_utilization,
    parameter_count,
    time_to_train,
)

DAY = 86_400


def test_a_matmul_costs_2_n_cubed_flops_by_pytorchs_count():
    for n in (8, 100, 256):
        with FlopCounterMode(display=False) as counter:
            torch.randn(n, n) @ torch.randn(n, n)
        assert counter.get_total_flops() == 2 * n**3


def test_measured_matmul_speed_is_physically_plausible():
    rate = measure_matmul_flops(256, repeats=3)
    # More than a 1990s workstation, less than a whole GPU: any CPU this book runs on.
    assert 1e7 < rate < 2e13


@pytest.mark.algorithm("alg-mfu")
def test_mfu_reproduces_palms_46_percent():
    """PaLM 540B (Chowdhery et al., 2022, App. B): 238.3K tokens/s on 6144 TPU v4 chips of
    275 TFLOP/s, with 6N + 12 L H Q T FLOPs per token (L = 118, H = 48, Q = 256, T = 2048,
    N = 540.35B): 46.2% MFU."""
    F = 6 * 540.35e9 + 12 * 118 * 48 * 256 * 2048
    mfu = model_flops_utilization(238.3e3, F, 6144 * 275e12)
    assert mfu == pytest.approx(0.462, abs=0.0005)


@pytest.mark.algorithm("alg-mfu")
def test_time_to_train_is_compute_over_delivered_flops():
    # Llama 3 405B: 3.8e25 FLOPs on 16,384 H100s (989 TFLOP/s bf16) at 40% MFU: about 68 days.
    days = time_to_train(3.8e25, 16_384, 989e12, 0.40) / DAY
    assert days == pytest.approx(3.8e25 / (16_384 * 989e12 * 0.40) / DAY)
    assert 67 < days < 69
    # Twice the devices, half the time; the MFU enters inversely.
    assert time_to_train(1e24, 2000, 1e15, 0.5) == pytest.approx(
        time_to_train(1e24, 1000, 1e15, 0.5) / 2
    )
    assert time_to_train(1e24, 1000, 1e15, 0.25) == pytest.approx(
        2 * time_to_train(1e24, 1000, 1e15, 0.5)
    )
    with pytest.raises(ValueError, match="mfu"):
        time_to_train(1e24, 1000, 1e15, 1.5)
    with pytest.raises(ValueError, match="n_devices"):
        time_to_train(1e24, 0, 1e15, 0.5)


def test_published_compute_is_about_6ND():
    """The papers' stated compute agrees with 6 N D to within 1.5% (GPT-3: 3.14e23 against
    6 · 175e9 · 300e9 = 3.15e23; Llama 3: 3.8e25 against 3.79e25)."""
    for run in PUBLISHED_RUNS:
        assert run.flops == pytest.approx(6 * run.parameters * run.tokens, rel=0.015), run.name


@pytest.mark.algorithm("alg-mfu")
def test_training_throughput_counts_the_models_flops_and_stays_below_the_peak():
    config = TrainConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, batch_size=8)
    run = measure_training_throughput(config, vocab_size=65, steps=3)
    model_config = config.model_config(65)
    # The FLOPs per token it uses are what PyTorch counts in a training step of the model.
    model_config.attention = "explicit"
    from llmtrain.pretraining import GPT

    model = GPT(model_config)
    x = torch.randint(0, 65, (8, 33))
    with FlopCounterMode(display=False) as counter:
        model(x[:, :-1], x[:, 1:])[1].backward()
    assert counter.get_total_flops() == run.flops_per_token * config.tokens_per_iter
    peak = measure_matmul_flops(512, repeats=5)
    assert 0 < run.mfu(peak) <= 1  # a tiny model's steps cannot beat a large matmul
    assert run.flops_per_second == pytest.approx(run.tokens_per_second * run.flops_per_token)
    assert run.mfu(peak) == model_flops_utilization(
        run.tokens_per_second, run.flops_per_token, peak
    )


def test_flops_per_token_approaches_6N_for_wide_models():
    """The dense attention term is 12 L T d of 6 N_ne + 12 L T d per training token (PaLM's
    count): small against 6 N_ne when d is large against T."""
    wide = GPTConfig(vocab_size=32000, block_size=2048, n_layer=32, n_head=32, n_embd=4096)
    f, N = flops_per_token(wide), parameter_count(wide)
    assert f.training - 3 * f.unembedding == pytest.approx(
        6 * (N.attention + N.mlp) + 12 * 32 * 2048 * 4096
    )
    assert 1.0 < f.training / (6 * N.non_embedding) < 1.12


# -- the chapter ----------------------------------------------------------------------------


def test_compute_chapter_exercise_solutions():
    from chapters import run_solution

    ns = run_solution("pretraining/compute.md", "ex-compute-chinchilla")
    assert ns["C"] == pytest.approx(5.88e23)
    assert ns["days"] == pytest.approx(5.88e23 / (1024 * 989e12 * 0.4) / DAY)
    assert 16 < ns["days"] < 18
    ns = run_solution("pretraining/compute.md", "ex-compute-mfu")
    assert ns["mfu"] == pytest.approx(0.158, abs=0.001)
    assert ns["needed"] == pytest.approx(6.03e6, rel=0.001)


def test_days_to_train_demo_gives_time_to_train_and_moves_its_dot():
    from llmtrain.demos.pretraining.compute import days_to_train_demo

    demo = days_to_train_demo()
    first = demo.png()
    assert demo.result.days == pytest.approx(6 * 405e9 * 15.6e12 / (16_384 * 989e12 * 0.4) / DAY)
    demo.set(n_devices=1024, mfu=0.2)
    assert demo.png() != first
    assert demo.result.days == pytest.approx(
        time_to_train(6 * 405e9 * 15.6e12, 1024, 989e12, 0.2) / DAY
    )
