"""Data parallelism on this machine: the book's trainer on one process and under
``torchrun --nproc_per_node=2`` (DDP, gloo), on the same global batch, one thread per process.
Prints the training throughput of each (evaluation excluded) and the scaling efficiency
(tokens/s on 2 processes) / (2 × tokens/s on 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from llmtrain.objectives import synthetic_corpus

DATA = Path("/work/shared/data/tinyshakespeare.txt")
OPTIONS = dict(
    n_layer=2, n_head=4, n_embd=128, block_size=128, batch_size=16, grad_accum=2,
    max_iters=30, eval_interval=30, eval_iters=1, warmup_iters=2,
)  # fmt: skip


def _tokens_per_s(processes: int, data: Path, out: Path) -> float:
    command = [sys.executable, "-m", "llmtrain.pretraining.train"]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}", "-m", "llmtrain.pretraining.train"]  # fmt: skip
    command += ["--data", str(data), "--out", str(out), "--quiet"]
    command += [f"--{k.replace('_', '-')}={v}" for k, v in OPTIONS.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, capture_output=True, timeout=900, env=env)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return records[-1]["tokens_per_s"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = DATA
        if not data.is_file():
            data = tmp / "text.txt"
            data.write_text(synthetic_corpus(200_000, seed=0), encoding="utf-8")
        one = _tokens_per_s(1, data, tmp / "one")
        two = _tokens_per_s(2, data, tmp / "two")
    tokens = OPTIONS["batch_size"] * OPTIONS["grad_accum"] * OPTIONS["block_size"]
    print(f"{'processes':>9s} {'tokens/s':>10s} {'ms/update':>10s}")
    for n, tps in ((1, one), (2, two)):
        print(f"{n:9d} {tps:10.0f} {1000 * tokens / tps:10.1f}")
    print(f"scaling efficiency on 2 processes: {two / (2 * one):.2f}")


if __name__ == "__main__":
    main()
