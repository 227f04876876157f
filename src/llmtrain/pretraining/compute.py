"""The compute of a training run: FLOPs, FLOP/s, model FLOPs utilisation and days to train.

A run's compute is C = F_train · D FLOPs for D training tokens, with F_train the FLOPs per
token of :func:`~llmtrain.pretraining.flops_per_token` (about 6 N_ne). Hardware delivers at
most its peak FLOP/s; the fraction of that peak a run turns into model FLOPs is its model
FLOPs utilisation, MFU (Chowdhery et al., 2022, App. B). From the two follows the time to
train. The helpers here measure both on the reader's own machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .._checks import check_int, check_real
from .gpt import GPT
from .model_size import flops_per_token
from .trainer import TrainConfig, configure_optimizer, train_step

__all__ = [
    "PUBLISHED_RUNS",
    "PublishedRun",
    "Throughput",
    "measure_matmul_flops",
    "measure_training_throughput",
    "model_flops_utilization",
    "time_to_train",
]


def measure_matmul_flops(n: int = 512, repeats: int = 5) -> float:
    """The FLOP/s of a float32 n x n by n x n matrix product on this machine.

    One product is n² dot products of length n: n³ multiply-adds, 2 n³ FLOPs. The product is
    timed ``repeats`` times after one warm-up, and the fastest time counts (the others were
    slowed by something else running), so the result is this machine's speed at its best.
    """
    n = check_int("n", n, 1, 8192)
    repeats = check_int("repeats", repeats, 1)
    generator = torch.Generator().manual_seed(0)
    A = torch.randn(n, n, generator=generator)
    B = torch.randn(n, n, generator=generator)
    out = torch.empty(n, n)
    torch.mm(A, B, out=out)  # warm-up: allocation, thread pool, caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(A, B, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def model_flops_utilization(
    tokens_per_second: float, flops_per_token: float, peak_flops: float
) -> float:
    """MFU = R_tok · F_train / P_peak: the model FLOPs a run achieves per second (R_tok tokens
    per second, F_train FLOPs per token) as a fraction of the hardware's peak P_peak FLOP/s.

    Implements :prf:ref:`alg-mfu`. Only the model's own FLOPs count: recomputed activations,
    the optimizer and everything else the hardware does on the side make the run slower, and
    so lower its MFU, without adding to it.
    """
    R_tok = check_real("tokens_per_second", tokens_per_second, 0.0)
    F = check_real("flops_per_token", flops_per_token, 0.0, low_open=True)
    P_peak = check_real("peak_flops", peak_flops, 0.0, low_open=True)
    return R_tok * F / P_peak


def time_to_train(flops: float, n_devices: int, peak_flops: float, mfu: float) -> float:
    """The seconds a run of C = ``flops`` FLOPs takes on ``n_devices`` devices of peak
    P_peak = ``peak_flops`` FLOP/s each, at a utilisation ``mfu``: C / (n_dev · P_peak · MFU).

    Implements :prf:ref:`alg-mfu`.
    """
    C = check_real("flops", flops, 0.0)
    n_dev = check_int("n_devices", n_devices, 1)
    P_peak = check_real("peak_flops", peak_flops, 0.0, low_open=True)
    mfu = check_real("mfu", mfu, 0.0, 1.0, low_open=True)
    return C / (n_dev * P_peak * mfu)


@dataclass(frozen=True)
class Throughput:
    """A timed training run: its speed in tokens and in model FLOPs per second."""

    tokens_per_second: float
    flops_per_token: int  # F_train of the model at the run's context length
    seconds_per_step: float

    @property
    def flops_per_second(self) -> float:
        return self.tokens_per_second * self.flops_per_token

    def mfu(self, peak_flops: float) -> float:
        """The run's MFU against a peak of ``peak_flops`` FLOP/s."""
        return model_flops_utilization(self.tokens_per_second, self.flops_per_token, peak_flops)


def measure_training_throughput(
    config: TrainConfig, vocab_size: int = 256, steps: int = 5, seed: int = 0
) -> Throughput:
    """Time ``steps`` updates of the book's trainer (:func:`~llmtrain.pretraining.train_step`,
    forward, backward, clipping and AdamW) on random tokens, after one warm-up update, and
    return the fastest step's throughput.

    Random tokens cost exactly what text costs: the FLOPs depend on the shapes alone.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    vocab_size = check_int("vocab_size", vocab_size, 1)
    steps = check_int("steps", steps, 1)
    torch.manual_seed(seed)
    model = GPT(config.model_config(vocab_size))
    optimizer, scheduler = configure_optimizer(model, config)
    generator = torch.Generator().manual_seed(seed)
    shape = (config.batch_size, config.block_size + 1)  # one micro-batch of windows
    batches = [
        [
            (w[:, :-1], w[:, 1:])
            for w in torch.randint(0, vocab_size, (config.grad_accum, *shape), generator=generator)
        ]
        for _ in range(steps + 1)
    ]
    train_step(model, optimizer, scheduler, batches[0], config)  # warm-up
    best = float("inf")
    for micro_batches in batches[1:]:
        start = time.perf_counter()
        train_step(model, optimizer, scheduler, micro_batches, config)
        best = min(best, time.perf_counter() - start)
    F = flops_per_token(model.config).training
    return Throughput(
        tokens_per_second=config.tokens_per_iter / best, flops_per_token=F, seconds_per_step=best
    )


@dataclass(frozen=True)
class PublishedRun:
    """A published training run: its size, its data and the compute it reports."""

    name: str
    parameters: float  # N
    tokens: float  # D
    flops: float  # C as the paper states it
    source: str  # the bibliography key


PUBLISHED_RUNS = (
    # Brown et al. (2020), Table D.1: 3.14e23 FLOPs for GPT-3 175B on 300B tokens.
    PublishedRun("GPT-3 175B", 175e9, 300e9, 3.14e23, "brown2020language"),
    # Dubey et al. (2024), Section 1: 405B parameters, 15.6T tokens, 3.8e25 FLOPs.
    PublishedRun("Llama 3 405B", 405e9, 15.6e12, 3.8e25, "dubey2024llama"),
)
"""Published runs whose training compute the paper states."""
