"""Supervised fine-tuning: the loss on the response tokens only, packing with document masks,
and the fine-tuning run, which is Part III's training loop on batches of examples.

An example is a prompt in the chat template followed by its response. The model reads the
whole sequence, but only the response's tokens are targets: the labels of the prompt's
positions are -100, which :func:`torch.nn.functional.cross_entropy` ignores. The loss of a
batch is the mean over its response tokens (every response token of the batch weighs the
same, so a long answer counts more than a short one).

Packing puts several examples one after the other into a row of ``block_size`` tokens, so
that little of the row is padding. A *document mask* keeps them apart: a token attends only
to the earlier tokens of its own example, and positions restart at every example
(:func:`~llmtrain.pretraining.document_mask`), so a packed row computes exactly the losses
of its examples read one by one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import check_int
from .._threads import one_torch_thread
from ..pretraining import GPT, LoopConfig, Tokenizer, TrainResult, train_loop
from .chat import encode_chat
from .task_world import Example

__all__ = [
    "FinetuneConfig",
    "PackedExamples",
    "finetune",
    "sft_tokens",
]

IGNORE = -100  # the label of a position that carries no loss (PyTorch's ignore_index)


@dataclass
class FinetuneConfig(LoopConfig):
    """The hyperparameters of a fine-tuning run: Part III's :class:`LoopConfig` with
    defaults for fine-tuning (a short run, a few warmup steps, no weight decay, rows of 64
    tokens, the forward pass in bfloat16) and the choice of packing.

    The default ``dtype="bfloat16"`` runs the forward pass under autocast, with float32
    weights and optimizer (Part III's mixed precision): on a CPU with bfloat16 instructions
    it makes the book's fine-tuning runs about a fifth faster.

    Parameters
    ----------
    packing : bool
        Pack several examples into each row with document masks (True), or put one example
        in each row and pad it (False).
    """

    batch_size: int = 16
    block_size: int = 64
    dtype: str = "bfloat16"
    max_iters: int = 300
    lr: float = 1e-3
    warmup_iters: int = 20
    weight_decay: float = 0.0
    eval_interval: int = 100
    eval_iters: int = 4
    packing: bool = True


def sft_tokens(tokenizer: Tokenizer, example: Example) -> tuple[list[int], list[int]]:
    """Inputs and labels of one example, each one token shorter than the sequence: the
    label of input position i is the token at i + 1, or -100 where that token is part of
    the prompt.

    Implements :prf:ref:`alg-sft-loss-mask`.
    """
    prompt_ids, response_ids = encode_chat(tokenizer, example.prompt, example.response)
    ids = prompt_ids + response_ids
    labels = [IGNORE] * (len(prompt_ids) - 1) + response_ids
    return ids[:-1], labels


class PackedExamples:
    """Fine-tuning batches for :func:`~llmtrain.pretraining.train_loop`: rows of ``block_size``
    tokens, each holding whole examples drawn at random.

    Implements :prf:ref:`alg-packing`.

    ``batch(n, generator)`` returns ``(inputs, labels, documents)``, each of shape
    (n, ``block_size``): with ``packing``, examples are drawn one at a time and appended to
    the current row while they fit (the one that does not fit starts the next row); without,
    each row holds one example. The rest of a row is padding, whose labels are -100 and
    which forms a document of its own. ``documents`` numbers the examples of each row, so
    that ``model(inputs, labels, documents)`` reads every example on its own.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        examples: Sequence[Example],
        block_size: int,
        *,
        packing: bool = True,
    ):
        self.block_size = check_int("block_size", block_size, 2)
        if len(examples) == 0:
            raise ValueError("examples must hold at least one example")
        self.packing = bool(packing)
        self.examples = [sft_tokens(tokenizer, e) for e in examples]
        self.pad_id = tokenizer.special_tokens["<|end|>"]
        longest = max(len(ids) for ids, _ in self.examples)
        if longest > self.block_size:
            raise ValueError(
                f"block_size must be at least the longest example's {longest} tokens, "
                f"got {self.block_size}"
            )

    def _rows(self, n: int, generator: torch.Generator) -> list[list[tuple[list, list]]]:
        rows: list[list[tuple[list, list]]] = [[]]
        used = 0
        while True:
            example = self.examples[
                int(torch.randint(len(self.examples), (1,), generator=generator))
            ]
            if rows[-1] and (not self.packing or used + len(example[0]) > self.block_size):
                if len(rows) == n:
                    return rows
                rows.append([])
                used = 0
            rows[-1].append(example)
            used += len(example[0])

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        T = self.block_size
        inputs = torch.full((n, T), self.pad_id, dtype=torch.long)
        labels = torch.full((n, T), IGNORE, dtype=torch.long)
        documents = torch.zeros((n, T), dtype=torch.long)
        for r, row in enumerate(self._rows(n, generator)):
            at = 0
            for d, (ids, target) in enumerate(row):
                inputs[r, at : at + len(ids)] = torch.tensor(ids)
                labels[r, at : at + len(ids)] = torch.tensor(target)
                documents[r, at : at + len(ids)] = d
                at += len(ids)
            documents[r, at:] = len(row)  # the padding: a document of its own
        return inputs, labels, documents

    def prompt(self) -> torch.Tensor:
        ids, labels = self.examples[0]
        return torch.tensor(ids[: labels.count(IGNORE) + 1])

    def digest(self) -> str:
        content = json.dumps([self.block_size, self.packing, self.examples])
        return hashlib.sha256(content.encode()).hexdigest()

    def fill(self, n: int = 64, seed: int = 0) -> float:
        """The fraction of the tokens of n rows that belong to an example (not padding)."""
        rows = self._rows(n, torch.Generator().manual_seed(seed))
        return sum(len(ids) for row in rows for ids, _ in row) / (n * self.block_size)


def finetune(
    model: GPT,
    tokenizer: Tokenizer,
    train_examples: Sequence[Example],
    val_examples: Sequence[Example],
    config: FinetuneConfig | None = None,
    *,
    progress: bool = False,
    out=None,
    resume: bool = False,
) -> TrainResult:
    """Supervised fine-tuning of ``model`` on instruction examples, in place: Part III's
    :func:`~llmtrain.pretraining.train_loop` on :class:`PackedExamples` batches. Only parameters
    with ``requires_grad`` are trained (all of them, or the adapters after
    :func:`~llmtrain.posttraining.apply_lora`). Torch runs on one thread meanwhile (the
    book's small models only lose time to a second), so the weights do not depend on the
    caller's thread setting. Returns the :class:`TrainResult`, whose losses are the mean
    losses per response token."""
    config = FinetuneConfig() if config is None else config
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    if config.block_size > model.config.block_size:
        raise ValueError(
            f"block_size must be at most the model's context of {model.config.block_size} "
            f"tokens, got {config.block_size}"
        )
    train_data = PackedExamples(
        tokenizer, train_examples, config.block_size, packing=config.packing
    )
    val_data = PackedExamples(tokenizer, val_examples, config.block_size, packing=config.packing)
    with one_torch_thread():  # the book's small models lose time to a second thread
        return train_loop(
            model,
            train_data,
            val_data,
            config,
            tokenizer=tokenizer,
            out=out,
            resume=resume,
            progress=progress,
        )
