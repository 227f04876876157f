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
        q, k, v = (torch.nn.functional.layer_norm(h, h.shape[-1:]) @ self.qkv).chunk(3, -1)
        h = h + torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        a = torch.nn.functional.layer_norm(h, h.shape[-1:])
        h = h + torch.relu(a @ self.w1) @ self.w2
        return torch.nn.functional.layer_norm(h, h.shape[-1:]) @ self.out


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
    causal_model = TinyTransformer(V + 1, context, seed=seed)
    masked_model = TinyTransformer(V + 1, context, seed=seed)
    masked_model.load_state_dict(causal_model.state_dict())
    hyper = dict(lr=lr, momentum=momentum)
    opt_c, opt_m = SGD(causal_model.parameters(), **hyper), SGD(masked_model.parameters(), **hyper)
    causal, full = causal_mask(context), torch.ones(context, context, dtype=torch.bool)
    g = torch.Generator().manual_seed(seed)
    curves = np.full((2, steps), np.nan)
    diverged_at = None
    for t in range(steps):
        batch = random_windows(ids, batch_size, context + 1, generator=g)
        # Causal LM: predict token i + 1 from tokens 1..i.
        loss_c = causal_lm_loss(lambda x: causal_model(x, causal), batch)
        # MLM: predict the hidden tokens from the whole corrupted window.
        x̃, labels = mask_tokens(batch[:, 1:], vocab_size=V + 1, mask_id=mask_id, generator=g)
        if not bool((labels != -100).any()):  # a batch with nothing masked: mask one token
            labels[0, 0] = batch[0, 1]
            x̃[0, 0] = mask_id
        loss_m = cross_entropy(masked_model(x̃, full).transpose(1, 2), labels)
        opt_c.zero_grad()
        opt_m.zero_grad()
        (loss_c + loss_m).backward()  # one backward pass; the two graphs share nothing
        opt_c.step()
        opt_m.step()
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
