"""A tiny untrained GPT on the chat tokenizer's vocabulary, for the tests of Part IV's
objectives that need a model (its shapes, its gradients), not a trained one."""

import torch

from llmtrain.pretraining import GPT, GPTConfig


def tiny_gpt(seed: int = 0) -> GPT:
    """One layer of width 32 with RoPE, context 64, initialised from ``seed``."""
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=259, block_size=64, n_layer=1, n_head=2, n_embd=32, position="rope"
    )
    return GPT(config)
