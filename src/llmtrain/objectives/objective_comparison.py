"""The same tiny transformer trained two ways: causal next-token prediction and MLM.

A one-layer, one-head transformer reads windows of the book's synthetic text
(:func:`synthetic_corpus`). Trained as a causal decoder it sees the causal mask
(:func:`causal_mask`) and predicts every next character; trained as an encoder it sees the
full mask and predicts the characters :func:`mask_tokens` hid. Both start from the same
parameters and use the package's SGD.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_int, check_real
from .._threads import one_torch_thread
from ..optim import SGD
from .attention_masks import causal_mask
from .language_modelling import causal_lm_loss
from .losses import cross_entropy
from .masked_lm import mask_tokens
from .synthetic_text import DEFAULT_SOURCE, CharVocab, random_windows, synthetic_corpus

__all__ = ["ObjectiveCurves", "TinyTransformer", "compare_objectives"]


class TinyTransformer(torch.nn.Module):
    """Token and position embeddings, one masked self-attention head, an MLP, and a linear
    read-out, with residual connections and layer norm. Small enough to train on a CPU in a
    fraction of a second."""

    def __init__(self, vocab_size: int, context: int, width: int = 32, seed: int = 0):
        super().__init__()
        V = check_int("vocab_size", vocab_size, 2)
        n = check_int("context", context, 1)
        d = check_int("width", width, 1)
        g = torch.Generator().manual_seed(check_int("seed", seed, 0))
        self.embed = torch.nn.Parameter(torch.randn(V, d, generator=g) * 0.3)
        self.position = torch.nn.Parameter(torch.randn(n, d, generator=g) * 0.3)
        self.qkv = torch.nn.Parameter(torch.randn(d, 3 * d, generator=g) / math.sqrt(d))
        self.w1 = torch.nn.Parameter(torch.randn(d, 2 * d, generator=g) / math.sqrt(d))
        self.w2 = torch.nn.Parameter(torch.randn(2 * d, d, generator=g) / math.sqrt(2 * d))
        self.out = torch.nn.Parameter(torch.randn(d, V, generator=g) / math.sqrt(d))
        self.context = n

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(B, n, V)`` for ids ``(B, n)`` under the boolean attention
        ``mask`` ``(n, n)`` (True = may attend)."""
        h = self.embed[ids] + self.position[: ids.shape[1]]
        return _blocks(h, self.qkv, self.w1, self.w2, self.out, mask)


def _blocks(h, qkv, w1, w2, out, mask):
    """Everything after the embeddings: attention, MLP and read-out of the residual stream
    ``h`` (``(B, n, d)``, or ``(2, B, n, d)`` with weights stacked as ``(2, ...)``)."""
    q, k, v = _linear(torch.nn.functional.layer_norm(h, h.shape[-1:]), qkv).chunk(3, -1)
    h = h + torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    a = torch.nn.functional.layer_norm(h, h.shape[-1:])
    h = h + _linear(torch.relu(_linear(a, w1)), w2)
    return _linear(torch.nn.functional.layer_norm(h, h.shape[-1:]), out)


def _linear(x, W):
    """``x @ W``; for stacked weights ``(2, d, e)``, one matrix product per model over all of
    its rows (broadcasting would run one small product per sequence)."""
    if W.ndim == 2:
        return x @ W
    return (x.flatten(1, -2) @ W).view(*x.shape[:-1], W.shape[-1])


_NAMES = ("embed", "position", "qkv", "w1", "w2", "out")


def _pair_forward(P, ids, masks):
    """Two copies of a :class:`TinyTransformer`, stacked: each parameter in ``P`` has a
    leading dimension of 2 (model 0, model 1), ``ids`` is ``(2, B, n)`` and ``masks``
    ``(2, 1, n, n)``. One pass computes both models' logits ``(2, B, n, V)``; the two share
    no parameter, so each model's gradient is the one it would get alone, in half the
    operations of two separate passes."""
    n = ids.shape[-1]
    h = P["embed"][torch.arange(2)[:, None, None], ids] + P["position"][:, None, :n]
    return _blocks(h, *(P[k] for k in ("qkv", "w1", "w2", "out")), masks)


@dataclass(frozen=True)
class ObjectiveCurves:
    """Training losses per step of the two objectives, in nats per predicted token.

    Three reference levels of the text source: ``entropy_rate``, the best loss any causal
    model can reach; ``unigram_entropy``, the loss of predicting every character from the
    character frequencies alone (no context); ``bidirectional_entropy``, the best loss of
    predicting a character from both of its neighbours, a floor for the masked model.
    ``diverged_at`` is the first step whose loss was not finite, or None.
    """

    causal: np.ndarray
    masked: np.ndarray
    entropy_rate: float
    unigram_entropy: float
    bidirectional_entropy: float
    diverged_at: int | None


def _entropies(source) -> tuple[float, float]:
    """H(X_i) and H(X_i | X_{i-1}, X_{i+1}) of a stationary Markov source, in nats."""
    π, P = source.stationary(), source.transitions
    unigram = float(-(π[π > 0] * np.log(π[π > 0])).sum())
    joint = π[:, None, None] * P[:, :, None] * P[None, :, :]  # p(x_{i-1}, x_i, x_{i+1})
    outer = joint.sum(axis=1, keepdims=True)  # p(x_{i-1}, x_{i+1})
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / outer), 0.0)
    return unigram, float(-terms.sum())


@functools.lru_cache(maxsize=1)
def _data(n_chars: int, seed: int):
    text = synthetic_corpus(n_chars, seed=seed)
    vocab = CharVocab(DEFAULT_SOURCE.alphabet)
    return vocab, vocab.encode(text)


@functools.lru_cache(maxsize=256)
def _cached(lr, batch_size, momentum, steps, context, seed) -> ObjectiveCurves:
    with one_torch_thread():
        return _train(lr, batch_size, momentum, steps, context, seed)


def _train(lr, batch_size, momentum, steps, context, seed) -> ObjectiveCurves:
    vocab, ids = _data(20_000, seed)
    V = len(vocab)
    mask_id = V  # one extra id, [MASK], for the masked model
    init = TinyTransformer(V + 1, context, seed=seed)
    # Both models start from ``init``'s parameters. They are trained as one stacked pair
    # (model 0 causal, model 1 masked); SGD acts on each entry separately, so this is the
    # same as two optimizers on two models, and much cheaper per step.
    P = {k: torch.stack([getattr(init, k).detach()] * 2).requires_grad_() for k in _NAMES}
    optimizer = SGD(P.values(), lr=lr, momentum=momentum)
    causal, full = causal_mask(context), torch.ones(context, context, dtype=torch.bool)
    masks = torch.stack([causal, full])[:, None]
    g = torch.Generator().manual_seed(seed)
    curves = np.full((2, steps), np.nan)
    diverged_at = None
    for t in range(steps):
        batch = random_windows(ids, batch_size, context + 1, generator=g)
        # MLM input: the corrupted window, from which the hidden tokens are predicted.
        x̃, labels = mask_tokens(batch[:, 1:], vocab_size=V + 1, mask_id=mask_id, generator=g)
        if not bool((labels != -100).any()):  # a batch with nothing masked: mask one token
            labels[0, 0] = batch[0, 1]
            x̃[0, 0] = mask_id
        logits = {}

        def pair(x, x̃=x̃, logits=logits):
            z = _pair_forward(P, torch.stack([x, x̃]), masks)
            logits["masked"] = z[1]
            return z[0]

        # Causal LM: predict token i + 1 from tokens 1..i (model 0, causal mask).
        loss_c = causal_lm_loss(pair, batch)
        # MLM: predict the hidden tokens from the whole corrupted window (model 1, full mask).
        loss_m = cross_entropy(logits["masked"].transpose(1, 2), labels)
        optimizer.zero_grad()
        (loss_c + loss_m).backward()  # each loss reaches only its own model's half
        optimizer.step()
        curves[:, t] = loss_c.item(), loss_m.item()
        if not np.all(np.isfinite(curves[:, t])):
            diverged_at = t
            break
    unigram, bidirectional = _entropies(DEFAULT_SOURCE)
    return ObjectiveCurves(
        curves[0], curves[1], DEFAULT_SOURCE.entropy_rate(), unigram, bidirectional, diverged_at
    )


def compare_objectives(
    *,
    lr: float = 0.1,
    batch_size: int = 32,
    momentum: float = 0.9,
    steps: int = 80,
    context: int = 24,
    seed: int = 0,
) -> ObjectiveCurves:
    """Train the same :class:`TinyTransformer` with the causal-LM loss and with the MLM loss.

    Both runs start from the same parameters, read the same batches of synthetic text and
    use :class:`llmtrain.optim.SGD` with learning rate α = ``lr`` and momentum μ =
    ``momentum``. Results are cached, so a repeated call returns at once.
    """
    lr = check_real("lr", lr, 0.0, 100.0, low_open=True)
    batch_size = check_int("batch_size", batch_size, 1)
    momentum = check_real("momentum", momentum, 0.0, 1.0, high_open=True)
    steps = check_int("steps", steps, 1)
    context = check_int("context", context, 2)
    seed = check_int("seed", seed, 0)
    return _cached(lr, batch_size, momentum, steps, context, seed)
