"""Training on many processes: the collectives and the ways of splitting a model.

The trainer itself runs data-parallel under ``torchrun`` (see :mod:`llmtrain.pretraining.trainer`);
this module holds what the chapter "Training on many processes" takes apart:

* :func:`ring_all_reduce`, a simulation of the bandwidth-optimal all-reduce over p lists that
  counts what every process sends;
* :class:`ColumnParallelLinear`, :class:`RowParallelLinear`, :class:`TensorParallelMLP` and
  :class:`TensorParallelAttention`, Megatron's tensor parallelism over the processes of a
  ``torch.distributed`` group;
* :func:`pipeline_schedule`, the timelines of the GPipe and 1F1B pipeline schedules, and
  :func:`pipeline_bubble`, their idle fraction in closed form;
* :func:`zero_communication`, what ZeRO's stages send per update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .._checks import check_int, check_real
from .gpt import causal_self_attention, rope_rotate

__all__ = [
    "ColumnParallelLinear",
    "PipelineSchedule",
    "RingAllReduce",
    "RowParallelLinear",
    "TensorParallelAttention",
    "TensorParallelMLP",
    "pipeline_bubble",
    "pipeline_schedule",
    "ring_all_reduce",
    "zero_communication",
]


# -- ring all-reduce ---------------------------------------------------------------------------


@dataclass
class RingAllReduce:
    """What :func:`ring_all_reduce` returns.

    Attributes
    ----------
    results : list of numpy.ndarray
        What each of the p processes holds at the end (each the elementwise sum).
    bytes_sent : list of int
        The bytes each process sent to its neighbour, over both phases.
    steps : int
        The communication steps, 2(p − 1); in each, every process sends one chunk.
    """

    results: list[np.ndarray]
    bytes_sent: list[int]
    steps: int


def ring_all_reduce(arrays: Sequence) -> RingAllReduce:
    """Sum p equal-shaped arrays, one per process, by passing chunks around a ring.

    Implements :prf:ref:`alg-ring-all-reduce`. Each array is cut into p chunks. In the
    reduce-scatter phase (p − 1 steps) process i sends chunk (i − s) mod p to process i + 1,
    which adds it to its own; afterwards process i holds the complete sum of chunk i + 1. In
    the all-gather phase (p − 1 steps) the complete chunks travel once more around the ring,
    overwriting. Every process sends 2(p − 1) chunks: 2(p − 1)/p of the data, whatever p is.
    """
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    p = len(arrays)
    check_int("len(arrays)", p, 1)
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise ValueError(f"arrays[{i}] has shape {a.shape}, arrays[0] has shape {shape}")
    chunks = [np.array_split(a.ravel(), p) for a in arrays]  # chunks[process][chunk]
    sent = [0] * p

    def ring_step(chunk_of, combine):
        # Every process sends at once: build all messages before anyone applies one.
        messages = [(i, chunk_of(i), chunks[i][chunk_of(i)].copy()) for i in range(p)]
        for i, c, payload in messages:
            receiver = (i + 1) % p
            chunks[receiver][c] = combine(chunks[receiver][c], payload)
            sent[i] += payload.nbytes

    for s in range(p - 1):  # reduce-scatter: add what arrives
        ring_step(lambda i, s=s: (i - s) % p, lambda own, got: own + got)
    for s in range(p - 1):  # all-gather: the complete chunk i + 1 - s replaces the partial one
        ring_step(lambda i, s=s: (i + 1 - s) % p, lambda own, got: got)
    results = [np.concatenate(c).reshape(shape) for c in chunks]
    return RingAllReduce(results, sent, 2 * (p - 1))


# -- tensor parallelism ------------------------------------------------------------------------


def _group_rank_size(group) -> tuple[int, int]:
    return dist.get_rank(group), dist.get_world_size(group)


class _CopyToShards(torch.autograd.Function):
    """Megatron's f: the identity forward; the backward sums the input gradients the shards
    computed, since every shard used the same input."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _SumShards(torch.autograd.Function):
    """Megatron's g: the forward sums the shards' partial outputs; the backward is the
    identity, since the sum passes its gradient unchanged to every term."""

    @staticmethod
    def forward(ctx, x, group):
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _shard_rows(weight: torch.Tensor, rank: int, size: int, parts: int) -> torch.Tensor:
    """Rows of process ``rank``: its 1/size of each of the ``parts`` stacked blocks."""
    blocks = weight.chunk(parts, dim=0)
    rows = blocks[0].shape[0]
    if rows % size:
        raise ValueError(
            f"the layer's {rows} output features (per part) must be divisible by the "
            f"{size} processes of the group"
        )
    n = rows // size
    return torch.cat([b[rank * n : (rank + 1) * n] for b in blocks]).clone()


class _ShardedLinear(nn.Module):
    """A process's shard of a linear layer: its slice of the weight and bias, and the group
    the layer is split over."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, group=None):
        super().__init__()
        self.group = group
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)


class ColumnParallelLinear(_ShardedLinear):
    """y = x Wᵀ + b with W split by output features (rows of W, columns of Wᵀ) over the
    processes of ``group``: process r computes its slice y_r of the output, from the whole x.

    Implements :prf:ref:`alg-tensor-parallel-mlp` (step 1). Build it from the whole
    layer with ``from_linear``; ``parts`` > 1 splits each of ``parts`` stacked blocks of
    outputs separately (2 for SwiGLU's gate and value, 3 for Q, K, V).
    """

    @classmethod
    def from_linear(cls, linear: nn.Linear, group=None, parts: int = 1):
        rank, size = _group_rank_size(group)
        weight = _shard_rows(linear.weight.detach(), rank, size, parts)
        bias = None
        if linear.bias is not None:
            bias = _shard_rows(linear.bias.detach()[:, None], rank, size, parts)[:, 0]
        return cls(weight, bias, group)

    def forward(self, x):
        return F.linear(_CopyToShards.apply(x, self.group), self.weight, self.bias)


class RowParallelLinear(_ShardedLinear):
    """y = Σ_r x_r W_rᵀ + b with W split by input features (its columns) over the processes
    of ``group``: process r holds x_r, the matching slice of the input, and the partial
    products are summed by an all-reduce.

    Implements :prf:ref:`alg-tensor-parallel-mlp` (step 2).
    """

    @classmethod
    def from_linear(cls, linear: nn.Linear, group=None):
        rank, size = _group_rank_size(group)
        weight = _shard_rows(linear.weight.detach().T, rank, size, 1).T.contiguous()
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(weight, bias, group)

    def forward(self, x):
        y = _SumShards.apply(F.linear(x, self.weight), self.group)
        return y if self.bias is None else y + self.bias  # added once, after the sum


class TensorParallelMLP(nn.Module):
    """The MLP of a :class:`~llmtrain.pretraining.GPT` block split over the processes of
    ``group`` as in Megatron-LM: the first layer column-parallel, the nonlinearity on each
    process's slice of the hidden units, the second layer row-parallel. One all-reduce in the
    forward pass and one in the backward.

    Implements :prf:ref:`alg-tensor-parallel-mlp`.
    """

    def __init__(self, mlp: nn.Module, group=None):
        super().__init__()
        self.swiglu = mlp.swiglu
        self.c_fc = ColumnParallelLinear.from_linear(mlp.c_fc, group, 2 if self.swiglu else 1)
        self.c_proj = RowParallelLinear.from_linear(mlp.c_proj, group)

    def forward(self, x):
        h = self.c_fc(x)  # this process's slice of the hidden units
        if self.swiglu:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        else:
            h = F.gelu(h, approximate="tanh")  # elementwise: no communication needed
        return self.c_proj(h)


class TensorParallelAttention(nn.Module):
    """The causal self-attention of a :class:`~llmtrain.pretraining.GPT` block split over the
    processes of ``group`` by heads, as in Megatron-LM: process r of N_t keeps heads
    r H/N_t .. (r + 1) H/N_t − 1. The fused Q, K, V projection is column-parallel (its three
    stacked blocks split alike, so a process's rows are the queries, keys and values of its
    heads), each process attends with its heads alone, and the output projection is
    row-parallel. One all-reduce in the forward pass and one in the backward.

    Implements :prf:ref:`alg-tensor-parallel-attention`.

    Built from ``attn``, a block's ``attn`` module; ``forward(x, rope)`` takes the block's
    ``rope`` argument (the cosines and sines of the positions of ``x``, or None). There is no
    :class:`~llmtrain.pretraining.KVCache` here. Dropout, when the configuration has any,
    draws on each process's own random generator: the residual dropout after the all-reduce
    agrees across processes only if they are seeded alike, and the attention dropout of
    different heads should not be (Megatron keeps a second generator for it).
    """

    def __init__(self, attn: nn.Module, group=None):
        super().__init__()
        _, size = _group_rank_size(group)
        config = attn.config
        if config.n_head % size:
            raise ValueError(
                f"attn.config.n_head must be divisible by the {size} processes of the group, "
                f"got n_head={config.n_head}"
            )
        self.config = config
        self.n_head = config.n_head // size  # the heads of this process
        self.c_attn = ColumnParallelLinear.from_linear(attn.c_attn, group, parts=3)
        self.c_proj = RowParallelLinear.from_linear(attn.c_proj, group)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope=None):
        B, T, _ = x.shape
        H, d_h = self.n_head, self.config.head_size
        q, k, v = self.c_attn(x).split(H * d_h, dim=2)  # this process's heads only
        q, k, v = (t.view(B, T, H, d_h).transpose(1, 2) for t in (q, k, v))
        if rope is not None:
            q, k = rope_rotate(q, *rope), rope_rotate(k, *rope)
        p = self.config.dropout if self.training else 0.0
        if self.config.attention == "explicit":
            y = causal_self_attention(q, k, v, dropout_p=p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, H * d_h)  # its slice of the width
        return self.resid_dropout(self.c_proj(y))


# -- pipeline parallelism ----------------------------------------------------------------------


@dataclass
class PipelineSchedule:
    """What :func:`pipeline_schedule` returns.

    Attributes
    ----------
    timeline : list of list
        ``timeline[t]`` lists the ``(stage, micro_batch, "F" or "B")`` run at time step t.
    grid : list of list
        ``grid[stage][t]`` is ``(micro_batch, "F" or "B")``, or None when the stage is idle.
    steps : int
        The length of the schedule in time steps.
    bubble : float
        The fraction of stage-steps that are idle.
    peak_activations : list of int
        Per stage, the most micro-batches whose forward is done and backward not yet (whose
        activations the stage must keep).
    """

    timeline: list[list[tuple[int, int, str]]]
    grid: list[list[tuple[int, str] | None]]
    steps: int
    bubble: float
    peak_activations: list[int]


def _stage_order(kind: str, stage: int, p: int, m: int) -> list[tuple[int, str]]:
    """The order in which one stage runs its 2m operations."""
    if kind == "gpipe":
        return [(j, "F") for j in range(m)] + [(j, "B") for j in range(m)]
    warmup = min(p - 1 - stage, m)  # forwards in flight before the first backward
    order = [(j, "F") for j in range(warmup)]
    for j in range(m - warmup):  # steady state: one forward, one backward
        order += [(warmup + j, "F"), (j, "B")]
    return order + [(j, "B") for j in range(m - warmup, m)]


def pipeline_schedule(p: int, m: int, kind: str = "1f1b") -> PipelineSchedule:
    """Simulate a pipeline of p stages on m micro-batches, a forward or a backward taking one
    time step on any stage.

    Implements :prf:ref:`alg-1f1b`. Each stage runs its operations in a fixed order ("gpipe":
    all m forwards, then all m backwards; "1f1b": p − 1 − s forwards, then alternately one
    forward and one backward, then the remaining backwards), starting each as soon as its
    inputs exist: the forward of micro-batch j on stage s needs that of stage s − 1, its
    backward needs the backward on stage s + 1 (and the stage's own forward).
    """
    check_int("p", p, 1)
    check_int("m", m, 1)
    if kind not in ("gpipe", "1f1b"):
        raise ValueError(f"kind must be 'gpipe' or '1f1b', got {kind!r}")
    orders = [_stage_order(kind, s, p, m) for s in range(p)]
    done: dict[tuple[int, int, str], int] = {}  # operation -> the step it ran at
    position = [0] * p
    timeline = []
    t = 0
    while any(position[s] < 2 * m for s in range(p)):
        ran = []
        for s in range(p):
            if position[s] == 2 * m:
                continue
            j, phase = orders[s][position[s]]
            if phase == "F":
                needs = [(s - 1, j, "F")] if s > 0 else []
            else:
                needs = [(s, j, "F")] + ([(s + 1, j, "B")] if s < p - 1 else [])
            if all(done.get(n, t) < t for n in needs):  # finished at an earlier step
                ran.append((s, j, phase))
        for s, j, phase in ran:
            done[(s, j, phase)] = t
            position[s] += 1
        timeline.append(ran)
        t += 1
    grid = [[None] * t for _ in range(p)]
    for step, ops in enumerate(timeline):
        for s, j, phase in ops:
            grid[s][step] = (j, phase)
    peaks = []
    for row in grid:
        live = peak = 0
        for cell in row:
            if cell is not None:
                live += 1 if cell[1] == "F" else -1
                peak = max(peak, live)
        peaks.append(peak)
    busy = sum(len(ops) for ops in timeline)
    return PipelineSchedule(timeline, grid, t, 1 - busy / (p * t), peaks)


def pipeline_bubble(p, m):
    """The idle fraction (p − 1)/(m + p − 1) of a pipeline of p stages over m micro-batches,
    the same for GPipe and 1F1B (:func:`pipeline_schedule` measures it)."""
    p, m = np.asarray(p, dtype=float), np.asarray(m, dtype=float)
    if np.any(p < 1) or np.any(m < 1):
        raise ValueError(f"p and m must be at least 1, got p={p}, m={m}")
    return (p - 1) / (m + p - 1)


# -- ZeRO --------------------------------------------------------------------------------------


def zero_communication(n_params, stage: int) -> float:
    """The elements each device sends (and receives) per update under ZeRO stage 0 (plain
    data parallelism) to 3 for Ψ = ``n_params`` parameters.

    Stages 0 to 2 exchange gradients as a ring all-reduce does, a reduce-scatter (Ψ) and an
    all-gather (Ψ): 2Ψ. Stage 3, which also shards the weights (as FSDP does), gathers them
    once for the forward pass and once more for the backward, and reduce-scatters the
    gradients: 3Ψ (Rajbhandari et al., 2020). The memory each stage saves is
    :func:`~llmtrain.pretraining.model_state_memory`'s.
    """
    check_real("n_params", n_params, 0.0)
    check_int("stage", stage, 0, 3)
    return (3 if stage == 3 else 2) * float(n_params)
