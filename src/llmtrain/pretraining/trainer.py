"""The book's trainer: the pretraining recipe of modern LLMs, on any text, from Python or a shell.

One function, :func:`pretrain`, trains a :class:`~llmtrain.pretraining.GPT` on a text with
Part I's own tools: :class:`~llmtrain.optim.AdamW` with parameter groups (weight decay on
matrices only), :func:`~llmtrain.optim.warmup_cosine` through
:class:`~llmtrain.optim.ScheduledLR`, :func:`~llmtrain.optim.accumulate_gradients` and
:func:`~llmtrain.optim.clip_grad_norm_`. It is deterministic (a seed fixes every random draw)
and resumable (a checkpoint holds everything the next step depends on, so a resumed run logs
bit for bit the losses of an uninterrupted one).

From a shell::

    python -m llmtrain.pretraining.train --data FILE --out DIR [--resume] [options]

trains on the UTF-8 text file FILE and writes into DIR the tokenizer (``tokenizer.json``),
one JSON record per evaluation (``log.jsonl``), the checkpoint (``ckpt.pt``) and the loss
curves (``loss.png``). ``--help`` lists the options, which are the fields of
:class:`TrainConfig`.

On many processes::

    torchrun --nproc_per_node=N -m llmtrain.pretraining.train --data FILE --out DIR [options]

trains the same run data-parallel (:prf:ref:`alg-data-parallel-step`): every process draws the
same global batch of ``batch_size`` · ``grad_accum`` sequences and takes its 1/N share,
DistributedDataParallel averages the gradients, and only process 0 writes files. The
checkpoint is the single-process one, so a run started on N processes resumes on any number.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .._checks import check_int, check_real
from ..optim import (
    SGD,
    AdamW,
    Lion,
    Muon,
    ScheduledLR,
    accumulate_gradients,
    clip_grad_norm_,
    warmup_cosine,
)
from .gpt import GPT, GPTConfig
from .tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "LoopConfig",
    "TokenWindows",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "configure_optimizer",
    "pretrain",
    "read_text_file",
    "train_loop",
    "train_step",
]

CHECKPOINT = "ckpt.pt"
LOG = "log.jsonl"
TOKENIZER = "tokenizer.json"
PLOT = "loss.png"
_CKPT_VERSION = 1
OPTIMIZERS = ("adamw", "sgd", "lion", "muon")
# Fields that change what is printed, never a number the run computes: a resumed run may
# change them.
_COSMETIC = ("sample_every", "sample_tokens")


@dataclass
class LoopConfig:
    """The hyperparameters of the training loop itself, shared by pretraining
    (:class:`TrainConfig`) and fine-tuning (:class:`~llmtrain.posttraining.FinetuneConfig`).

    Parameters
    ----------
    batch_size : int
        B/K, the sequences in one micro-batch.
    grad_accum : int
        K, the micro-batches accumulated into one update: an update sees
        B = K · ``batch_size`` sequences of ``block_size`` tokens.
    block_size : int
        The length of every sequence of a batch, in tokens.
    max_iters : int
        The number of updates.
    lr_decay_iters : int, optional
        T, the update at which the cosine reaches ``min_lr``; ``max_iters`` if None.
    lr, min_lr : float
        The peak α_max and the floor α_min of the schedule; ``min_lr`` defaults to lr / 10.
    warmup_iters : int
        T_w, the updates of linear warmup, in [0, T − 1].
    optimizer : {"adamw", "sgd", "lion", "muon"}
        The update rule, from Part I (see :func:`configure_optimizer`): AdamW (the recipe),
        SGD with heavy-ball momentum β₁, Lion with betas (β₁, β₂), or Muon (momentum β₁) on
        the blocks' weight matrices with AdamW on the rest.
    beta1, beta2, weight_decay : float
        AdamW's β₁, β₂ and decoupled weight decay λ (matrices only); the other optimizers
        reuse them as :func:`configure_optimizer` says.
    grad_clip : float
        The threshold c of global-norm clipping; 0 turns clipping off.
    eval_interval : int
        Evaluate (and checkpoint) every this many updates, and after the last one.
    eval_iters : int
        Batches per split in each evaluation (the same batches every time).
    dtype : {"float32", "bfloat16"}
        ``bfloat16`` runs the forward pass under CPU autocast; weights, gradients and the
        optimizer stay in float32.
    seed : int
        Seeds the initialisation, the batches, dropout and the samples.
    sample_every : int
        Print a sample every this many updates (a multiple of ``eval_interval`` shows it
        with the evaluation); 0 never.
    sample_tokens : int
        The length of each sample, in tokens.
    """

    batch_size: int = 16
    grad_accum: int = 1
    block_size: int = 128
    max_iters: int = 1000
    lr_decay_iters: int | None = None
    lr: float = 1e-3
    min_lr: float | None = None
    warmup_iters: int = 100
    optimizer: str = "adamw"
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 100
    eval_iters: int = 20
    dtype: str = "float32"
    seed: int = 0
    sample_every: int = 0
    sample_tokens: int = 200

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        check_int("block_size", self.block_size, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("grad_accum", self.grad_accum, 1)
        check_int("max_iters", self.max_iters, 1)
        if self.lr_decay_iters is not None:
            check_int("lr_decay_iters", self.lr_decay_iters, 1)
        check_int("warmup_iters", self.warmup_iters, 0, self.decay_iters - 1)
        check_real("lr", self.lr, 0.0, low_open=True)
        if self.min_lr is not None:
            check_real("min_lr", self.min_lr, 0.0, self.lr)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}, "
                f"got {self.optimizer!r}"
            )
        check_real("beta1", self.beta1, 0.0, 1.0, high_open=True)
        check_real("beta2", self.beta2, 0.0, 1.0, high_open=True)
        check_real("weight_decay", self.weight_decay, 0.0)
        check_real("grad_clip", self.grad_clip, 0.0)
        check_int("eval_interval", self.eval_interval, 1)
        check_int("eval_iters", self.eval_iters, 1)
        check_int("seed", self.seed, 0)
        check_int("sample_every", self.sample_every, 0)
        check_int("sample_tokens", self.sample_tokens, 1)

    @property
    def decay_iters(self) -> int:
        """T: ``lr_decay_iters``, or ``max_iters`` when that is None."""
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    @property
    def floor_lr(self) -> float:
        """α_min: ``min_lr``, or lr / 10 (GPT-3's floor) when that is None."""
        return self.lr / 10 if self.min_lr is None else self.min_lr

    @property
    def tokens_per_iter(self) -> int:
        """Tokens in one update: B n_ctx = ``batch_size`` · K · ``block_size``."""
        return self.batch_size * self.grad_accum * self.block_size

    def schedule(self, t):
        """α_t, the learning rate of update t = 1, 2, ...: Part I's warmup_cosine."""
        return warmup_cosine(
            t, lr=self.lr, total=self.decay_iters, warmup=self.warmup_iters, min_lr=self.floor_lr
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainConfig(LoopConfig):
    """Every hyperparameter of a pretraining run; the defaults are the book's recipe.

    The loop's hyperparameters are those of :class:`LoopConfig`; the others choose the
    tokenizer, the model and the split. The command line has one option per field
    (``n_layer`` is ``--n-layer``).

    Parameters
    ----------
    tokenizer : {"char", "bpe"}
        A character-level tokenizer, or byte-level BPE with ``vocab_size`` tokens, trained
        on the whole text (both splits, as nanoGPT does for its character vocabulary).
    vocab_size : int
        V for BPE, at least 256 (the byte tokens); ignored for characters.
    n_layer, n_head, n_embd, dropout, bias, position, norm, mlp :
        The model's shape, as in :class:`~llmtrain.pretraining.GPTConfig`; its context is
        ``block_size``.
    val_fraction : float
        The last fraction of the tokens held out for validation, in (0, 1).
    """

    tokenizer: str = "char"
    vocab_size: int = 512
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False
    position: str = "learned"
    norm: str = "layernorm"
    mlp: str = "gelu"
    val_fraction: float = 0.1

    def __post_init__(self):
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError(f"tokenizer must be 'char' or 'bpe', got {self.tokenizer!r}")
        if self.tokenizer == "bpe":
            check_int("vocab_size", self.vocab_size, 256)
        self.model_config(vocab_size=1)  # GPTConfig's own checks name the bad argument
        super().__post_init__()
        check_real("val_fraction", self.val_fraction, 0.0, 1.0, low_open=True, high_open=True)

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The :class:`GPTConfig` of the model this run trains, for a vocabulary of V ids."""
        return GPTConfig(
            vocab_size=vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            dropout=self.dropout,
            bias=self.bias,
            position=self.position,
            norm=self.norm,
            mlp=self.mlp,
        )


@dataclass
class TrainResult:
    """What :func:`pretrain` and :func:`train_loop` return.

    Attributes
    ----------
    model : GPT
        The trained model, in eval mode.
    tokenizer : Tokenizer or None
        The tokenizer of the text (None when ``pretrain`` was given token ids and no tokenizer).
    config : LoopConfig
        The run's :class:`TrainConfig` (or fine-tuning config).
    log : list of dict
        One record per evaluation: ``iter``, ``train_loss``, ``val_loss``, ``lr``,
        ``elapsed_s``, ``tokens_per_s`` (and ``sample`` when one was drawn then).
    losses : list of float
        The training loss of every update's batch, in order.
    samples : list of tuple
        ``(iter, text)`` for every sample drawn.
    """

    model: GPT
    tokenizer: Tokenizer | None
    config: LoopConfig
    log: list[dict]
    losses: list[float] = field(default_factory=list)
    samples: list[tuple[int, str]] = field(default_factory=list)

    @property
    def train_loss(self) -> float:
        """The training loss of the last evaluation."""
        return self.log[-1]["train_loss"]

    @property
    def val_loss(self) -> float:
        """The validation loss of the last evaluation."""
        return self.log[-1]["val_loss"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; ``iteration`` is the update t at which it did."""

    def __init__(self, message: str, iteration: int | None = None):
        super().__init__(message)
        self.iteration = iteration


# -- data --------------------------------------------------------------------------------------


def read_text_file(path) -> str:
    """The contents of a UTF-8 text file, with errors that say what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist or is not a file")
    raw = path.read_bytes()
    if not raw:
        raise ValueError(f"data file {str(path)!r} is empty")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"data file {str(path)!r} is not UTF-8 text: byte {raw[error.start]:#04x} at "
            f"offset {error.start} cannot be decoded"
        ) from None


def _tokenize(data, config: TrainConfig, tokenizer: Tokenizer | None):
    """The tokenizer (trained on ``data`` if not given) and the token ids as a tensor."""
    if isinstance(data, str):
        if not data:
            raise ValueError("the training text is empty")
        if tokenizer is None:
            if config.tokenizer == "char":
                from .char_tokenizer import CharTokenizer

                tokenizer = CharTokenizer.train(data)
            else:
                from .bpe import BPETokenizer

                tokenizer = BPETokenizer.train(data, config.vocab_size)
        ids = torch.tensor(tokenizer.encode(data), dtype=torch.long)
    else:
        ids = torch.as_tensor(data, dtype=torch.long)
        if ids.ndim != 1 or len(ids) == 0:
            raise ValueError(f"token ids must be a non-empty 1-D sequence, got shape {ids.shape}")
        V = tokenizer.vocab_size if tokenizer is not None else int(ids.max()) + 1
        if int(ids.min()) < 0 or int(ids.max()) >= V:
            raise ValueError(f"token ids must lie in [0, {V}), got [{ids.min()}, {ids.max()}]")
    return tokenizer, ids


def _split(ids: torch.Tensor, config: TrainConfig):
    """Training and validation tokens: the validation split is the last ``val_fraction``."""
    n_train = int(len(ids) * (1 - config.val_fraction))
    train, val = ids[:n_train], ids[n_train:]
    need = config.block_size + 1
    for name, part in (("training", train), ("validation", val)):
        if len(part) < need:
            raise ValueError(
                f"the {name} split has {len(part)} tokens, fewer than block_size + 1 = {need} "
                f"(the text has {len(ids)} tokens, val_fraction={config.val_fraction}); "
                "use a longer text or a smaller block_size"
            )
    return train, val


class TokenWindows:
    """Pretraining's batches: windows of ``block_size`` + 1 tokens at uniformly random
    offsets of a token sequence, cut into inputs and targets (the targets shifted by one).

    :func:`train_loop` draws its batches from any object with the same three methods, so that
    fine-tuning (:class:`~llmtrain.posttraining.PackedExamples`) reuses this trainer.
    """

    def __init__(self, ids: torch.Tensor, block_size: int):
        self.ids, self.block_size = ids, block_size

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """A micro-batch of n sequences, the arguments of ``model(*batch)``."""
        starts = torch.randint(len(self.ids) - self.block_size, (n,), generator=generator)
        windows = self.ids[starts[:, None] + torch.arange(self.block_size + 1)]
        return windows[:, :-1], windows[:, 1:]

    def prompt(self) -> torch.Tensor:
        """The prompt of the samples drawn during training: the first token."""
        return self.ids[:1]

    def digest(self) -> str:
        """A hash of the data, which a resumed run must match."""
        return hashlib.sha256(self.ids.numpy().tobytes()).hexdigest()


# -- the loop ----------------------------------------------------------------------------------


def _autocast(config: TrainConfig):
    if config.dtype == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def _evaluate(model, splits, config: TrainConfig) -> dict[str, float]:
    """The mean loss over ``eval_iters`` batches of each split, drawn by a generator of its
    own, seeded afresh each time: every evaluation sees the same batches, and evaluating
    never moves the training run's random state."""
    model.eval()
    out = {}
    for name, data in splits.items():
        generator = torch.Generator().manual_seed(config.seed + 1)
        total = 0.0
        for _ in range(config.eval_iters):
            batch = data.batch(config.batch_size, generator)
            with _autocast(config):
                total += float(model(*batch)[1])
        out[name] = total / config.eval_iters
    model.train()
    return out


def _sample(model, tokenizer, prompt: torch.Tensor, config: TrainConfig) -> str:
    generator = torch.Generator().manual_seed(config.seed)
    ids = model.generate(prompt[None, :1], config.sample_tokens, generator=generator)[0]
    return tokenizer.decode(ids.tolist()) if tokenizer is not None else str(ids.tolist())


class _Optimizers(torch.optim.Optimizer):
    """Several optimizers stepped as one (Muon on some matrices, AdamW on the rest).

    ``param_groups`` is the list of the members' own group dicts, so a scheduler that sets
    ``group["lr"]`` sets it in the member that uses it; the state dict is the list of the
    members' state dicts. It does not call ``Optimizer.__init__``: it owns no parameters.
    """

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers
        self.defaults = {}
        self.state = {}

    @property
    def param_groups(self) -> list[dict]:
        # Read afresh each time: loading a state dict gives the members new group dicts.
        return [g for opt in self.optimizers for g in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        for opt, state in zip(self.optimizers, state_dict["optimizers"], strict=True):
            opt.load_state_dict(state)


def configure_optimizer(model: GPT, config: TrainConfig):
    """Part I's optimizer ``config.optimizer`` on the model's two parameter groups (weight
    decay λ on the weight matrices, none on embeddings, norms and biases), driven by the
    warmup-cosine schedule.

    - ``"adamw"``: :class:`~llmtrain.optim.AdamW`, betas (β₁, β₂), decoupled decay λ.
    - ``"sgd"``: :class:`~llmtrain.optim.SGD` with heavy-ball momentum β₁ (no Nesterov) and
      weight decay λ coupled as torch's SGD couples it (λθ added to the gradient).
    - ``"lion"``: :class:`~llmtrain.optim.Lion`, betas (β₁, β₂), decoupled decay λ.
    - ``"muon"``: :class:`~llmtrain.optim.Muon` (momentum β₁, Nesterov, decay λ) on the
      weight matrices of the transformer blocks, with ``adjust_lr_fn="match_rms_adamw"``
      so that its update has AdamW's RMS and one α serves both; AdamW as above on the
      embeddings (and the tied head), norms and biases. The two are stepped as one.

    Returns ``(optimizer, scheduler)``: the optimizer and a :class:`~llmtrain.optim.ScheduledLR`
    that sets α_t = :meth:`LoopConfig.schedule` (t) in every group for update t.
    """
    groups = model.parameter_groups(config.weight_decay)
    betas = (config.beta1, config.beta2)
    if config.optimizer == "sgd":
        optimizer = SGD(groups, lr=config.lr, momentum=config.beta1)
    elif config.optimizer == "lion":
        optimizer = Lion(groups, lr=config.lr, betas=betas)
    elif config.optimizer == "muon":
        in_blocks = {id(p) for p in model.transformer.h.parameters()}
        matrices = [p for p in groups[0]["params"] if id(p) in in_blocks]
        rest = [p for p in groups[0]["params"] if id(p) not in in_blocks]
        muon = Muon(
            matrices,
            lr=config.lr,
            weight_decay=config.weight_decay,
            momentum=config.beta1,
            adjust_lr_fn="match_rms_adamw",
        )
        adamw_groups = [{**groups[0], "params": rest}, groups[1]]
        adamw_groups = [g for g in adamw_groups if g["params"]]
        optimizer = _Optimizers([muon, AdamW(adamw_groups, lr=config.lr, betas=betas)])
    else:
        optimizer = AdamW(groups, lr=config.lr, betas=betas)
    return optimizer, ScheduledLR(optimizer, config.schedule)


def train_step(model, optimizer, scheduler, micro_batches, config: TrainConfig) -> float:
    """One update from K micro-batches ``(inputs, targets)``: accumulate the gradient of
    their mean loss (the forward passes under autocast when ``config.dtype`` is bfloat16),
    clip its global norm at ``config.grad_clip``, step the optimizer and the schedule.

    Returns the loss of the whole batch; raises :class:`TrainingDiverged`, before touching
    the weights, if it is NaN or infinite.

    Implements :prf:ref:`alg-data-parallel-step` when ``model`` is a
    :class:`~torch.nn.parallel.DistributedDataParallel`: then the micro-batches
    are this process's share of the batch (the shares equal in size): the gradient is averaged
    over the processes once, after the last micro-batch, and the loss returned is the mean over
    the processes, that of the whole batch.
    """
    optimizer.zero_grad(set_to_none=True)
    micro_batches = list(micro_batches)
    parallel = isinstance(model, DistributedDataParallel)
    remaining = iter(range(len(micro_batches) - 1, -1, -1))

    def loss_of(batch):
        # DDP decides during the forward pass whether the backward all-reduces: only the last
        # micro-batch's does, the others just add into .grad (DDP's no_sync).
        accumulate_only = parallel and next(remaining) > 0
        with model.no_sync() if accumulate_only else contextlib.nullcontext(), _autocast(config):
            return model(*batch)[1]

    loss = accumulate_gradients(loss_of, micro_batches)
    if parallel:
        # The same number on every process, so that all of them stop if it is not finite.
        loss = _mean_over_processes(loss)
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"the loss is {loss}; try a lower learning rate (lr={config.lr:g}), a longer "
            f"warmup (warmup_iters={config.warmup_iters}) or gradient clipping (grad_clip=1.0)"
        )
    if config.grad_clip > 0:
        clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    scheduler.step()
    return loss


# -- many processes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _World:
    """This process's place in a data-parallel run: process ``rank`` of ``size``."""

    rank: int = 0
    size: int = 1


def _world() -> _World:
    """The processes torchrun started (its WORLD_SIZE, RANK, MASTER_ADDR, ... variables),
    joined into a gloo (CPU) process group on first use. A single process, without
    torch.distributed at all, when WORLD_SIZE is unset or 1."""
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return _World()
        dist.init_process_group("gloo")
    return _World(dist.get_rank(), dist.get_world_size())


def _check_world(config: TrainConfig, world: _World) -> None:
    B = config.batch_size * config.grad_accum
    if B % world.size:
        raise ValueError(
            f"the global batch of batch_size * grad_accum = {config.batch_size} * "
            f"{config.grad_accum} = {B} sequences must be divisible by the number of processes "
            f"({world.size}); choose batch_size or grad_accum so that it is"
        )


def _shard(micro_batches: list, config: TrainConfig, world: _World) -> list:
    """Process r's share of the global batch: rows [rB/N, (r+1)B/N) of the K micro-batches
    stacked, cut into micro-batches of at most ``batch_size`` rows (so that a process never
    holds more activations than a single-process run)."""
    if world.size == 1:
        return micro_batches
    stacked = [torch.cat(parts) for parts in zip(*micro_batches, strict=True)]
    share = len(stacked[0]) // world.size
    rows = slice(world.rank * share, (world.rank + 1) * share)
    return list(zip(*(t[rows].split(config.batch_size) for t in stacked), strict=True))


def _mean_over_processes(value: float) -> float:
    total = torch.tensor(value, dtype=torch.float64)
    dist.all_reduce(total)
    return total.item() / dist.get_world_size()


def pretrain(
    data: str | Sequence[int] | torch.Tensor,
    config: TrainConfig | None = None,
    *,
    out=None,
    tokenizer: Tokenizer | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict], bool | None] | None = None,
) -> TrainResult:
    """Train a GPT on a text with the book's recipe.

    Implements :prf:ref:`alg-pretraining-loop`.
    Implements :prf:ref:`alg-data-parallel-step` under ``torchrun`` (with :func:`train_step`).

    Parameters
    ----------
    data : str or sequence of int
        The text (tokenized with ``tokenizer``, or with a tokenizer trained on it as
        ``config.tokenizer`` says), or token ids.
    config : TrainConfig, optional
        The hyperparameters; ``TrainConfig()`` if None.
    out : path, optional
        A directory for ``tokenizer.json``, ``log.jsonl``, ``ckpt.pt`` (written at every
        evaluation and at the end) and ``loss.png``; nothing is written if None. Every file
        is written to a temporary file and moved into place, so none is ever half-written.
    tokenizer : Tokenizer, optional
        Use this tokenizer instead of training one.
    resume : bool
        Continue from ``out/ckpt.pt``, whose config and data must equal this run's. The
        resumed run computes exactly the losses the uninterrupted run would have.
    progress : bool
        Show a tqdm progress bar with the loss and tokens per second, and print samples.
    callback : callable, optional
        Called with each evaluation's record after it is logged (and checkpointed); if it
        returns True, training stops there (a later ``resume=True`` continues it).

    Under ``torchrun --nproc_per_node=N`` (WORLD_SIZE > 1) every process calls ``pretrain``
    with the same arguments and trains its share of each batch under DistributedDataParallel;
    ``batch_size * grad_accum`` must be divisible by N. Only process 0 writes files and shows
    progress; every process evaluates, calls ``callback`` (which must answer alike on all of
    them) and returns the same model. The checkpoint holds what a single process saves, so a
    run resumes on any number of processes.

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingDiverged
        If the loss becomes NaN or infinite.
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    _check_world(config, _world())
    if resume and out is None:
        raise ValueError("resume=True needs the out directory that holds the checkpoint")
    if resume and tokenizer is None and isinstance(data, str):
        _load_checkpoint(Path(out), config)  # a missing or mismatched checkpoint fails first
        tokenizer = load_tokenizer(Path(out) / TOKENIZER)
    # Everything that can fail on bad input fails here, before a single file is written.
    tokenizer, ids = _tokenize(data, config, tokenizer)
    train_ids, val_ids = _split(ids, config)
    V = tokenizer.vocab_size if tokenizer is not None else int(ids.max()) + 1
    # The run draws from the global RNG (initialisation, dropout); fork it so that the
    # caller's random state is the same after the call as before.
    with torch.random.fork_rng(devices=[]):
        _seed(config.seed)
        model = GPT(config.model_config(V))
        return train_loop(
            model,
            TokenWindows(train_ids, config.block_size),
            TokenWindows(val_ids, config.block_size),
            config,
            tokenizer=tokenizer,
            out=out,
            resume=resume,
            progress=progress,
            callback=callback,
        )


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the global state callers may draw from)


def train_loop(
    model: torch.nn.Module,
    train_data,
    val_data,
    config: LoopConfig,
    *,
    tokenizer: Tokenizer | None = None,
    out=None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict], bool | None] | None = None,
) -> TrainResult:
    """The training loop of :func:`pretrain`, for a model that already exists: the loop
    fine-tuning reuses.

    Implements :prf:ref:`alg-pretraining-loop`.

    ``train_data`` and ``val_data`` give the batches: :class:`TokenWindows` for
    pretraining, :class:`~llmtrain.posttraining.PackedExamples` for fine-tuning, or any
    object with their methods ``batch(n, generator)`` (a tuple, the arguments of
    ``model(*batch)``, whose second value is the loss), ``prompt()`` and ``digest()``.
    Only the parameters with ``requires_grad`` are trained. ``config`` is a
    :class:`LoopConfig` (or a subclass); ``tokenizer``, ``out``, ``resume``, ``progress``
    and ``callback`` are as in :func:`pretrain`, which this function serves. The model is
    trained in place and returned in eval mode, inside the :class:`TrainResult`.
    """
    if not isinstance(config, LoopConfig):
        raise TypeError(f"config must be a LoopConfig, got {type(config).__name__}")
    world = _world()
    _check_world(config, world)
    out = None if out is None else Path(out)
    if resume and out is None:
        raise ValueError("resume=True needs the out directory that holds the checkpoint")
    checkpoint = _load_checkpoint(out, config) if resume else None
    digest = hashlib.sha256((train_data.digest() + val_data.digest()).encode()).hexdigest()
    if checkpoint is not None and checkpoint["data_sha256"] != digest:
        raise ValueError(
            f"the checkpoint in {str(out)!r} was trained on different data; "
            "resume with the same text (and tokenizer)"
        )
    with torch.random.fork_rng(devices=[]):
        _seed(config.seed)
        splits = {"train": train_data, "val": val_data}
        return _run(
            config, out, tokenizer, model, splits, digest, checkpoint, progress, callback, world
        )


def _run(config, out, tokenizer, model, splits, digest, checkpoint, progress, callback, world):
    optimizer, scheduler = configure_optimizer(model, config)
    batches = torch.Generator().manual_seed(config.seed)  # the data position
    log, losses, samples = [], [], []
    start, elapsed = 0, 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        _set_rng(checkpoint["rng"], batches)
        start, elapsed = checkpoint["iter"], checkpoint["elapsed_s"]
        log, losses = checkpoint["log"], checkpoint["losses"]
        samples = [tuple(s) for s in checkpoint["samples"]]
    net = model
    if world.size > 1:
        # All processes hold the same weights and random state, which is what process 0 saves
        # (so the checkpoint does not depend on N); the others then draw dropout masks from
        # streams of their own.
        if world.rank > 0:
            torch.manual_seed(int(torch.randint(2**62, (1,))) + world.rank)
        net = DistributedDataParallel(model)
        out, progress = (out, progress) if world.rank == 0 else (None, False)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if tokenizer is not None:
            tokenizer.save(out / TOKENIZER)
    model.train()

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.max_iters, initial=start, unit="it", dynamic_ncols=True)

    def evaluate(t: int, tokens_per_s: float) -> bool:
        """Evaluate after update t, log, sample, checkpoint; True if the callback stops."""
        losses_now = _evaluate(model, splits, config)
        record = {
            "iter": t,
            "train_loss": losses_now["train"],
            "val_loss": losses_now["val"],
            "lr": float(config.schedule(max(t, 1))),
            "elapsed_s": elapsed,
            "tokens_per_s": tokens_per_s,
        }
        if config.sample_every and t % config.sample_every == 0:
            record["sample"] = _sample(model, tokenizer, splits["train"].prompt(), config)
            samples.append((t, record["sample"]))
        log.append(record)
        if bar is not None:
            bar.write(
                f"iter {t}: train {record['train_loss']:.4f}, val {record['val_loss']:.4f}"
                + (f"\n{record['sample']}" if "sample" in record else "")
            )
        if out is not None:
            state = {
                "version": _CKPT_VERSION,
                "config": config.to_dict(),
                "model_config": model.config.to_dict(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _get_rng(batches),
                "iter": t,
                "elapsed_s": elapsed,
                "log": log,
                "losses": losses,
                "samples": [list(s) for s in samples],
                "data_sha256": digest,
            }
            _save_checkpoint(out / CHECKPOINT, state)
            _atomic_write(out / LOG, "".join(json.dumps(r) + "\n" for r in log).encode())
        return bool(callback is not None and callback(record))

    stopped = False
    if start == 0:
        stopped = evaluate(0, 0.0)  # the loss at initialisation: about ln V
    tick, tick_t = time.perf_counter(), start
    t = start
    while not stopped and t < config.max_iters:
        t += 1
        micro_batches = [
            splits["train"].batch(config.batch_size, batches) for _ in range(config.grad_accum)
        ]
        try:
            loss = train_step(
                net, optimizer, scheduler, _shard(micro_batches, config, world), config
            )
        except TrainingDiverged as error:
            if bar is not None:
                bar.close()
            raise TrainingDiverged(
                f"training diverged at iteration {t}: {error}", iteration=t
            ) from None
        losses.append(loss)
        if bar is not None:
            bar.update(1)
        if t % config.eval_interval == 0 or t == config.max_iters:
            now = time.perf_counter()
            elapsed += now - tick
            tokens_per_s = (t - tick_t) * config.tokens_per_iter / max(now - tick, 1e-9)
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}")
            stopped = evaluate(t, tokens_per_s)
            tick, tick_t = time.perf_counter(), t  # evaluation time is not training time
    if bar is not None:
        bar.close()
    model.eval()
    if out is not None:
        _save_plot(out / PLOT, log, losses, config)
    return TrainResult(model, tokenizer, config, log, losses, samples)


# -- checkpoints -------------------------------------------------------------------------------


def _get_rng(batches: torch.Generator) -> dict:
    numpy_state = np.random.get_state()  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "batches": batches.get_state(),
        "python": random.getstate(),
        # As plain Python values, so that the checkpoint loads with weights_only=True.
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
    }


def _set_rng(state: dict, batches: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    batches.set_state(state["batches"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, key, *rest = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), *rest))  # noqa: NPY002


def _atomic_write(path: Path, content: bytes) -> None:
    """Write ``content`` to a temporary file next to ``path`` and move it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _atomic_write(path, buffer.getvalue())


def _load_checkpoint(out: Path, config: LoopConfig) -> dict:
    path = out / CHECKPOINT
    if not path.is_file():
        raise ValueError(f"cannot resume: there is no checkpoint {str(path)!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("version") != _CKPT_VERSION:
        raise ValueError(f"{str(path)!r} has checkpoint version {state.get('version')!r}")
    saved, current = state["config"], config.to_dict()
    # A field added after the checkpoint was written has its default there.
    defaults = type(config)().to_dict()
    differ = [k for k in current if k not in _COSMETIC and saved.get(k, defaults[k]) != current[k]]
    if differ:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in differ)
        raise ValueError(
            f"cannot resume from {str(path)!r}: its config differs from this run's ({changes})"
        )
    return state


def _save_plot(path: Path, log: list[dict], losses: list[float], config: TrainConfig) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    if losses:
        ax.plot(
            range(1, len(losses) + 1), losses, color="C0", alpha=0.3, lw=0.8, label="batch loss"
        )
    iters = [r["iter"] for r in log]
    ax.plot(iters, [r["train_loss"] for r in log], "o-", color="C0", ms=3, label="train")
    ax.plot(iters, [r["val_loss"] for r in log], "o-", color="C1", ms=3, label="validation")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _atomic_write(path, buffer.getvalue())


# -- the command line --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llmtrain.pretraining.train",
        description="Train the book's GPT on a UTF-8 text file with the book's recipe.",
    )
    parser.add_argument("--data", required=True, help="the UTF-8 text file to train on")
    parser.add_argument("--out", required=True, help="the directory for the run's files")
    parser.add_argument("--resume", action="store_true", help="continue from DIR/ckpt.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for f in dataclasses.fields(TrainConfig):
        default = f.default
        option = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=default)
            continue
        kind = {"int": int, "float": float, "str": str}.get(f.type.split(" |")[0], str)
        choices = {
            "tokenizer": ("char", "bpe"),
            "dtype": ("float32", "bfloat16"),
            "position": ("learned", "rope"),
            "norm": ("layernorm", "rmsnorm"),
            "mlp": ("gelu", "swiglu"),
            "optimizer": OPTIMIZERS,
        }.get(f.name)
        shown = {"lr_decay_iters": "max-iters", "min_lr": "lr/10"}.get(f.name, default)
        parser.add_argument(
            option, type=kind, default=default, choices=choices, help=f"default: {shown}"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``python -m llmtrain.pretraining.train --data FILE --out DIR``."""
    args = _parser().parse_args(argv)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, only one speaks
    try:
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
        text = read_text_file(args.data)
        result = pretrain(text, config, out=args.out, resume=args.resume, progress=not args.quiet)
    except (ValueError, TypeError, TrainingDiverged) as error:
        if main_process:
            print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if not main_process:
        return 0
    print(
        f"final: train loss {result.train_loss:.4f}, val loss {result.val_loss:.4f}; "
        f"files in {args.out}"
    )
    return 0
