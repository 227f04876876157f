"""Saving and restoring the package's torch.optim fronts: a restored run is the run that never
stopped."""

import functools

import pytest
import torch

from llmtrain.optim import (
    SGD,
    Adafactor,
    Adagrad,
    Adam,
    AdamW,
    RMSprop,
    ScheduledLR,
    warmup_cosine,
)

OPTIMIZERS = {
    "SGD": functools.partial(SGD, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "Adagrad": functools.partial(Adagrad, lr=0.05),
    "RMSprop": functools.partial(RMSprop, lr=0.01, momentum=0.5),
    "Adam": functools.partial(Adam, lr=0.01, amsgrad=True),
    "AdamW": functools.partial(AdamW, lr=0.01, betas=(0.9, 0.95), weight_decay=0.1),
    "Adafactor": functools.partial(Adafactor, lr=0.01),
}


def make(name, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    optimizer = OPTIMIZERS[name](model.parameters())
    schedule = functools.partial(warmup_cosine, lr=0.01, total=12, warmup=3, min_lr=1e-3)
    return model, optimizer, ScheduledLR(optimizer, schedule)


def step(model, optimizer, scheduler, t):
    data = torch.Generator().manual_seed(100 + t)
    x, y = torch.randn(16, 6, generator=data), torch.randn(16, 3, generator=data)
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_restored_optimizer_continues_exactly_the_uninterrupted_run(name):
    model, optimizer, scheduler = make(name)
    straight = [step(model, optimizer, scheduler, t) for t in range(12)]

    model, optimizer, scheduler = make(name)
    first = [step(model, optimizer, scheduler, t) for t in range(5)]
    saved = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    # A fresh process: new objects, with other initial weights, then the saved state.
    model, optimizer, scheduler = make(name, seed=1)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rest = [step(model, optimizer, scheduler, t) for t in range(5, 12)]

    assert first + rest == straight
