"""Knowledge distillation: train a student on a teacher's softened next-token distribution.

Hinton, Vinyals and Dean (2015) train a small *student* to match the probabilities that a
large *teacher* assigns to every class, both softened by the same temperature τ, and scale the
loss by τ² so that its gradients keep their size when τ changes. Gemma 2 (Gemma Team, 2024)
pretrains its 2B and 9B models this way, on the next-token distribution of a larger model.
"""

from __future__ import annotations

import torch

from .._checks import check_real
from .losses import _check_float_tensor, _check_reduction, _reduce, log_softmax

__all__ = ["distillation_loss"]


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """τ² KL(softmax(t / τ) ‖ softmax(s / τ)) per token, the distillation loss.

    Implements :prf:ref:`alg-distillation-loss`.

    The divergence is the *forward* KL, from the teacher's distribution p^τ to the student's
    q^τ: the student pays wherever the teacher puts probability, so it is pushed to cover all
    of the teacher's plausible tokens. It differs from the cross-entropy H(p^τ, q^τ) of
    Hinton et al. (2015) only by the teacher's entropy, a constant for the student, so both have
    the same gradient, ``τ (q^τ - p^τ)`` with respect to the student's logits (with the τ²
    factor). The teacher is a fixed target: its logits are detached.

    Parameters
    ----------
    student_logits, teacher_logits : torch.Tensor
        Floating point, the same shape ``(..., V)``: one vector of V logits per token.
    temperature : float
        τ > 0; both distributions are ``softmax(logits / τ)``.
    reduction : str
        ``"mean"`` over tokens (every position but the last dimension; for 2-D input this is
        ``F.kl_div(..., reduction="batchmean")``), ``"sum"``, or ``"none"`` (shape ``(...)``).
    """
    s = _check_float_tensor("student_logits", student_logits)
    t = _check_float_tensor("teacher_logits", teacher_logits)
    τ = check_real("temperature", temperature, 0.0, low_open=True)
    reduction = _check_reduction(reduction)
    if s.shape != t.shape:
        raise ValueError(
            "student_logits and teacher_logits must have the same shape, "
            f"got {tuple(s.shape)} and {tuple(t.shape)}"
        )
    if s.ndim == 0 or s.shape[-1] == 0:
        raise ValueError(f"logits must have a non-empty last dimension, got {tuple(s.shape)}")
    log_p = log_softmax(t.detach() / τ)  # the teacher's softened log-probabilities
    log_q = log_softmax(s / τ)  # the student's
    p = log_p.exp()
    # Tokens the teacher rules out (p = 0) contribute nothing, as 0 ln 0 = 0.
    kl = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)
    return _reduce(τ**2 * kl, reduction)
