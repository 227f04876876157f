"""Attention masks of the three transformer architectures.

Convention: a mask is a boolean tensor whose entry ``[i, j]`` is True when query position i
may attend to key position j. It is the convention of the boolean ``attn_mask`` of
``torch.nn.functional.scaled_dot_product_attention``, so a mask built here can be passed to
it directly. A padding vector is True on real tokens and False on padding; it removes the
padded *keys* (columns). A query row with no True entry has no keys to attend to and makes
softmax attention undefined (0/0: a plain softmax gives NaN, recent versions of
``scaled_dot_product_attention`` return zeros); such rows only occur for padded queries, whose
outputs a loss must ignore.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import check_int

__all__ = ["EncoderDecoderMasks", "causal_mask", "encoder_decoder_masks", "prefix_lm_mask"]


def _padding(name: str, padding, n: int) -> torch.Tensor | None:
    if padding is None:
        return None
    p = torch.as_tensor(padding)
    if p.dtype != torch.bool:
        raise TypeError(f"{name} must be a boolean tensor (True = real token), got {p.dtype}")
    if p.dim() not in (1, 2) or p.shape[-1] != n:
        raise ValueError(
            f"{name} must have shape (n,) or (batch, n) with n = {n}, got {tuple(p.shape)}"
        )
    return p


def _with_padding(M: torch.Tensor, key_padding: torch.Tensor | None) -> torch.Tensor:
    """Remove padded keys: (n_q, n_k) & (..., n_k) -> (..., n_q, n_k)."""
    if key_padding is None:
        return M
    return M & key_padding.unsqueeze(-2)


def causal_mask(n: int, *, padding=None) -> torch.Tensor:
    """Causal decoder: position i attends to positions j <= i.

    Implements :prf:ref:`alg-attention-masks`.

    Returns an ``(n, n)`` boolean mask, or ``(batch, n, n)`` when ``padding`` has shape
    ``(batch, n)``.
    """
    n = check_int("n", n, 1)
    M = torch.ones(n, n, dtype=torch.bool).tril()
    return _with_padding(M, _padding("padding", padding, n))


def prefix_lm_mask(n: int, prefix_length: int, *, padding=None) -> torch.Tensor:
    """Prefix decoder: bidirectional over the first ``prefix_length`` positions, causal after.

    Implements :prf:ref:`alg-attention-masks`.

    Entry ``[i, j]`` is True when j <= i or j < prefix_length. ``prefix_length = 0`` gives
    the causal mask; ``prefix_length = n`` gives the full (encoder) mask.
    """
    n = check_int("n", n, 1)
    k = check_int("prefix_length", prefix_length, 0, n)
    j = torch.arange(n)
    M = causal_mask(n) | (j < k).unsqueeze(0)
    return _with_padding(M, _padding("padding", padding, n))


class EncoderDecoderMasks(NamedTuple):
    """The three masks of an encoder-decoder transformer."""

    encoder: torch.Tensor  #: encoder self-attention, (n_e, n_e): full
    decoder: torch.Tensor  #: decoder self-attention, (n_d, n_d): causal
    cross: torch.Tensor  #: decoder queries over encoder keys, (n_d, n_e): full


def encoder_decoder_masks(
    n_encoder: int, n_decoder: int, *, encoder_padding=None, decoder_padding=None
) -> EncoderDecoderMasks:
    """Masks of an encoder-decoder: full encoder self-attention, causal decoder
    self-attention, and full cross-attention from every decoder position to every encoder
    position.

    Implements :prf:ref:`alg-attention-masks`.

    ``encoder_padding`` removes padded encoder keys from the encoder and cross masks;
    ``decoder_padding`` removes padded decoder keys from the decoder mask.
    """
    n_e = check_int("n_encoder", n_encoder, 1)
    n_d = check_int("n_decoder", n_decoder, 1)
    pe = _padding("encoder_padding", encoder_padding, n_e)
    pd = _padding("decoder_padding", decoder_padding, n_d)
    encoder = _with_padding(torch.ones(n_e, n_e, dtype=torch.bool), pe)
    decoder = causal_mask(n_d, padding=pd)
    cross = _with_padding(torch.ones(n_d, n_e, dtype=torch.bool), pe)
    return EncoderDecoderMasks(encoder, decoder, cross)
