"""The trainer's model FLOPs utilisation on this machine.

For a couple of model sizes, ``measure_training_throughput`` times updates of the book's
trainer (forward, backward, clipping, AdamW) and counts its model FLOPs, F_train per token
times tokens per second; the reference is the machine's float32 matrix-product speed from
``measure_matmul_flops``, and MFU is the ratio of the two. Torch runs on one thread, for the
trainer and the matrix product alike: on a shared two-core machine a second thread makes
timings erratic, and the peak is then that of one core.
"""

from __future__ import annotations

from llmtrain._threads import one_torch_thread
from llmtrain.pretraining import TrainConfig, measure_matmul_flops, measure_training_throughput

VOCAB = 256
SIZES = [  # (n_layer, n_embd, n_head, block_size, batch_size)
    (4, 128, 4, 128, 8),
    (8, 256, 8, 128, 8),
]


def main() -> None:
    with one_torch_thread():
        _run()


def _run() -> None:
    peak = max(measure_matmul_flops(n) for n in (512, 1024))  # the best the hardware does
    print(f"matmul peak (float32, one thread): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'L':>2s} {'d':>4s} {'s':>4s} {'B':>3s} {'F_train':>10s} {'tokens/s':>9s} "
          f"{'ms/step':>8s} {'GFLOP/s':>8s} {'MFU':>6s}")  # fmt: skip
    for n_layer, n_embd, n_head, block_size, batch_size in SIZES:
        config = TrainConfig(
            n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
            batch_size=batch_size, grad_accum=1, warmup_iters=0,
        )  # fmt: skip
        run = measure_training_throughput(config, vocab_size=VOCAB, steps=4)
        print(f"{n_layer:2d} {n_embd:4d} {block_size:4d} {batch_size:3d} "
              f"{run.flops_per_token:10.3g} {run.tokens_per_second:9.0f} "
              f"{1000 * run.seconds_per_step:8.1f} {run.flops_per_second / 1e9:8.2f} "
              f"{run.mfu(peak):6.1%}")  # fmt: skip
    print("MFU: model FLOPs per second (F_train x tokens/s) / the matmul peak")


if __name__ == "__main__":
    main()
