"""Gradient accumulation: one optimizer step from K micro-batches, equal to one large batch.

Micro-batch j holds B_j units (examples, or non-padding target tokens for a token-level
loss), B = Σ_j B_j in all, and its loss L_j is the mean over its own units. Scaling L_j by
its share B_j / B before the backward pass makes the accumulated gradient the gradient of
the mean over all B units, which is what one large batch would give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from .._checks import check_real
from .clipping import clip_grad_norm_

__all__ = ["accumulate_gradients", "accumulation_step"]

_WEIGHTINGS = ("size", "equal", "sum")


def _default_size(batch) -> int:
    """Examples in a micro-batch: the length of the batch, or of its first element if it
    is a tuple or list such as ``(inputs, targets)``."""
    first = batch[0] if isinstance(batch, tuple | list) else batch
    return len(first)


def accumulate_gradients(
    loss_fn: Callable,
    micro_batches: Iterable,
    *,
    sizes: Sequence[float] | Callable | None = None,
    weighting: str = "size",
) -> float:
    """Add the gradient of the large-batch mean loss into the ``.grad`` of the parameters.

    Implements :prf:ref:`alg-gradient-accumulation` (the accumulation half; the step is
    :func:`accumulation_step`). Gradients are *added* to what ``.grad`` holds, as
    ``backward`` does, so zero them first.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(micro_batch)`` returns the *mean* loss L_j over the micro-batch's units,
        a scalar tensor to differentiate.
    micro_batches : iterable
        The K micro-batches of one step.
    sizes : sequence or callable, optional
        The number of units B_j of each micro-batch, or a function of a micro-batch that
        returns it (for a token-level loss: its number of non-padding target tokens).
        By default, the number of examples: ``len(batch)``, or ``len(batch[0])`` when a
        micro-batch is a tuple or list such as ``(inputs, targets)``.
    weighting : {"size", "equal", "sum"}
        How each L_j is scaled before its backward pass: "size" by B_j / B (correct in
        every case), "equal" by 1 / K (correct only when all B_j are equal), "sum" not at
        all (gives K times the gradient for equal micro-batches; shown as the mistake).

    Returns
    -------
    float
        The loss of the whole batch as the chosen weighting computes it (for "size", the
        mean over all B units).
    """
    if weighting not in _WEIGHTINGS:
        raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {weighting!r}")
    batches = list(micro_batches)
    K = len(batches)
    if K == 0:
        raise ValueError("micro_batches must hold at least one micro-batch, got none")
    if sizes is None:
        sizes = _default_size
    B_j = [sizes(b) for b in batches] if callable(sizes) else list(sizes)
    if len(B_j) != K:
        raise ValueError(f"sizes must give one size per micro-batch ({K}), got {len(B_j)}")
    B_j = [check_real(f"sizes[{j}]", float(n), 0.0) for j, n in enumerate(B_j)]
    B = sum(B_j)
    if weighting == "size" and B <= 0:
        raise ValueError(f"the sizes must add up to a positive total B, got {B:g}")
    total = 0.0
    for j, batch in enumerate(batches):
        if weighting == "size":
            w = B_j[j] / B
        elif weighting == "equal":
            w = 1.0 / K
        else:
            w = 1.0
        if w == 0.0:
            continue  # an empty micro-batch (say, all padding) contributes nothing
        L_j = loss_fn(batch)
        (w * L_j).backward()
        total += w * float(L_j.detach())
    return total


def accumulation_step(
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    micro_batches: Iterable,
    *,
    sizes: Sequence[float] | Callable | None = None,
    weighting: str = "size",
    max_norm: float | None = None,
) -> float:
    """One optimizer step from K micro-batches, equal to one step on their union.

    Implements :prf:ref:`alg-gradient-accumulation`: zero the gradients, accumulate the
    gradient of the batch mean with :func:`accumulate_gradients`, optionally clip its global
    norm at ``max_norm`` (:func:`clip_grad_norm_`, on the accumulated gradient, never per
    micro-batch), and take one ``optimizer.step()``.

    Returns
    -------
    float
        The loss of the whole batch (see :func:`accumulate_gradients`).
    """
    optimizer.zero_grad()
    loss = accumulate_gradients(loss_fn, micro_batches, sizes=sizes, weighting=weighting)
    if max_norm is not None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        clip_grad_norm_(params, max_norm)
    optimizer.step()
    return loss
