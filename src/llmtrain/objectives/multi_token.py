"""Multi-token prediction (MTP): predict the next D tokens at every position, not just one.

Gloeckle et al. (2024) put D output heads on one shared trunk, head k predicting the token
k steps ahead, and add their cross-entropies. DeepSeek-V3 (DeepSeek-AI, 2024) predicts the
extra tokens with small sequential modules instead and weights their mean loss by λ. Both
are the same loss on the same targets; they differ in how the logits of depth k are made.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_int, check_real
from .losses import cross_entropy

__all__ = ["multi_token_loss", "multi_token_targets"]


def _check_ids(ids) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"ids must be a torch tensor, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"ids must hold integer token ids, got dtype {ids.dtype}")
    if ids.ndim != 2 or ids.shape[1] < 2:
        raise ValueError(f"ids must have shape (B, n) with n >= 2, got {tuple(ids.shape)}")
    return ids


def multi_token_targets(
    ids: torch.Tensor, n_future: int, *, ignore_index: int = -100
) -> torch.Tensor:
    """Targets of D-token prediction: entry ``[b, k - 1, t]`` is ``ids[b, t + k]``.

    Implements :prf:ref:`alg-multi-token-loss`.

    Returns a tensor of shape ``(B, D, n)`` for ``ids`` of shape ``(B, n)``; positions where
    ``t + k`` runs past the end hold ``ignore_index``. Depth k = 1 is next-token prediction.
    """
    x = _check_ids(ids)
    D = check_int("n_future", n_future, 1, x.shape[1] - 1)
    B, n = x.shape
    y = torch.full((B, D, n), ignore_index, dtype=torch.int64)
    for k in range(1, D + 1):
        y[:, k - 1, : n - k] = x[:, k:]
    return y


def multi_token_loss(
    logits_per_depth, ids: torch.Tensor, *, weights=None, ignore_index: int = -100
) -> torch.Tensor:
    """The multi-token prediction loss ``Σ_k w_k CE_k``, where ``CE_k`` is the mean
    cross-entropy of predicting token ``t + k`` from position t.

    Implements :prf:ref:`alg-multi-token-loss`.

    Parameters
    ----------
    logits_per_depth : torch.Tensor or sequence of torch.Tensor
        Shape ``(B, D, n, V)``, or D tensors of shape ``(B, n, V)``: the logits that
        position t of depth k gives to token ``t + k``.
    ids : torch.Tensor
        The tokens, shape ``(B, n)``.
    weights : sequence of float, optional
        w_1, ..., w_D >= 0 (all 1 by default). DeepSeek-V3's loss is
        ``w = (1, λ/D, ..., λ/D)`` over D + 1 depths (the main head and D MTP modules).
    ignore_index : int
        Marks the targets that run past the end; they cost nothing.
    """
    x = _check_ids(ids)
    if isinstance(logits_per_depth, Sequence):
        z = torch.stack(list(logits_per_depth), dim=1)
    elif isinstance(logits_per_depth, torch.Tensor):
        z = logits_per_depth
    else:
        raise TypeError("logits_per_depth must be a tensor or a sequence of tensors")
    if z.ndim != 4 or z.shape[0] != x.shape[0] or z.shape[2] != x.shape[1]:
        raise ValueError(
            f"logits_per_depth must have shape (B, D, n, V) = ({x.shape[0]}, D, {x.shape[1]}, V),"
            f" got {tuple(z.shape)}"
        )
    D = z.shape[1]
    w = [1.0] * D if weights is None else [check_real("weights", v, 0.0) for v in weights]
    if len(w) != D:
        raise ValueError(f"weights must hold one weight per depth (D = {D}), got {len(w)}")
    y = multi_token_targets(x, D, ignore_index=ignore_index)
    # cross_entropy wants the classes in dimension 1: (B, V, n) per depth.
    return sum(
        w[k] * cross_entropy(z[:, k].transpose(1, 2), y[:, k], ignore_index=ignore_index)
        for k in range(D)
    )
