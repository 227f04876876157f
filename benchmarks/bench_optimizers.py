"""Step time of the package's optimizers against their ``torch.optim`` counterparts.

The model is an MLP of about one million float32 parameters (512 -> 1024 -> 512 -> 10, with
biases), on the CPU. Every optimizer gets the same fixed gradients, and only ``step()`` is
timed: the median of many steps after a few warm-up steps. torch runs its single-tensor
(for-loop) implementation, ``foreach=False``, which is its default on the CPU and the
algorithmic shape of our front (one update-rule call per parameter tensor); Adafactor has no
fused or foreach default and runs its for-loop path too. The target is a ratio of at most 1.5.
"""

from __future__ import annotations

import statistics
import time

import torch

from llmtrain import optim

TARGET_RATIO = 1.5

#: (name, our class, torch's class, keyword arguments for both)
OPTIMIZERS = [
    ("SGD", optim.SGD, torch.optim.SGD, dict(lr=1e-2)),
    ("SGD+momentum", optim.SGD, torch.optim.SGD, dict(lr=1e-2, momentum=0.9)),
    ("Adagrad", optim.Adagrad, torch.optim.Adagrad, dict()),
    ("RMSprop", optim.RMSprop, torch.optim.RMSprop, dict()),
    ("Adam", optim.Adam, torch.optim.Adam, dict()),
    ("AdamW", optim.AdamW, torch.optim.AdamW, dict()),
    ("Adafactor", optim.Adafactor, torch.optim.Adafactor, dict()),
]


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(512, 1024),
        torch.nn.ReLU(),
        torch.nn.Linear(1024, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )
    generator = torch.Generator().manual_seed(seed + 1)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator) * 1e-2
    return model


def step_ms(ours, theirs, steps: int, warmup: int = 5) -> tuple[float, float]:
    """Median step times of two optimizers, their steps interleaved so that both see the same
    load on a shared machine."""
    for _ in range(warmup):
        ours.step()
        theirs.step()
    times: tuple[list, list] = ([], [])
    for _ in range(steps):
        for optimizer, record in zip((ours, theirs), times, strict=True):
            start = time.perf_counter()
            optimizer.step()
            record.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1])


def main(steps: int = 100) -> None:
    torch.set_num_threads(1)  # the machine is shared; one thread gives stable timings
    parameters = sum(p.numel() for p in make_model().parameters())
    print(
        f"MLP with {parameters:,} float32 parameters; median of {steps} steps; torch foreach=False"
    )
    print(f"{'optimizer':14s} {'llmtrain ms':>12s} {'torch ms':>9s} {'ratio':>6s}")
    for name, ours, theirs, kwargs in OPTIMIZERS:
        extra = {} if theirs is torch.optim.Adafactor else {"foreach": False}
        ours_ms, theirs_ms = step_ms(
            ours(make_model().parameters(), **kwargs),
            theirs(make_model().parameters(), **kwargs, **extra),
            steps,
        )
        ratio = ours_ms / theirs_ms
        flag = "" if ratio <= TARGET_RATIO else f"  (over the {TARGET_RATIO} target)"
        print(f"{name:14s} {ours_ms:12.2f} {theirs_ms:9.2f} {ratio:6.2f}{flag}")


if __name__ == "__main__":
    main()
