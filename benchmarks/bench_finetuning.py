"""Part IV's training runs, timed from scratch (no cache): the base model's pretraining and
one fine-tuning run each of full fine-tuning, LoRA and QLoRA, the runs the chapters cache.

Prints each run's training time (the trainer's clock, evaluations excluded), its exact match
on the 400 held-out prompts, and the time of LoRA and QLoRA against full fine-tuning, the
reference they compete with. The runs are the package's own (``base_model`` and
``cached_finetune``) in a temporary cache directory, so the numbers are those a clean build
pays. Torch runs on one thread, as in the chapters. Takes about two minutes on an idle
two-core machine.
"""

from __future__ import annotations

import os
import tempfile
import time

from llmtrain._threads import one_torch_thread


def main() -> None:
    with tempfile.TemporaryDirectory() as cache, one_torch_thread():
        previous = os.environ.get("LLMTRAIN_CACHE")
        os.environ["LLMTRAIN_CACHE"] = cache
        try:
            _run()
        finally:
            if previous is None:
                del os.environ["LLMTRAIN_CACHE"]
            else:
                os.environ["LLMTRAIN_CACHE"] = previous


def _run() -> None:
    from llmtrain.posttraining import (
        BASE_MODEL_CONFIG,
        base_model,
        cached_finetune,
        exact_match,
        make_examples,
    )

    test = make_examples("test", 400, seed=1)
    start = time.perf_counter()
    base, tokenizer = base_model()
    base_s = time.perf_counter() - start
    header = ("run", 6), ("updates", 7), ("train s", 8), ("ms/update", 9), ("exact match", 11)
    print(" ".join(f"{name:>{width}}" for name, width in header), f"{'vs full':>7}")
    base_ms = 1000 * base_s / BASE_MODEL_CONFIG.max_iters
    print(
        f"{'base':>6} {BASE_MODEL_CONFIG.max_iters:7d} {base_s:8.1f} {base_ms:9.1f} "
        f"{exact_match(base, tokenizer, test):11.1%} {'':>7}"
    )
    full_s = None
    for method in ("full", "lora", "qlora"):
        run = cached_finetune(method)
        updates = len(run.losses)
        full_s = run.seconds if method == "full" else full_s
        ratio = run.seconds / full_s
        print(
            f"{method:>6} {updates:7d} {run.seconds:8.1f} {1000 * run.seconds / updates:9.1f} "
            f"{exact_match(run.model, tokenizer, test):11.1%} {ratio:6.2f}x"
        )
