"""Turning a model's logits into the next token: temperature, top-k and top-p (nucleus).

Each filter takes logits z of shape (..., V) and returns logits of the same shape in which the
tokens it rules out are set to -inf, so that the softmax gives them probability exactly 0 and
the filters compose: temperature first, then top-k, then top-p (the order of Hugging Face's
``generate``; nanoGPT has temperature and top-k in the same order).
"""

from __future__ import annotations

import torch

from .._checks import check_int, check_real

__all__ = ["sample_next_token", "sampling_distribution", "top_k_filter", "top_p_filter"]


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


def _check_sampling(temperature, top_k, top_p) -> float:
    τ = check_real("temperature", temperature, 0.0)
    if top_k is not None:
        check_int("top_k", top_k, 1)
    if top_p is not None:
        check_real("top_p", top_p, 0.0, 1.0, low_open=True)
    return τ


def sampling_distribution(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The probabilities the next token is drawn from: softmax of the logits divided by the
    temperature τ, restricted by top-k and then top-p and renormalised.

    τ = 0 is the limit τ → 0: all the mass on the most likely token (the first one, when
    several tie), which is greedy decoding.
    """
    z = _check_logits(logits)
    τ = _check_sampling(temperature, top_k, top_p)
    if τ == 0.0:
        greedy = z.argmax(dim=-1, keepdim=True)
        return torch.zeros_like(z).scatter(-1, greedy, 1.0)
    z = z / τ
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    return torch.softmax(z, dim=-1)


def sample_next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token id per row of ``logits`` (shape (B, V) or (V,)) from
    :func:`sampling_distribution`; returns shape (B,) or (). τ = 0 takes the argmax and draws
    no random number, so it does not advance ``generator``."""
    z = _check_logits(logits)
    τ = _check_sampling(temperature, top_k, top_p)
    if z.ndim > 2:
        raise ValueError(f"logits must have shape (B, V) or (V,), got {tuple(z.shape)}")
    if τ == 0.0:
        return z.argmax(dim=-1)
    probs = sampling_distribution(z, temperature=τ, top_k=top_k, top_p=top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
