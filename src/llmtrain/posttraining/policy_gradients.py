"""Building blocks of reinforcement learning for language models: the log-probability of a
response under the GPT, advantages (GAE for a learned value function, group-relative advantages
for GRPO), the clipped surrogate loss of PPO and the KL estimators that keep the policy close to
a reference model.

Conventions shared by the functions here:

* The *policy* π is the model being trained, π_old the policy that sampled the responses and
  π_ref the frozen reference model (usually the fine-tuned model RL starts from).
* Log-probabilities are per token, shape (B, T) for B sequences of T tokens; a ``mask`` of the
  same shape marks the tokens that count (1) and the ones that do not (0: prompt, padding).
* Quantities that the theory treats as constants (π_old, advantages, value targets) are
  detached, so that gradients flow only where the loss means them to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_int, check_real, check_shape_match
from ..pretraining import GPT

__all__ = [
    "GRPO_SCALES",
    "KL_ESTIMATORS",
    "gae",
    "grpo_advantages",
    "kl_estimate",
    "ppo_clip_loss",
    "sequence_logprobs",
    "token_logprobs",
]

GRPO_SCALES = ("group", "batch", "none")
KL_ESTIMATORS = ("k1", "k2", "k3")


def _check_tensor(name: str, value, *, min_dim: int = 0) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must hold floating-point numbers, got dtype {value.dtype}")
    if value.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s), got {value.dim()}")
    return value


def _check_mask(name: str, mask, other: str, shape: tuple) -> torch.Tensor:
    """A 0/1 (or boolean) tensor of the shape of argument ``other``, as a float tensor."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    check_shape_match(name, mask.shape, other, shape)
    m = mask.float()
    if not torch.all((m == 0) | (m == 1)):
        raise ValueError(f"{name} must hold only 0 and 1 (or False and True)")
    return m


def _check_ids(idx) -> None:
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.is_floating_point():
        raise TypeError("idx must be an integer torch.Tensor of shape (B, T)")
    if idx.shape[1] < 2:
        raise ValueError(f"idx must have at least 2 tokens per row, got {idx.shape[1]}")


def token_logprobs(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """ln π(x_t | x_<t) for t = 1 .. T-1 of token ids ``idx`` (B, T); returns (B, T-1).

    Column t-1 holds the log-probability of token t: the logits at position t-1 predict token t,
    so the first token has no column (nothing predicts it). One forward pass; gradients flow
    into the model. The model is used in whatever mode it is in (switch off dropout with
    ``model.eval()`` when the log-probabilities must be deterministic).
    """
    _check_ids(idx)
    logits = model(idx[:, :-1])[0]
    return F.log_softmax(logits, dim=-1).gather(-1, idx[:, 1:, None]).squeeze(-1)


def sequence_logprobs(model: GPT, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t mask_t · ln π(x_t | x_<t): the log-probability of the scored tokens of each row.

    ``idx`` (B, T) holds prompt and response; ``mask`` (B, T) is 1 on the tokens to score (the
    response) and 0 elsewhere. The first position cannot be scored, since no logit predicts it:
    ``mask[:, 0]`` must be 0. Returns shape (B,), with gradients into the model.

    Implements :prf:ref:`alg-sequence-logprobs`.
    """
    _check_ids(idx)
    m = _check_mask("mask", mask, "idx", tuple(idx.shape))
    if torch.any(m[:, 0] != 0):
        raise ValueError("mask[:, 0] must be 0: the first token of a row has no prediction")
    return (token_logprobs(model, idx) * m[:, 1:]).sum(dim=1)


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip: float = 0.2,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The clipped surrogate loss of PPO, -mean_t min(ρ_t Â_t, clip(ρ_t, 1-ε, 1+ε) Â_t).

    ρ_t = π(a_t | s_t) / π_old(a_t | s_t) = exp(logp - old_logp). This is the objective
    L^CLIP of Schulman et al. (2017, eq. 7) with its sign flipped, so that an optimiser
    minimises it. ``logp``, ``old_logp`` and ``advantages`` have the same shape (for a
    per-sequence advantage of shape (B,), pass ``a[:, None].expand_as(logp)``); ``old_logp``
    and ``advantages`` are constants (detached). The mean runs over every element, or, with a
    0/1 ``mask`` of the same shape, over the elements where the mask is 1: every scored token
    of the batch weighs the same (GRPO's paper averages over the tokens of each response first,
    then over responses). ``clip`` is ε in (0, 1).

    Implements :prf:ref:`alg-ppo-clip`.
    """
    logp = _check_tensor("logp", logp)
    old_logp = _check_tensor("old_logp", old_logp)
    advantages = _check_tensor("advantages", advantages)
    check_shape_match("logp", logp.shape, "old_logp", old_logp.shape)
    check_shape_match("logp", logp.shape, "advantages", advantages.shape)
    eps = check_real("clip", clip, 0.0, 1.0, low_open=True, high_open=True)
    ratio = torch.exp(logp - old_logp.detach())
    a = advantages.detach()
    surrogate = torch.minimum(ratio * a, ratio.clamp(1.0 - eps, 1.0 + eps) * a)
    if mask is None:
        return -surrogate.mean()
    m = _check_mask("mask", mask, "logp", tuple(logp.shape))
    if m.sum() == 0:
        raise ValueError("mask must mark at least one element with 1")
    return -(surrogate * m).sum() / m.sum()


@torch.no_grad()
def gae(
    rewards: torch.Tensor, values: torch.Tensor, *, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016): (advantages, returns).

    ``rewards`` has shape (..., T): r_0 .. r_{T-1}, time last, any batch dimensions first.
    ``values`` has shape (..., T+1): V(s_0) .. V(s_T), one more than ``rewards``; the last entry
    is the bootstrap value of the state after the last reward, and must be 0 when the episode
    ended there (as for a finished response). Padding after the end of a shorter sequence
    must hold reward 0 and value 0, which makes its TD errors 0.

    With the TD errors δ_t = r_t + γ V(s_{t+1}) - V(s_t), the advantage is
    Â_t = Σ_{l=0}^{T-1-t} (γλ)^l δ_{t+l}, computed backwards as Â_t = δ_t + γλ Â_{t+1}.
    λ = 0 gives the one-step TD error δ_t; λ = 1 gives the discounted return minus V(s_t).
    The returns Â_t + V(s_t) are the value function's regression targets. Both outputs are
    constants (no gradient flows back into ``values``). ``gamma`` and ``lam`` lie in [0, 1].

    Implements :prf:ref:`alg-gae`.
    """
    rewards = _check_tensor("rewards", rewards, min_dim=1)
    values = _check_tensor("values", values, min_dim=1)
    gamma = check_real("gamma", gamma, 0.0, 1.0)
    lam = check_real("lam", lam, 0.0, 1.0)
    expected = (*rewards.shape[:-1], rewards.shape[-1] + 1)
    if tuple(values.shape) != expected:
        raise ValueError(
            f"values must have shape {expected} (one more entry than rewards, for the "
            f"bootstrap value), got {tuple(values.shape)}"
        )
    deltas = rewards + gamma * values[..., 1:] - values[..., :-1]
    advantages = torch.empty_like(deltas)
    running = torch.zeros_like(deltas[..., 0])
    for t in reversed(range(deltas.shape[-1])):
        running = deltas[..., t] + gamma * lam * running
        advantages[..., t] = running
    return advantages, advantages + values[..., :-1]


def grpo_advantages(rewards: torch.Tensor, group_size: int, *, scale: str = "group"):
    """Group-relative advantages of GRPO: each reward minus the mean of its group, scaled.

    ``rewards`` has shape (B,) with B = n_groups · ``group_size``: the responses to one prompt
    are consecutive, rows g·G .. g·G + G - 1 form group g. The advantage of response i is
    r_i - mean(group of i), divided by

    * ``"group"``: the standard deviation of its group (Shao et al., 2024, outcome supervision),
    * ``"batch"``: the standard deviation of all B rewards (the group mean is still subtracted),
    * ``"none"``: nothing (Dr. GRPO, Liu et al., 2025, which drops the division).

    Standard deviations are the sample ones (divisor n - 1), as ``torch.std`` and TRL compute
    them. A group whose rewards are all equal carries no signal: its advantages are exactly 0
    (no NaN), and a zero batch standard deviation can only occur when every advantage is 0.
    No epsilon is added (TRL divides by std + 1e-4 instead), so under ``"group"`` every group
    with unequal rewards has mean 0 and sample standard deviation 1.

    Implements :prf:ref:`alg-grpo-advantages`.
    """
    rewards = _check_tensor("rewards", rewards)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must have shape (B,), got {tuple(rewards.shape)}")
    G = check_int("group_size", group_size, 1)
    if rewards.numel() == 0 or rewards.numel() % G:
        raise ValueError(
            f"group_size must divide the number of rewards {rewards.numel()} (a positive "
            f"multiple of group_size), got {G}"
        )
    if scale not in GRPO_SCALES:
        raise ValueError(f"scale must be one of {GRPO_SCALES}, got {scale!r}")
    groups = rewards.view(-1, G)
    # Equal rewards: set the centred values to exactly 0 rather than trusting r - mean to round
    # to 0 (the mean of equal floats need not equal them).
    tied = (groups.max(dim=1).values == groups.min(dim=1).values)[:, None]
    centred = torch.where(tied, 0.0, groups - groups.mean(dim=1, keepdim=True))
    if scale == "none" or G == 1:
        return centred.reshape(-1)
    if scale == "group":
        std = groups.std(dim=1, keepdim=True)
    else:
        std = rewards.std()  # G ≥ 2 here, so there are at least 2 rewards
    return (centred / torch.where(std > 0, std, 1.0)).reshape(-1)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-sample estimates of KL(π ‖ π_ref) from tokens x sampled from π (Schulman, 2020).

    With ``logp`` = ln π(x), ``ref_logp`` = ln π_ref(x) and r = π_ref(x) / π(x):

    * ``"k1"``: -ln r, unbiased, high variance, negative for some samples;
    * ``"k2"``: (ln r)² / 2, never negative, biased: E[k2] = KL - E[(ln r)³]/6 up to terms
      of order (ln r)⁴ (expand E_π[r] = E_π[exp(ln r)] = 1 to third order), so close to KL
      only when π and π_ref are close;
    * ``"k3"``: (r - 1) - ln r, unbiased (E_π[r] = 1) and never negative (ln r ≤ r - 1).
      Nothing guards it against overflow: r = exp(ln r) is infinite in float32 once
      ln r > 88, a token the policy has made e^88 times less likely than the reference did
      (verl clamps ln r to ±20 and k3 to ±10; here the caller decides).

    Elementwise: returns the shape of the inputs, which must match; average it (over the
    tokens of a response, or of a batch) to estimate the KL. Gradients flow into both inputs.

    Implements :prf:ref:`alg-kl-estimators`.
    """
    logp = _check_tensor("logp", logp)
    ref_logp = _check_tensor("ref_logp", ref_logp)
    check_shape_match("logp", logp.shape, "ref_logp", ref_logp.shape)
    if kind not in KL_ESTIMATORS:
        raise ValueError(f"kind must be one of {KL_ESTIMATORS}, got {kind!r}")
    log_r = ref_logp - logp
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r**2
    # expm1 keeps r - 1 accurate when r is close to 1, where k3 ≈ (ln r)²/2 is tiny.
    return torch.expm1(log_r) - log_r
