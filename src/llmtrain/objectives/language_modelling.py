"""Autoregressive (decoder-only) language modelling (Part II, Objectives).

The causal language-modelling loss of a batch of token sequences, the units its value is
reported in (perplexity, bits per character, bits per byte, code length), an exact arithmetic
coder that turns a model's probabilities into a code of that length, and a tiny bigram model
with a seeded training run on the synthetic corpus of :mod:`llmtrain.objectives`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from .._checks import check_int, check_real
from .._threads import one_torch_thread
from .losses import _check_reduction, cross_entropy, log_softmax
from .synthetic_text import DEFAULT_SOURCE, CharVocab, MarkovSource, random_windows

__all__ = [
    "BigramLM",
    "LMRun",
    "arithmetic_decode",
    "arithmetic_encode",
    "bits_per_byte",
    "bits_per_character",
    "causal_lm_loss",
    "code_length",
    "generate",
    "perplexity",
    "shift_tokens",
    "train_bigram_lm",
]


def _check_ids(ids) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"ids must be a torch tensor, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"ids must hold integer token ids, got dtype {ids.dtype}")
    if ids.ndim != 2:
        raise ValueError(f"ids must have shape (B, n), got {tuple(ids.shape)}")
    if ids.shape[0] < 1 or ids.shape[1] < 2:
        raise ValueError(
            f"ids must hold at least one sequence of n >= 2 tokens, got shape {tuple(ids.shape)}"
        )
    return ids


def shift_tokens(
    ids: torch.Tensor, padding: torch.Tensor | None = None, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of next-token prediction: ``x_{1:n-1}`` and ``x_{2:n}``.

    Parameters
    ----------
    ids : torch.Tensor
        Token ids, shape ``(B, n)`` with n ≥ 2.
    padding : torch.Tensor, optional
        Boolean ``(B, n)``, True on real tokens and False on padding (the convention of
        :func:`llmtrain.objectives.causal_mask`). A target that is padding is replaced by
        ``ignore_index``, so that it costs nothing and is not counted in the mean.
    ignore_index : int
        The value that marks an ignored target.

    Returns
    -------
    tuple of torch.Tensor
        ``inputs`` and ``targets``, both of shape ``(B, n - 1)``: ``targets[:, t]`` is the
        token that follows ``inputs[:, :t + 1]``.
    """
    ids = _check_ids(ids)
    inputs, targets = ids[:, :-1], ids[:, 1:].clone()
    if padding is not None:
        if not isinstance(padding, torch.Tensor) or padding.dtype != torch.bool:
            raise TypeError("padding must be a boolean tensor (True = real token)")
        if padding.shape != ids.shape:
            raise ValueError(
                f"padding must have the shape of ids {tuple(ids.shape)}, got {tuple(padding.shape)}"
            )
        targets[~padding[:, 1:]] = ignore_index
    return inputs, targets


def causal_lm_loss(
    model: Callable[[torch.Tensor], torch.Tensor],
    ids: torch.Tensor,
    padding: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """The causal (next-token) language-modelling loss of a batch of sequences.

    Implements :prf:ref:`alg-causal-lm-loss`.

    Parameters
    ----------
    model : callable
        ``model(inputs) -> logits``: token ids of shape ``(B, n - 1)`` to logits of shape
        ``(B, n - 1, V)``, where ``logits[i, t]`` may depend on ``inputs[i, :t + 1]`` only (a
        causal model, for example a transformer with :func:`llmtrain.objectives.causal_mask`).
        Teacher forcing: the model always reads the true previous tokens, never its own
        predictions.
    ids : torch.Tensor
        Token ids x_1, ..., x_n, shape ``(B, n)`` with n ≥ 2.
    padding : torch.Tensor, optional
        Boolean ``(B, n)``, True on real tokens; padded targets are ignored.
    ignore_index : int
        The value that marks an ignored target (padding is mapped to it).
    label_smoothing : float
        ε_ls in [0, 1], as in :func:`llmtrain.objectives.cross_entropy`.
    reduction : str
        ``"mean"`` over the (not ignored) predicted tokens, ``"sum"``, or ``"none"``
        (shape ``(B, n - 1)``: entry ``[i, t]`` is ``-ln p_θ(x_{t+2} | x_{1:t+1})``).

    Returns
    -------
    torch.Tensor
        The negative log-likelihood in nats, reduced as asked.
    """
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    reduction = _check_reduction(reduction)
    x, y = shift_tokens(ids, padding, ignore_index)  # inputs x_{1:n-1}, targets x_{2:n}
    z = model(x)  # z[i, t] scores x_{t+2} given x_{1:t+1}
    if not isinstance(z, torch.Tensor) or z.ndim != 3 or z.shape[:2] != x.shape:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(
            f"model must return logits of shape (B, n - 1, V) = ({x.shape[0]}, {x.shape[1]}, V),"
            f" got {shape}"
        )
    # cross_entropy wants the classes in dimension 1: (B, V, n - 1).
    return cross_entropy(
        z.transpose(1, 2),
        y,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


@torch.no_grad()
def generate(
    model: Callable[[torch.Tensor], torch.Tensor],
    prompt: torch.Tensor,
    n_new: int,
    temperature: float = 1.0,
    seed: int = 0,
) -> torch.Tensor:
    """Sample a continuation of ``prompt``, one token at a time, from a causal model.

    Each new token is drawn from ``softmax(z / τ)``, where z are the model's logits at the
    last position; it is then appended to the input for the next step (the model now reads its
    own output, unlike in training, where it reads the data).

    Parameters
    ----------
    model : callable
        ``model(ids) -> logits``, as in :func:`causal_lm_loss`.
    prompt : torch.Tensor
        Token ids of shape ``(B, m)``, m ≥ 1.
    n_new : int
        Number of tokens to append, ≥ 0.
    temperature : float
        τ > 0; lower is greedier.
    seed : int
        Seed of the sampler.

    Returns
    -------
    torch.Tensor
        Shape ``(B, m + n_new)``: the prompt followed by the sampled tokens.
    """
    if not isinstance(prompt, torch.Tensor) or prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError("prompt must be a tensor of token ids of shape (B, m) with m >= 1")
    n_new = check_int("n_new", n_new, 0)
    τ = check_real("temperature", temperature, 0.0, low_open=True)
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    ids = prompt
    for _ in range(n_new):
        z = model(ids)[:, -1].to(torch.float64) / τ
        nxt = torch.multinomial(torch.exp(log_softmax(z)), 1, generator=g)
        ids = torch.cat([ids, nxt.to(ids.dtype)], dim=1)
    return ids


def _mean_nll(loss, name: str = "loss") -> float:
    if isinstance(loss, torch.Tensor | np.ndarray):
        loss = np.asarray(loss.detach() if isinstance(loss, torch.Tensor) else loss, dtype=float)
        if loss.size == 0:
            raise ValueError(f"{name} must not be empty")
        loss = float(loss.mean())
    return check_real(name, loss, 0.0)


def perplexity(loss) -> float:
    """Perplexity ``exp(L)`` of a mean negative log-likelihood L in nats per token.

    ``loss`` is either that mean (a number) or a tensor/array of per-token negative
    log-likelihoods, which are averaged first. A model that spreads its probability evenly
    over V tokens has loss ln V and perplexity V: perplexity is the size of the uniform
    choice that would be as hard to predict.
    """
    return math.exp(_mean_nll(loss))


def bits_per_character(loss, n_tokens: int | None = None, n_chars: int | None = None) -> float:
    """Bits per character of a mean loss L in nats per token.

    The text's total cost is ``L n_tokens`` nats, that is ``L n_tokens / ln 2`` bits, shared
    among ``n_chars`` characters. For a character-level model (one token per character, the
    default) it is simply ``L / ln 2``.
    """
    L = _mean_nll(loss)
    if (n_tokens is None) != (n_chars is None):
        raise ValueError("n_tokens and n_chars must be given together (or neither)")
    if n_tokens is None:
        return L / math.log(2.0)
    T = check_int("n_tokens", n_tokens, 1)
    n = check_int("n_chars", n_chars, 1)
    return L * T / (n * math.log(2.0))


def bits_per_byte(loss, n_tokens: int, text: str | bytes) -> float:
    """Bits per byte of a mean loss L in nats per token on ``text``, tokenised into
    ``n_tokens`` tokens: ``L n_tokens / (ln 2 · bytes)``, where the bytes are those of the
    UTF-8 encoding of ``text``. Unlike the loss per token, it does not depend on the
    tokenizer, so models with different vocabularies can be compared."""
    L = _mean_nll(loss)
    T = check_int("n_tokens", n_tokens, 1)
    if isinstance(text, str):
        text = text.encode("utf-8")
    if not isinstance(text, bytes) or len(text) == 0:
        raise ValueError("text must be a non-empty str or bytes")
    return L * T / (len(text) * math.log(2.0))


def code_length(p):
    """The ideal code length ``-log₂ p`` in bits of an outcome of probability p in (0, 1].

    Works elementwise on tensors and arrays. An arithmetic coder driven by the same
    probabilities spends, on a whole sequence, at most 2 bits more than the sum of these
    (see :func:`arithmetic_encode`).
    """
    if isinstance(p, torch.Tensor | np.ndarray):
        if bool((p <= 0).any()) or bool((p > 1).any()):
            raise ValueError("p must be in (0, 1]")
        return -torch.log2(p) if isinstance(p, torch.Tensor) else -np.log2(p)
    return -math.log2(check_real("p", p, 0.0, 1.0, low_open=True))


def _as_fractions(probs: Sequence[float], name: str) -> list[Fraction]:
    q = [Fraction(x) for x in probs]
    total = sum(q)
    if any(x < 0 for x in q) or total == 0:
        raise ValueError(f"{name} must hold non-negative probabilities with a positive sum")
    return [x / total for x in q]  # exact renormalisation: floats rarely sum to exactly 1


def arithmetic_encode(symbols: Sequence[int], distributions: Sequence[Sequence[float]]) -> str:
    """Encode ``symbols`` with an exact arithmetic code under per-step distributions.

    Step t narrows an interval of [0, 1) to the slice that ``distributions[t]`` gives
    ``symbols[t]``; the final interval has width Π_t q_t(x_t), the probability of the whole
    sequence. The code is the shortest binary fraction whose dyadic interval lies inside it,
    of at most ``⌈-log₂ Π_t q_t(x_t)⌉ + 1`` bits, so less than the ideal code length
    ``-log₂ Π_t q_t(x_t)`` (:func:`code_length`) plus 2
    (Cover and Thomas, 2006, section 13.3). Exact rational arithmetic: meant for short
    sequences, to check the bound, not for speed.

    Parameters
    ----------
    symbols : sequence of int
        The outcomes x_1, ..., x_n.
    distributions : sequence of sequences of float
        ``distributions[t][k]`` is the model's probability that x_{t+1} = k, given the
        earlier symbols (for a language model: softmax of the logits at position t).

    Returns
    -------
    str
        The code, a string of ``"0"`` and ``"1"``.
    """
    if len(symbols) != len(distributions):
        raise ValueError(
            f"symbols and distributions must have the same length, "
            f"got {len(symbols)} and {len(distributions)}"
        )
    low, width = Fraction(0), Fraction(1)
    for t, (x, q) in enumerate(zip(symbols, distributions, strict=True)):
        q = _as_fractions(q, f"distributions[{t}]")
        if not 0 <= x < len(q) or q[x] == 0:
            raise ValueError(f"symbols[{t}] = {x} has probability 0 or is not in [0, {len(q)})")
        low += width * sum(q[:x])
        width *= q[x]
    # The shortest k-bit number c / 2^k with [c / 2^k, (c + 1) / 2^k) inside [low, low + width).
    k = 0
    while True:
        c = -((-low.numerator * 2**k) // low.denominator)  # ceil(low * 2^k)
        if Fraction(c + 1, 2**k) <= low + width:
            return format(c, f"0{k}b") if k else ""
        k += 1


def arithmetic_decode(code: str, distributions: Sequence[Sequence[float]]) -> list[int]:
    """Invert :func:`arithmetic_encode`: the symbols that ``code`` encodes under the same
    distributions (the decoder needs the same model, and the number of symbols)."""
    if any(b not in "01" for b in code):
        raise ValueError("code must be a string of 0s and 1s")
    point = Fraction(int(code, 2), 2 ** len(code)) if code else Fraction(0)
    low, width, out = Fraction(0), Fraction(1), []
    for t, q in enumerate(distributions):
        q = _as_fractions(q, f"distributions[{t}]")
        cumulative = low
        for x, qx in enumerate(q):
            if cumulative <= point < cumulative + width * qx:
                out.append(x)
                low, width = cumulative, width * qx
                break
            cumulative += width * qx
        else:  # pragma: no cover - cannot happen for a code made by arithmetic_encode
            raise ValueError("code does not decode under these distributions")
    return out


class BigramLM(torch.nn.Module):
    """The smallest causal language model: a table of V × V logits, row = previous token.

    ``model(ids)[i, t] = W[ids[i, t]]``: the next token's logits depend on the current token
    only. On a first-order Markov source (:class:`llmtrain.objectives.MarkovSource`) this
    model can represent the true conditionals, so its loss can reach the entropy rate.

    Parameters
    ----------
    vocab_size : int
        V ≥ 2.
    init_scale : float
        Standard deviation of the initial logits; 0 (the default) starts from the uniform
        model, whose loss is exactly ln V.
    seed : int
        Seed of the initialisation.
    dtype : torch.dtype
        Parameter dtype.
    """

    def __init__(
        self,
        vocab_size: int,
        init_scale: float = 0.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        V = check_int("vocab_size", vocab_size, 2)
        scale = check_real("init_scale", init_scale, 0.0)
        g = torch.Generator().manual_seed(check_int("seed", seed, 0))
        self.W = torch.nn.Parameter(scale * torch.randn(V, V, generator=g, dtype=dtype))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.embedding(ids, self.W)

    def population_loss(self, source: MarkovSource) -> float:
        """The expected loss in nats per token on text drawn from ``source`` (whose alphabet
        must be the model's vocabulary): ``Σ_i π_i Σ_j A_ij (-ln q_ij)``, computed exactly."""
        return float(_population_losses(self.W.detach()[None], source)[0])


def _population_losses(Ws: torch.Tensor, source: MarkovSource) -> np.ndarray:
    """Expected loss of each bigram logit table in ``Ws`` (shape ``(T, V, V)``)."""
    A = torch.as_tensor(source.transitions, dtype=torch.float64)
    if A.shape != Ws.shape[1:]:
        raise ValueError(f"source must have {Ws.shape[1]} characters, got {source.vocab_size}")
    π = torch.as_tensor(source.stationary(), dtype=torch.float64)
    log_q = log_softmax(Ws.to(torch.float64), dim=-1)
    return (-(π[:, None] * A * log_q).sum(dim=(-2, -1))).numpy()


_CORPUS_CACHE: dict = {}


def _corpus_ids(source: MarkovSource, n_chars: int, seed: int) -> torch.Tensor:
    key = (source.alphabet, source.transitions.tobytes(), n_chars, seed)
    if key not in _CORPUS_CACHE:
        if len(_CORPUS_CACHE) > 16:
            _CORPUS_CACHE.clear()
        _CORPUS_CACHE[key] = CharVocab(source.alphabet).encode(source.sample(n_chars, seed))
    return _CORPUS_CACHE[key]


@dataclass(frozen=True)
class LMRun:
    """A training run of a tiny causal language model.

    Attributes
    ----------
    losses : numpy.ndarray
        Minibatch loss before each step, nats per token.
    population_losses : numpy.ndarray
        Exact expected loss under the source before each step and after the last one
        (one more entry than ``losses``).
    uniform_loss : float
        ln V, the loss of the uniform model (and of the model at initialisation).
    entropy_rate : float
        The source's entropy rate, the lowest loss any model can reach.
    diverged_at : int or None
        The step at which the loss became non-finite or exploded, if it did.
    model : BigramLM
        The trained model.
    """

    losses: np.ndarray
    population_losses: np.ndarray
    uniform_loss: float
    entropy_rate: float
    diverged_at: int | None
    model: BigramLM


def train_bigram_lm(
    *,
    lr: float = 10.0,
    batch_size: int = 16,
    momentum: float = 0.5,
    steps: int = 150,
    length: int = 32,
    n_chars: int = 20_000,
    seed: int = 0,
    source: MarkovSource | None = None,
) -> LMRun:
    """Train a :class:`BigramLM` on synthetic text with :class:`llmtrain.optim.SGD`.

    Minibatches are ``batch_size`` random windows of ``length`` characters of a seeded sample
    of ``n_chars`` characters from ``source`` (default
    :func:`llmtrain.objectives.synthetic_corpus`'s chain); the loss is
    :func:`causal_lm_loss`, evaluated (with its gradient) from the minibatch's counts of
    character pairs, which for a bigram model give the same loss and gradient (up to
    rounding) at a fraction of the cost per step. The model starts uniform, so the first loss
    is ln V exactly. Two runs with the same arguments give the same numbers.

    Parameters
    ----------
    lr, momentum : float
        Learning rate α ≥ 0 and momentum μ in [0, 1) of :class:`llmtrain.optim.SGD`. The
        gradient of one entry of the table is an average over all predicted tokens, most of
        which do not involve it, so useful learning rates are large (around 10).
    batch_size : int
        Windows per minibatch, B ≥ 1.
    steps : int
        Number of SGD steps.
    length : int
        Characters per window, n ≥ 2 (each window gives n - 1 predictions).
    n_chars : int
        Length of the training text, at least ``length``.
    seed : int
        Seed of the text, the initialisation and the minibatches.
    source : MarkovSource, optional
        The text's source; ``DEFAULT_SOURCE`` if omitted.

    Returns
    -------
    LMRun
        The losses, the expected losses, the two reference levels and the model. A run whose
        minibatch loss exceeds 10 ln V or stops being finite ends there, with ``diverged_at``
        set.
    """
    with one_torch_thread():
        return _train_bigram_lm(lr, batch_size, momentum, steps, length, n_chars, seed, source)


def _train_bigram_lm(lr, batch_size, momentum, steps, length, n_chars, seed, source):
    from ..optim import SGD  # the optimizer of Part I

    source = source or DEFAULT_SOURCE
    check_real("lr", lr, 0.0)
    B = check_int("batch_size", batch_size, 1)
    T = check_int("steps", steps, 1)
    n = check_int("length", length, 2)
    n_chars = check_int("n_chars", n_chars, n)
    V = source.vocab_size
    ids = _corpus_ids(source, n_chars, seed)
    model = BigramLM(V, seed=seed)
    optimizer = SGD(model.parameters(), lr=lr, momentum=momentum)
    g = torch.Generator().manual_seed(seed)
    uniform = math.log(V)
    W = model.W
    M = B * (n - 1)  # predicted tokens per minibatch
    losses, tables, diverged_at = [], [W.detach().clone()], None
    for t in range(1, T + 1):
        batch = random_windows(ids, B, n, g)
        # The causal LM loss of a bigram model depends on the minibatch only through its
        # counts C[a, b] of pairs (current a, next b): with row totals r_a it is
        # (Σ_a r_a logsumexp(W_a) - Σ_ab C_ab W_ab) / M, whose gradient is
        # (r_a softmax(W_a)_b - C_ab) / M. This is the value and the gradient autograd gets
        # from causal_lm_loss (a test checks it), at a fraction of the cost per step.
        pairs = batch[:, :-1] * V + batch[:, 1:]
        C = torch.bincount(pairs.reshape(-1), minlength=V * V).view(V, V).to(W.dtype)
        r = C.sum(dim=1)
        with torch.no_grad():
            value = ((r * torch.logsumexp(W, dim=-1)).sum() - (C * W).sum()).item() / M
            if not math.isfinite(value) or value > 10 * uniform:
                diverged_at = t
                break
            losses.append(value)
            W.grad = (r[:, None] * torch.softmax(W, dim=-1) - C) / M
        optimizer.step()
        tables.append(W.detach().clone())
    population = _population_losses(torch.stack(tables), source)
    if diverged_at is None and not np.all(np.isfinite(population)):
        diverged_at = int(np.argmax(~np.isfinite(population)))
    population = population[: len(losses) + 1]
    return LMRun(
        np.array(losses),
        np.array(population),
        uniform,
        source.entropy_rate(),
        diverged_at,
        model,
    )
