"""Speed of generation with the KV cache (``GPT.generate``) against the loop that recomputes the
whole prefix at every step, and of the two attention implementations of the GPT's forward pass
(``scaled_dot_product_attention`` and the written-out softmax(QKᵀ/√d_k + M)V). Untrained
models: the speed does not depend on the weights."""

from __future__ import annotations

import time

import torch

from llmtrain.pretraining import GPT, GPTConfig


def _recompute(model: GPT, idx: torch.Tensor, n: int) -> torch.Tensor:
    for _ in range(n):
        with torch.no_grad():
            logits, _ = model(idx[:, -model.config.block_size :])
        idx = torch.cat((idx, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    return idx


def _seconds(fn, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=512, block_size=512, n_layer=4, n_head=4, n_embd=128)
    model = GPT(config).eval()
    prompt = torch.randint(0, 512, (1, 16))
    print(f"{'new tokens':>10s} {'cache ms/token':>15s} {'recompute ms/token':>19s} {'same':>5s}")
    for n in (64, 256, 480):
        cached = model.generate(prompt, n, temperature=0)
        same = torch.equal(cached, _recompute(model, prompt, n))
        t_cache = _seconds(lambda n=n: model.generate(prompt, n, temperature=0))
        t_full = _seconds(lambda n=n: _recompute(model, prompt, n), repeat=1)
        print(f"{n:10d} {1000 * t_cache / n:15.2f} {1000 * t_full / n:19.2f} {same!s:>5s}")

    print(f"\n{'attention':>10s} {'forward ms (B=8, T=512)':>24s}")
    idx = torch.randint(0, 512, (8, 512))
    for attention in ("sdpa", "explicit"):
        m = GPT(GPTConfig(**{**config.to_dict(), "attention": attention})).eval()
        with torch.no_grad():
            t = _seconds(lambda m=m: m(idx), repeat=3)
        print(f"{attention:>10s} {1000 * t:24.1f}")


if __name__ == "__main__":
    main()
