"""Shared argument handling for the token-corruption functions: ids, generators."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._checks import check_int

__all__ = ["as_ids", "torch_generator"]


def torch_generator(generator) -> torch.Generator:
    """A ``torch.Generator`` from a seed (an int) or a generator (returned as is)."""
    if isinstance(generator, torch.Generator):
        return generator
    seed = check_int("generator", generator, 0)
    return torch.Generator().manual_seed(seed)


def as_ids(
    name: str, ids, vocab_size: int | None = None, *, ndim: int | None = None
) -> torch.Tensor:
    """``ids`` as an int64 tensor, checked: not empty, integer, and in ``[0, vocab_size)``."""
    if isinstance(ids, torch.Tensor):
        t = ids
    elif isinstance(ids, np.ndarray | Sequence):
        t = torch.as_tensor(np.asarray(ids))
    else:
        raise TypeError(f"{name} must be a tensor or a sequence of token ids, got {ids!r}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {t.dtype}")
    t = t.to(torch.int64)
    if vocab_size is not None:
        vocab_size = check_int("vocab_size", vocab_size, 1)
        low, high = int(t.min()), int(t.max())
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"{name} must be token ids in [0, {vocab_size - 1}] (vocab_size={vocab_size}), "
                f"got {bad}"
            )
    return t
