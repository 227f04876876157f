"""Loss functions as measures of error (Part II, Objectives).

Cross-entropy, computed from a numerically stable log-softmax, with the same arguments and the
same numbers as ``torch.nn.functional.cross_entropy`` for class-index targets; the other
classical losses (squared error, binary log loss, hinge losses); and the information
quantities that explain cross-entropy (entropy, KL divergence).

Everything here works on torch tensors and is differentiable by autograd.
"""

from __future__ import annotations

import torch

from .._checks import check_real

__all__ = [
    "binary_log_loss",
    "cross_entropy",
    "distribution_cross_entropy",
    "entropy",
    "hinge_loss",
    "kl_divergence",
    "log_softmax",
    "logsumexp",
    "ranking_hinge_loss",
    "softmax",
    "squared_error",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


def _check_float_tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def _check_dim(x: torch.Tensor, dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or not -x.ndim <= dim < max(x.ndim, 1):
        raise ValueError(f"dim must be an integer in [{-x.ndim}, {x.ndim - 1}], got {dim!r}")
    return dim


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def logsumexp(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``ln Σ_k exp(z_k)`` along ``dim``, computed without overflow.

    Implements :prf:ref:`alg-log-softmax`.

    With z_max = max_k z_k, ``ln Σ_k exp(z_k) = z_max + ln Σ_k exp(z_k - z_max)``: every
    exponent is at most 0, so no term overflows, and the largest term is exactly 1, so the sum
    never underflows to 0. The dimension ``dim`` is removed from the result.
    """
    z = _check_float_tensor("z", z)
    dim = _check_dim(z, dim)
    z_max = z.detach().amax(dim=dim, keepdim=True)
    # A slice that is all -inf (or holds +inf) has no finite maximum to subtract; shifting by
    # 0 there gives the right answer, -inf (or +inf).
    z_max = torch.where(torch.isfinite(z_max), z_max, torch.zeros_like(z_max))
    return (z_max + torch.log(torch.exp(z - z_max).sum(dim=dim, keepdim=True))).squeeze(dim)


def log_softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The log-probabilities ``ln softmax(z)_k = z_k - ln Σ_j exp(z_j)`` along ``dim``.

    Implements :prf:ref:`alg-log-softmax`.

    Parameters
    ----------
    z : torch.Tensor
        Logits, floating point.
    dim : int
        The dimension that indexes the classes.

    Returns
    -------
    torch.Tensor
        Same shape as ``z``; it matches ``torch.log_softmax(z, dim)`` and stays finite for
        logits of any size (there is no exponential of a large number anywhere).
    """
    return z - logsumexp(z, dim).unsqueeze(dim)


def softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The probabilities ``softmax(z)_k = exp(z_k) / Σ_j exp(z_j)``, as ``exp(log_softmax(z))``."""
    return torch.exp(log_softmax(z, dim))


def cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy between logits and class-index targets, with label smoothing.

    Implements :prf:ref:`alg-cross-entropy`.

    Takes the same arguments as ``torch.nn.functional.cross_entropy`` (for class-index
    targets, without class weights) and returns the same numbers; it is computed from
    :func:`log_softmax`, which never overflows.

    Parameters
    ----------
    logits : torch.Tensor
        Floating point, shape ``(N, C)``, ``(N, C, d1, ..., dk)`` (for example
        ``(B, V, n)``: one distribution over V tokens per position), or ``(C,)`` for a single
        example. The classes are dimension 1 (0 for a single example).
    targets : torch.Tensor
        Integer class indices, shape ``(N,)``, ``(N, d1, ..., dk)`` or ``()``; every entry is
        in [0, C) or equals ``ignore_index``.
    ignore_index : int
        Targets equal to this value contribute no loss and are left out of the mean's
        denominator (for padding).
    label_smoothing : float
        ε_ls in [0, 1]: the target distribution becomes ``(1 - ε_ls) onehot(y) + ε_ls / C``
        (Szegedy et al., 2016).
    reduction : str
        ``"mean"`` (over the targets that are not ignored), ``"sum"``, or ``"none"`` (one
        loss per target, shape of ``targets``, 0 where ignored).

    Returns
    -------
    torch.Tensor
        The loss. With ``"mean"`` and every target ignored, it is NaN (0/0), as in torch.
    """
    logits = _check_float_tensor("logits", logits)
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch tensor, got {type(targets).__name__}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(
            f"targets must hold integer class indices, got dtype {targets.dtype} "
            "(probability targets are not supported)"
        )
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}")
    ε_ls = check_real("label_smoothing", label_smoothing, 0.0, 1.0)
    reduction = _check_reduction(reduction)

    if logits.ndim == 0:
        raise ValueError("logits must have at least 1 dimension (the classes), got a scalar")
    single = logits.ndim == 1
    expected = () if single else (logits.shape[0], *logits.shape[2:])
    if tuple(targets.shape) != expected:
        raise ValueError(
            f"targets must have shape {expected} to match logits of shape "
            f"{tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    if single:  # one example: add the batch dimension
        logits, targets = logits.unsqueeze(0), targets.unsqueeze(0)
    C = logits.shape[1]
    if logits.numel() == 0:
        raise ValueError(f"logits must not be empty, got shape {tuple(logits.shape)}")
    y = targets.to(device=logits.device, dtype=torch.long)  # gather needs int64 indices
    kept = y != ignore_index
    bad = kept & ((y < 0) | (y >= C))
    if bool(bad.any()):
        raise ValueError(
            f"targets must be in [0, {C - 1}] or equal ignore_index={ignore_index}, "
            f"got {int(y[bad][0])}"
        )

    # Classes last: (N, d1, ..., dk, C).
    log_p = log_softmax(logits.movedim(1, -1), dim=-1)
    y_safe = torch.where(kept, y, torch.zeros_like(y))
    nll = -log_p.gather(-1, y_safe.unsqueeze(-1)).squeeze(-1)
    if ε_ls > 0.0:
        # Cross-entropy against (1 - ε) onehot(y) + ε/C: (1 - ε) nll + ε mean_c(-ln p_c).
        losses = (1.0 - ε_ls) * nll + ε_ls * (-log_p.mean(dim=-1))
    else:
        losses = nll
    losses = torch.where(kept, losses, torch.zeros_like(losses))
    if reduction == "mean":
        return losses.sum() / kept.sum()
    if reduction == "sum":
        return losses.sum()
    return losses.squeeze(0) if single else losses


def squared_error(
    predictions: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """The squared error ``(ŷ - y)²`` of a regression, per element, then reduced.

    Minimising it fits the conditional mean; it is the negative log-likelihood of a Gaussian
    with fixed variance, up to a scale and a constant. Same numbers as
    ``torch.nn.functional.mse_loss``.
    """
    ŷ = _check_float_tensor("predictions", predictions)
    y = _check_float_tensor("targets", targets)
    reduction = _check_reduction(reduction)
    if ŷ.shape != y.shape:
        raise ValueError(
            f"predictions and targets must have the same shape, "
            f"got {tuple(ŷ.shape)} and {tuple(y.shape)}"
        )
    return _reduce((ŷ - y) ** 2, reduction)


def binary_log_loss(
    logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Log loss of a binary classifier that outputs a logit z; p = sigmoid(z) is Pr(y = 1).

    ``-y ln sigmoid(z) - (1 - y) ln(1 - sigmoid(z))``
    ``= max(z, 0) - y z + ln(1 + exp(-|z|))``, the form used here, which is finite for any z.
    Targets are in [0, 1] (soft labels allowed). Same numbers as
    ``torch.nn.functional.binary_cross_entropy_with_logits``.
    """
    z = _check_float_tensor("logits", logits)
    y = _check_float_tensor("targets", targets)
    reduction = _check_reduction(reduction)
    if z.shape != y.shape:
        raise ValueError(
            f"logits and targets must have the same shape, got {tuple(z.shape)} and "
            f"{tuple(y.shape)}"
        )
    if bool(((y < 0) | (y > 1)).any()):
        raise ValueError("targets must be in [0, 1]")
    losses = torch.clamp(z, min=0) - y * z + torch.log1p(torch.exp(-z.abs()))
    return _reduce(losses, reduction)


def hinge_loss(
    scores: torch.Tensor, targets: torch.Tensor, margin: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """The hinge loss ``max(0, ξ - y ŷ)`` of a binary classifier with labels y = ±1.

    ``scores`` holds the real-valued scores ŷ and ``margin`` is ξ. Zero once an example is on
    the right side of the boundary by at least ξ (its margin y ŷ ≥ ξ), linear otherwise: the
    loss of support vector machines (Cortes and Vapnik, 1995).
    """
    ŷ = _check_float_tensor("scores", scores)
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch tensor, got {type(targets).__name__}")
    ξ = check_real("margin", margin, 0.0)
    reduction = _check_reduction(reduction)
    if ŷ.shape != targets.shape:
        raise ValueError(
            f"scores and targets must have the same shape, got {tuple(ŷ.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if not bool(((targets == 1) | (targets == -1)).all()):
        raise ValueError("targets must be -1 or +1")
    return _reduce(torch.clamp(ξ - targets.to(ŷ.dtype) * ŷ, min=0), reduction)


def ranking_hinge_loss(
    better: torch.Tensor, worse: torch.Tensor, margin: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """The pairwise ranking hinge ``max(0, ξ - (ŷ_a - ŷ_b))``.

    ``better`` holds the scores ŷ_a of the preferred items, ``worse`` the scores ŷ_b of the
    others, and ``margin`` is ξ. Zero once the preferred item outscores the other by at least
    ξ. Same numbers as
    ``torch.nn.functional.margin_ranking_loss(better, worse, torch.ones_like(better), margin)``.
    """
    ŷ_a = _check_float_tensor("better", better)
    ŷ_b = _check_float_tensor("worse", worse)
    ξ = check_real("margin", margin, 0.0)
    reduction = _check_reduction(reduction)
    if ŷ_a.shape != ŷ_b.shape:
        raise ValueError(
            f"better and worse must have the same shape, got {tuple(ŷ_a.shape)} and "
            f"{tuple(ŷ_b.shape)}"
        )
    return _reduce(torch.clamp(ξ - (ŷ_a - ŷ_b), min=0), reduction)


def _check_distribution(name: str, p) -> torch.Tensor:
    p = _check_float_tensor(name, p)
    if p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError(f"{name} must have a non-empty last dimension, got {tuple(p.shape)}")
    if bool((p < 0).any()) or not torch.allclose(
        p.sum(-1), torch.ones((), dtype=p.dtype), atol=1e-6
    ):
        raise ValueError(f"{name} must be non-negative and sum to 1 along its last dimension")
    return p


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy ``H(p) = -Σ_k p_k ln p_k`` in nats, along the last dimension
    (0 ln 0 = 0)."""
    p = _check_distribution("p", p)
    return -torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum(-1)


def distribution_cross_entropy(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Cross-entropy ``H(p, q) = -Σ_k p_k ln q_k`` in nats, along the last dimension.

    The expected code length (in nats) of outcomes drawn from p under a code built for q; it
    equals ``H(p) + KL(p ‖ q)``.
    """
    p = _check_distribution("p", p)
    q = _check_distribution("q", q)
    if p.shape != q.shape:
        raise ValueError(
            f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}"
        )
    return -torch.where(p > 0, p * torch.log(q), torch.zeros_like(p)).sum(-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Kullback-Leibler divergence ``KL(p ‖ q) = Σ_k p_k ln(p_k / q_k)`` in nats, along the
    last dimension; ≥ 0, and 0 only when p = q."""
    p = _check_distribution("p", p)
    q = _check_distribution("q", q)
    if p.shape != q.shape:
        raise ValueError(
            f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}"
        )
    return torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p)).sum(-1)
