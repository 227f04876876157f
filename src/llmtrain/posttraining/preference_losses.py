"""Preference losses: learning from judgements of the form "this answer is better than that
one" (or, for KTO, "this answer is good" / "this answer is bad").

Every loss here but the first reads a batch of *sequence log-probabilities* (the first reads
rewards) and returns the mean loss over the batch, a 0-dim tensor. A sequence
log-probability is log π(y | x), the sum over the response's tokens of the log-probability
of each token given the prompt and the tokens before it (the prompt's own tokens are not
counted). The policy π_θ is the model being trained; the reference π_ref is a frozen copy of
the model before preference training (usually the SFT model), whose log-probabilities carry
no gradient.

- :func:`bradley_terry_loss` fits a reward model: -log σ(r_w - r_l).
- :func:`dpo_loss` (Rafailov et al., 2023) puts the implicit reward β log(π_θ/π_ref) in
  place of the reward model's score.
- :func:`ipo_loss` (Azar et al., 2024) regresses the same log-ratio margin onto the target
  1/(2β) instead of pushing it to infinity.
- :func:`simpo_loss` (Meng et al., 2024) drops the reference model and uses the average
  log-probability per token, with a target margin γ.
- :func:`kto_loss` (Ethayarajh et al., 2024) learns from unpaired examples, each labelled
  desirable or undesirable, measured against a reference point estimated from the batch.

σ is the logistic sigmoid; the log-likelihood losses use ``logsigmoid``, which stays finite where
``log(sigmoid(z))`` would underflow to log 0 for large negative z.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_real, check_shape_match

__all__ = [
    "bradley_terry_loss",
    "dpo_loss",
    "ipo_loss",
    "kto_loss",
    "simpo_loss",
]


def _check_batch(name: str, x: object) -> torch.Tensor:
    """A non-empty 1-D floating tensor: one value per example of the batch."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one value per example), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} must hold at least one example, got an empty batch")
    return x


def _check_batches(**tensors: object) -> list[torch.Tensor]:
    """Check each tensor with :func:`_check_batch` and that all have the first one's shape."""
    checked = [_check_batch(name, x) for name, x in tensors.items()]
    names = list(tensors)
    for name, x in zip(names[1:], checked[1:], strict=True):
        check_shape_match(names[0], checked[0].shape, name, x.shape)
    return checked


def _check_beta(beta: float) -> float:
    return check_real("beta", beta, 0.0, math.inf, low_open=True)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """The reward model's loss under the Bradley-Terry model: the mean over the batch of
    -log σ(r_chosen - r_rejected).

    The Bradley-Terry model says that the chosen answer wins with probability
    σ(r_w - r_l), where r_w and r_l are the rewards of the chosen and the rejected answer;
    the loss is the negative log-likelihood of the observed preferences. Only the margin
    counts: adding the same number to every reward changes nothing.

    Implements :prf:ref:`alg-bradley-terry`.

    Parameters
    ----------
    r_chosen, r_rejected : torch.Tensor
        Shape (B,): the rewards of the chosen and of the rejected answer of each pair.

    Returns
    -------
    torch.Tensor
        The mean loss, a 0-dim tensor (ln 2 when the two rewards are equal).
    """
    r_w, r_l = _check_batches(r_chosen=r_chosen, r_rejected=r_rejected)
    return -F.logsigmoid(r_w - r_l).mean()


def _log_ratio_margin(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
) -> torch.Tensor:
    """h = log π_θ(y_w)/π_ref(y_w) - log π_θ(y_l)/π_ref(y_l), one value per pair."""
    pi_w, pi_l, ref_w, ref_l = _check_batches(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    return (pi_w - ref_w) - (pi_l - ref_l)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
) -> torch.Tensor:
    """Direct preference optimisation: the mean over the batch of -log σ(β h), where
    h = [log π_θ(y_w|x) - log π_ref(y_w|x)] - [log π_θ(y_l|x) - log π_ref(y_l|x)].

    It is the Bradley-Terry loss with the implicit reward r̂(x, y) = β log π_θ(y|x)/π_ref(y|x)
    in place of a reward model's score. Its gradient with respect to log π_θ(y_w|x) is
    -β σ(r̂(x, y_l) - r̂(x, y_w)) / B: each pair pulls harder the more the implicit reward
    gets its order wrong.

    Implements :prf:ref:`alg-dpo-loss`.

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps : torch.Tensor
        Shape (B,): the policy's sequence log-probabilities of the chosen and of the
        rejected responses (sums over the response tokens).
    ref_chosen_logps, ref_rejected_logps : torch.Tensor
        Shape (B,): the same under the frozen reference model.
    beta : float
        β > 0, the strength of the implicit KL penalty: small β lets the policy move far
        from the reference.

    Returns
    -------
    torch.Tensor
        The mean loss, a 0-dim tensor (ln 2 while the policy equals the reference).
    """
    beta = _check_beta(beta)
    h = _log_ratio_margin(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    return -F.logsigmoid(beta * h).mean()


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
) -> torch.Tensor:
    """Identity preference optimisation: the mean over the batch of (h - 1/(2β))², with h
    the log-ratio margin of :func:`dpo_loss`.

    DPO's loss keeps falling as h grows, so on pairs whose preference is never contradicted
    it pushes h (and the policy away from the reference) without bound. IPO's square has its
    minimum at h = 1/(2β): the regularisation β (τ in Azar et al.) sets a finite target.

    The formula takes whatever log-probabilities it is given. With sequence log-probabilities
    (sums over the response tokens, as for :func:`dpo_loss`) it is Azar et al.'s loss; TRL's
    ``DPOTrainer(loss_type="ipo")`` passes the *average* log-probability per token instead,
    which makes the target 1/(2β) a margin per token.

    Implements :prf:ref:`alg-ipo-loss`.

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps : torch.Tensor
        Shape (B,): as for :func:`dpo_loss`.
    beta : float
        β > 0 (τ in the IPO paper): larger β, smaller target margin, stronger pull to the
        reference.

    Returns
    -------
    torch.Tensor
        The mean loss, a 0-dim tensor.
    """
    beta = _check_beta(beta)
    h = _log_ratio_margin(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    return ((h - 1 / (2 * beta)) ** 2).mean()


def _check_lengths(name: str, lengths: object, like: torch.Tensor, like_name: str) -> torch.Tensor:
    """Response lengths in tokens: a 1-D tensor of positive numbers, one per example."""
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(lengths).__name__}")
    check_shape_match(like_name, like.shape, name, lengths.shape)
    if not bool((lengths > 0).all()):
        bad = lengths[~(lengths > 0)][0].item()
        raise ValueError(f"{name} must be in (0, inf) for every example, got {bad!r}")
    return lengths.to(like.dtype)


def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 0.5,
) -> torch.Tensor:
    """Simple preference optimisation: the mean over the batch of
    ``-log σ(β log π_θ(y_w|x)/|y_w| - β log π_θ(y_l|x)/|y_l| - γ)``.

    No reference model: the implicit reward is β times the average log-probability per
    token, the quantity generation ranks answers by, and the chosen answer must beat the
    rejected one by the margin γ. Dividing by the length removes the reward's bias towards
    short answers (a sum of negative numbers is larger when it has fewer terms), and adding
    the same number to every token's log-probability changes nothing.

    Defaults: β = 2 and γ = 0.5 are the defaults of the authors' code (``beta=2.0``,
    ``gamma_beta_ratio=0.25``, γ = 0.25 β); their tuned settings vary by model.

    Implements :prf:ref:`alg-simpo-loss`.

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps : torch.Tensor
        Shape (B,): the policy's sequence log-probabilities (sums over the response tokens).
    chosen_lengths, rejected_lengths : torch.Tensor
        Shape (B,): the number of response tokens ``|y_w|`` and ``|y_l|``, each > 0.
    beta : float
        β > 0, the scale of the reward.
    gamma : float
        γ ≥ 0, the target reward margin.

    Returns
    -------
    torch.Tensor
        The mean loss, a 0-dim tensor.
    """
    beta = _check_beta(beta)
    gamma = check_real("gamma", gamma, 0.0, math.inf)
    pi_w, pi_l = _check_batches(
        policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps
    )
    n_w = _check_lengths("chosen_lengths", chosen_lengths, pi_w, "policy_chosen_logps")
    n_l = _check_lengths("rejected_lengths", rejected_lengths, pi_l, "policy_rejected_logps")
    return -F.logsigmoid(beta * pi_w / n_w - beta * pi_l / n_l - gamma).mean()


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl_policy_logps: torch.Tensor,
    kl_ref_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    lambda_d: float = 1.0,
    lambda_u: float = 1.0,
) -> torch.Tensor:
    """Kahneman-Tversky optimisation: the mean over the batch of

    - λ_D (1 - σ(β (r - z₀))) for a desirable example,
    - λ_U (1 - σ(β (z₀ - r))) for an undesirable one,

    where r = log π_θ(y|x) - log π_ref(y|x) is the example's log-ratio and z₀ the reference
    point. A desirable answer lowers its loss by raising r above z₀, an undesirable one by
    pushing r below it; λ_D and λ_U weigh the two kinds (raise the weight of the rarer kind).

    z₀ estimates KL(π_θ ‖ π_ref) from the batch itself: the mean log-ratio over *mismatched*
    pairs (the prompt of one example with the response of another), clamped at 0 since a KL
    divergence is never negative, and detached, so that no gradient flows through it.

    Implements :prf:ref:`alg-kto-loss`.

    Parameters
    ----------
    policy_logps, ref_logps : torch.Tensor
        Shape (B,): sequence log-probabilities of each example's response under the policy
        and under the reference.
    desirable : torch.Tensor
        Shape (B,), bool: True for a desirable example, False for an undesirable one.
    kl_policy_logps, kl_ref_logps : torch.Tensor
        Shape (M,): sequence log-probabilities of the M mismatched pairs under the policy and
        the reference, for the estimate of z₀.
    beta : float
        β > 0, the scale of the log-ratio.
    lambda_d, lambda_u : float
        λ_D, λ_U > 0, the weights of desirable and undesirable examples.

    Returns
    -------
    torch.Tensor
        The mean loss, a 0-dim tensor.
    """
    beta = _check_beta(beta)
    lambda_d = check_real("lambda_d", lambda_d, 0.0, math.inf, low_open=True)
    lambda_u = check_real("lambda_u", lambda_u, 0.0, math.inf, low_open=True)
    pi, ref = _check_batches(policy_logps=policy_logps, ref_logps=ref_logps)
    if not isinstance(desirable, torch.Tensor) or desirable.dtype != torch.bool:
        got = desirable.dtype if isinstance(desirable, torch.Tensor) else type(desirable).__name__
        raise TypeError(f"desirable must be a torch.bool tensor, got {got}")
    check_shape_match("policy_logps", pi.shape, "desirable", desirable.shape)
    kl_pi, kl_ref = _check_batches(kl_policy_logps=kl_policy_logps, kl_ref_logps=kl_ref_logps)

    z0 = (kl_pi - kl_ref).mean().clamp(min=0).detach()
    r = pi - ref
    losses = torch.where(
        desirable,
        lambda_d * torch.sigmoid(beta * (z0 - r)),  # = λ_D (1 - σ(β (r - z0))), exactly
        lambda_u * torch.sigmoid(beta * (r - z0)),
    )
    return losses.mean()
