"""Activation checkpointing in the book's GPT: the memory it saves and the time it costs.

For a few sizes, the same model with and without ``GPTConfig(checkpoint_activations=True)``:
the bytes autograd saves for the backward pass (measured by
``llmtrain.pretraining.measure_saved_activations``, next to the count of
``activation_memory``) and the time of one training step, forward and backward. Prints the
fraction of the activations checkpointing keeps and its time ratio against the plain model;
one more forward pass on top of a backward pass that costs about two should make it about 4/3.
Torch runs on one thread: on a shared two-core machine a second thread makes timings erratic.
"""

from __future__ import annotations

import time

import torch

from llmtrain._threads import one_torch_thread
from llmtrain.pretraining import GPT, GPTConfig, activation_memory, measure_saved_activations

VOCAB = 256
SIZES = [  # (n_layer, n_embd, n_head, block_size s, micro-batch b)
    (4, 128, 4, 128, 8),
    (8, 128, 4, 128, 8),
    (8, 256, 8, 128, 4),
]
REPEATS = 5  # steps timed per model, alternating the two; the fastest counts


def _step_seconds(model: GPT, idx: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    _, loss = model(idx, idx)
    loss.backward()
    return time.perf_counter() - start


def main() -> None:
    with one_torch_thread():
        _run()


def _run() -> None:
    widths = dict(L=2, d=4, s=4, b=2, plain_MiB=10, ckpt_MiB=9, kept=6, formula=8,
                  plain_ms=9, ckpt_ms=8, time=6)  # fmt: skip
    print(" ".join(f"{name.replace('_', ' '):>{w}s}" for name, w in widths.items()))
    ratios = []
    for n_layer, n_embd, n_head, s, b in SIZES:
        idx = torch.randint(VOCAB, (b, s), generator=torch.Generator().manual_seed(0))
        models, saved = {}, {}
        for checkpointed in (False, True):
            torch.manual_seed(0)  # the same weights in both models
            config = GPTConfig(
                vocab_size=VOCAB, block_size=s, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                checkpoint_activations=checkpointed,
            )  # fmt: skip
            models[checkpointed] = GPT(config)
            saved[checkpointed] = measure_saved_activations(models[checkpointed], idx, idx)
        # The count of the memory chapter, fp32 and no dropout, with SDPA's fused attention.
        formula = {
            r: activation_memory(config, s, b, bytes_per_value=4, dropout=False,
                                 attention="fused", recompute=r).total
            for r in ("none", "full")
        }  # fmt: skip
        for model in models.values():
            _step_seconds(model, idx)  # warm-up: allocator, thread pool
        times = {False: [], True: []}
        for _ in range(REPEATS):  # alternate, so that a busy moment slows both alike
            for checkpointed, model in models.items():
                times[checkpointed].append(_step_seconds(model, idx))
        t_plain, t_ckpt = min(times[False]), min(times[True])
        kept = saved[True] / saved[False]
        ratios.append((kept, t_ckpt / t_plain))
        print(f"{n_layer:2d} {n_embd:4d} {s:4d} {b:2d} {saved[False] / 2**20:10.2f} "
              f"{saved[True] / 2**20:9.2f} {kept:6.1%} "
              f"{formula['full'] / formula['none']:8.1%} {1000 * t_plain:9.1f} "
              f"{1000 * t_ckpt:8.1f} {t_ckpt / t_plain:5.2f}x")  # fmt: skip
    print(
        "kept: saved activations with checkpointing / without (formula: the same by "
        "activation_memory); time: step time with / without (one more forward pass: ~1.33x)"
    )
    for (n_layer, n_embd, *_), (kept, slow) in zip(SIZES, ratios, strict=True):
        print(
            f"L={n_layer} d={n_embd}: checkpointing saves {1 - kept:.1%} of the activations "
            f"for {slow - 1:+.0%} time per step"
        )


if __name__ == "__main__":
    main()
