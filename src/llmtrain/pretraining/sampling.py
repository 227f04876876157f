"""Turning a model's logits into the next token: temperature, top-k, top-p (nucleus), min-p
and a repetition penalty.

Each filter takes logits z of shape (..., V) and returns logits of the same shape in which the
tokens it rules out are set to -inf, so that the softmax gives them probability exactly 0 and
the filters compose. The order is that of Hugging Face's ``generate``: the repetition penalty
on the raw logits, then temperature, top-k, top-p and min-p (nanoGPT has temperature and top-k
in the same order). Min-p and the repetition penalty belong to Part IV's decoding chapter and
are exported from :mod:`llmtrain.posttraining`; they live here so that one sampler serves
:meth:`~llmtrain.pretraining.GPT.generate`.
"""

from __future__ import annotations

import torch

from .._checks import check_int, check_real

__all__ = [
    "min_p_filter",
    "repetition_penalty_filter",
    "sample_next_token",
    "sampling_distribution",
    "top_k_filter",
    "top_p_filter",
]


def _check_logits(logits) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point torch tensor, got {logits!r:.60}")
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have shape (..., V) with V >= 1, got {tuple(logits.shape)}")
    return logits


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row and set the others to -inf.

    Implements :prf:ref:`alg-top-k`.

    A logit tied with the k-th largest is kept too (so a row can keep more than k tokens
    when there are ties at the boundary), as in nanoGPT and Hugging Face; k larger than the
    vocabulary keeps everything.
    """
    z = _check_logits(logits)
    k = min(check_int("k", k, 1), z.shape[-1])
    z_k = torch.topk(z, k, dim=-1).values[..., -1:]  # the k-th largest logit of each row
    return z.masked_fill(z < z_k, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the nucleus of each row: the smallest set of tokens, taken in order of decreasing
    probability, whose total probability is at least p; set the other logits to -inf.

    Implements :prf:ref:`alg-top-p`.

    The token whose probability carries the running total across p is kept, so the most
    likely token is always kept. Among tokens of equal probability, the one with the smaller
    id is taken first. p = 1 keeps every token.
    """
    z = _check_logits(logits)
    p = check_real("p", p, 0.0, 1.0, low_open=True)
    if p == 1.0:  # the whole vocabulary, even where the float sum of probabilities is < 1
        return z
    probs = torch.softmax(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1)
    probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    # Keep a token if the tokens before it (more probable ones) have total probability < p.
    before = torch.cumsum(probs, dim=-1) - probs
    keep_sorted = before < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return z.masked_fill(~keep, float("-inf"))


def min_p_filter(logits: torch.Tensor, p_min: float) -> torch.Tensor:
    """Keep the tokens whose probability is at least ``p_min`` times that of the most likely
    token of their row; set the other logits to -inf.

    Implements :prf:ref:`alg-min-p`.

    The threshold p_min · p_max scales with the model's confidence: a sharp distribution keeps
    few tokens, a flat one many (Nguyen et al., ICLR 2025). The most likely token always passes,
    p_min = 0 keeps every token and p_min = 1 keeps only the most likely one(s). As in Hugging
    Face's ``MinPLogitsWarper``, the test is on the probabilities softmax(``logits``), where
    the sampler passes the logits after the temperature, z/τ.
    """
    z = _check_logits(logits)
    p_min = check_real("p_min", p_min, 0.0, 1.0)
    probs = torch.softmax(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1)
    p_max = probs.max(dim=-1, keepdim=True).values
    return z.masked_fill(probs < p_min * p_max, float("-inf"))


def repetition_penalty_filter(
    logits: torch.Tensor, context: torch.Tensor, penalty: float
) -> torch.Tensor:
    """Make the tokens that already occur in ``context`` less likely: divide their logits by
    ``penalty`` where positive, multiply them by it where negative.

    Implements :prf:ref:`alg-repetition-penalty`.

    ``logits`` has shape (B, V) or (V,), ``context`` the token ids seen so far, shape (B, T) or
    (T,) (the prompt included, as in Hugging Face's ``RepetitionPenaltyLogitsProcessor``). A
    token is penalised once however often it occurs. penalty > 1 discourages repeats, 1 changes
    nothing, and penalty in (0, 1) encourages them. The sign rule is Hugging Face's; the CTRL
    paper (Keskar et al., 2019) divides every repeated logit, which raises a negative one.
    """
    z = _check_logits(logits)
    ρ = check_real("penalty", penalty, 0.0, low_open=True)
    if not isinstance(context, torch.Tensor) or context.dtype != torch.long:
        raise TypeError(f"context must be a tensor of token ids (torch.long), got {context!r:.60}")
    if context.ndim != z.ndim or context.shape[:-1] != z.shape[:-1]:
        raise ValueError(
            f"context must have shape (B, T) for logits (B, V), or (T,) for (V,); got logits "
            f"{tuple(z.shape)} and context {tuple(context.shape)}"
        )
    seen = torch.zeros(z.shape, dtype=torch.bool, device=z.device)
    seen.scatter_(-1, context, True)
    penalised = torch.where(z < 0, z * ρ, z / ρ)
    return torch.where(seen, penalised, z)


def _check_sampling(temperature, top_k, top_p, min_p=None, repetition_penalty=None) -> float:
    τ = check_real("temperature", temperature, 0.0)
    if top_k is not None:
        check_int("top_k", top_k, 1)
    if top_p is not None:
        check_real("top_p", top_p, 0.0, 1.0, low_open=True)
    if min_p is not None:
        check_real("min_p", min_p, 0.0, 1.0)
    if repetition_penalty is not None:
        check_real("repetition_penalty", repetition_penalty, 0.0, low_open=True)
    return τ


def _penalise(z, repetition_penalty, context):
    if repetition_penalty is None:
        return z
    if context is None:
        raise ValueError("repetition_penalty needs context, the token ids generated so far")
    return repetition_penalty_filter(z, context, repetition_penalty)


def sampling_distribution(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """The probabilities the next token is drawn from: the logits after the repetition penalty
    (on the tokens of ``context``), divided by the temperature τ, restricted by top-k, top-p
    and min-p and renormalised.

    τ = 0 is the limit τ → 0: all the mass on the most likely token (the first one, when
    several tie), which is greedy decoding.
    """
    z = _check_logits(logits)
    τ = _check_sampling(temperature, top_k, top_p, min_p, repetition_penalty)
    z = _penalise(z, repetition_penalty, context)
    if τ == 0.0:
        greedy = z.argmax(dim=-1, keepdim=True)
        return torch.zeros_like(z).scatter(-1, greedy, 1.0)
    z = z / τ
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    if min_p is not None:
        z = min_p_filter(z, min_p)
    return torch.softmax(z, dim=-1)


def sample_next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    context: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token id per row of ``logits`` (shape (B, V) or (V,)) from
    :func:`sampling_distribution`; returns shape (B,) or (). τ = 0 takes the argmax (of the
    penalised logits, with a repetition penalty) and draws no random number, so it does not
    advance ``generator``."""
    z = _check_logits(logits)
    τ = _check_sampling(temperature, top_k, top_p, min_p, repetition_penalty)
    if z.ndim > 2:
        raise ValueError(f"logits must have shape (B, V) or (V,), got {tuple(z.shape)}")
    if τ == 0.0:
        return _penalise(z, repetition_penalty, context).argmax(dim=-1)
    probs = sampling_distribution(
        z,
        temperature=τ,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        context=context,
    )
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
