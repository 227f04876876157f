"""The output layer of a language model: the z-loss on its normaliser, and its memory.

The last layer maps each of the N = B n hidden states h ∈ R^d to V logits z = W h. Two
practical questions sit there. PaLM (Chowdhery et al., 2023) adds a small penalty on the
log-normaliser LSE(z) so that it stays near 0 (:func:`z_loss`). And the logits of a batch are
an N × V array, which for a vocabulary of 10⁵ tokens is by far the largest tensor of training:
:func:`chunked_cross_entropy` computes the same loss and gradients chunk by chunk, so that
array never exists. :func:`largest_allocation` measures that on any device, CPU included.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .._checks import check_int, check_real
from .losses import _check_float_tensor, logsumexp

__all__ = ["chunked_cross_entropy", "largest_allocation", "z_loss"]


def z_loss(logits: torch.Tensor, *, weight: float = 1e-4) -> torch.Tensor:
    """The auxiliary loss ``weight · mean(LSE(z)²)`` that keeps the log-normaliser near 0.

    Implements :prf:ref:`alg-z-loss`.

    ``logits`` has shape ``(..., V)``; LSE is taken over the last dimension and the mean over
    all other positions. PaLM uses weight 10⁻⁴ (Chowdhery et al., 2023, section 5). Cross-entropy
    does not change when a constant is added to every logit; this term pins that free constant
    so that ``ln Z = LSE(z)`` stays close to 0 and the softmax is nearly self-normalised. Its
    gradient with respect to z_k is ``2 · weight · LSE(z) · softmax(z)_k / (number of tokens)``.
    """
    z = _check_float_tensor("logits", logits)
    w = check_real("weight", weight, 0.0)
    if z.ndim == 0 or z.shape[-1] == 0:
        raise ValueError(f"logits must have a non-empty last dimension, got {tuple(z.shape)}")
    return w * logsumexp(z, -1).pow(2).mean()


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h Wᵀ`` whose forward and backward both work on chunks of rows.

    The forward keeps only one log-normaliser per token (N numbers); the backward computes the
    logits of each chunk a second time instead of storing them.
    """

    @staticmethod
    def forward(ctx, h, W, y, kept, chunk_size):
        N = h.shape[0]
        lse = h.new_empty(N)
        total = h.new_zeros(())
        for a in range(0, N, chunk_size):
            z = h[a : a + chunk_size] @ W.T  # (chunk, V): the only logits alive at a time
            lse[a : a + chunk_size] = logsumexp(z, -1)
            z_y = z.gather(1, y[a : a + chunk_size, None]).squeeze(1)
            losses = lse[a : a + chunk_size] - z_y
            total = total + torch.where(kept[a : a + chunk_size], losses, 0.0).sum()
        n_kept = kept.sum()
        ctx.save_for_backward(h, W, y, kept, lse, n_kept)
        ctx.chunk_size = chunk_size
        return total / n_kept

    @staticmethod
    def backward(ctx, grad_loss):
        h, W, y, kept, lse, n_kept = ctx.saved_tensors
        need_h, need_W = ctx.needs_input_grad[:2]
        grad_h = torch.empty_like(h) if need_h else None
        grad_W = torch.zeros_like(W) if need_W else None
        scale = grad_loss / n_kept
        c = ctx.chunk_size
        for a in range(0, h.shape[0], c):
            h_c = h[a : a + c]
            # ∂ℓ_i/∂z_i = softmax(z_i) - onehot(y_i) for kept tokens, 0 for ignored ones.
            g = torch.exp(h_c @ W.T - lse[a : a + c, None])
            g[torch.arange(len(h_c)), y[a : a + c]] -= 1.0
            g *= kept[a : a + c, None] * scale
            if need_h:
                grad_h[a : a + c] = g @ W
            if need_W:
                grad_W += g.T @ h_c
        return grad_h, grad_W, None, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_size: int,
    ignore_index: int = -100,
) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T, targets)``, without ever holding all the logits.

    Implements :prf:ref:`alg-chunked-cross-entropy`.

    The tokens are processed ``chunk_size`` at a time, in the forward pass and again in the
    backward pass (a custom autograd function recomputes each chunk's logits from the saved
    hidden states), so the largest tensor alive is ``chunk_size × V`` instead of ``N × V``.
    The value and the gradients with respect to ``hidden`` and ``weight`` are those of the
    full computation, up to the rounding of a different summation order.

    Parameters
    ----------
    hidden : torch.Tensor
        The last hidden states, floating point, shape ``(..., d)`` (e.g. ``(B, n, d)``).
    weight : torch.Tensor
        The output (unembedding) matrix W, shape ``(V, d)``, as in ``torch.nn.Linear(d, V)``.
    targets : torch.Tensor
        Integer token ids in [0, V) or ``ignore_index``, shape ``(...)`` (that of ``hidden``
        without its last dimension).
    chunk_size : int
        Tokens per chunk, ≥ 1.
    ignore_index : int
        Targets equal to it contribute no loss and are left out of the mean.

    Returns
    -------
    torch.Tensor
        The mean loss over the targets that are not ignored (NaN if all are, as in torch).
    """
    h = _check_float_tensor("hidden", hidden)
    W = _check_float_tensor("weight", weight)
    if not isinstance(targets, torch.Tensor) or targets.is_floating_point():
        raise TypeError("targets must be a torch tensor of integer token ids")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}")
    chunk_size = check_int("chunk_size", chunk_size, 1)
    if W.ndim != 2 or h.ndim == 0 or h.shape[-1] != W.shape[1]:
        raise ValueError(
            f"weight must have shape (V, d) with d = hidden.shape[-1], got hidden "
            f"{tuple(h.shape)} and weight {tuple(W.shape)}"
        )
    if tuple(targets.shape) != tuple(h.shape[:-1]):
        raise ValueError(
            f"targets must have shape {tuple(h.shape[:-1])} to match hidden "
            f"{tuple(h.shape)}, got {tuple(targets.shape)}"
        )
    V = W.shape[0]
    y = targets.reshape(-1).to(torch.long)
    kept = y != ignore_index
    bad = kept & ((y < 0) | (y >= V))
    if bool(bad.any()):
        raise ValueError(
            f"targets must be in [0, {V - 1}] or equal ignore_index={ignore_index}, "
            f"got {int(y[bad][0])}"
        )
    y = torch.where(kept, y, 0)  # any valid index; ignored rows are masked out
    return _ChunkedCrossEntropy.apply(h.reshape(-1, h.shape[-1]), W, y, kept, chunk_size)


class _LargestAllocation(TorchDispatchMode):
    """Records the largest storage that any operation allocates (views allocate none)."""

    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = {
            x.untyped_storage().data_ptr()
            for x in tree_flatten((args, kwargs))[0]
            if isinstance(x, torch.Tensor)
        }
        out = func(*args, **(kwargs or {}))
        for x in tree_flatten(out)[0]:
            if isinstance(x, torch.Tensor) and x.untyped_storage().data_ptr() not in inputs:
                self.nbytes = max(self.nbytes, x.untyped_storage().nbytes())
        return out


def largest_allocation(fn, *args, **kwargs) -> int:
    """The size in bytes of the largest tensor that any operation allocates while
    ``fn(*args, **kwargs)`` runs, including a backward pass that ``fn`` starts.

    It watches every operation through a torch dispatch mode, so it works on the CPU, where
    torch keeps no memory statistics; inputs that an operation writes in place or returns as
    a view count as no new memory.
    """
    with _LargestAllocation() as meter:
        fn(*args, **kwargs)
    return meter.nbytes
