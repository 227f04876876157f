"""Decoding: beam search, the likelihood of a given continuation (and its perplexity), and the
memory of the KV cache that every decoding loop keeps.

The sampling rules (temperature, top-k, top-p, min-p, the repetition penalty) are one sampler,
:func:`llmtrain.pretraining.sample_next_token`, used by
:meth:`llmtrain.pretraining.GPT.generate`; :mod:`llmtrain.posttraining` re-exports its filters.
Beam search is a different loop, so it lives here, on the same GPT and the same
:class:`~llmtrain.pretraining.KVCache`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import check_int, check_real
from ..pretraining.gpt import GPT, KVCache
from ..pretraining.memory import _shape

__all__ = [
    "BeamSearchResult",
    "accuracy_and_diversity",
    "beam_search",
    "continuation_log_probs",
    "continuation_perplexity",
    "decode_answers",
    "kv_cache_bytes",
    "measured_kv_cache_bytes",
]


@dataclass
class BeamSearchResult:
    """The hypotheses a beam search ends with, best first.

    Attributes
    ----------
    sequences : list of torch.Tensor
        Each hypothesis as a 1-D tensor of token ids: the prompt, then the new tokens (ending
        with the end-of-sequence token if it finished).
    log_probs : torch.Tensor
        Shape (n,), float64: the log-probability ln p(new tokens | prompt) of each hypothesis.
    scores : torch.Tensor
        Shape (n,): the log-probability divided by (number of new tokens)^length_penalty,
        which orders the hypotheses.
    """

    sequences: list[torch.Tensor]
    log_probs: torch.Tensor
    scores: torch.Tensor

    @property
    def best(self) -> torch.Tensor:
        """The hypothesis of highest score."""
        return self.sequences[0]


def _check_model(model) -> GPT:
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a llmtrain.pretraining.GPT, got {type(model).__name__}")
    return model


def _check_ids(name: str, ids, *, allow_empty: bool = False) -> torch.Tensor:
    """A 1-D long tensor of token ids from a tensor of shape (T,) or (1, T), or a list."""
    if not isinstance(ids, torch.Tensor):
        if not isinstance(ids, Sequence) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise TypeError(f"{name} must be a tensor or list of token ids, got {ids!r:.60}")
        ids = torch.tensor(list(ids), dtype=torch.long)
    if ids.dtype != torch.long or ids.ndim not in (1, 2) or (ids.ndim == 2 and ids.shape[0] != 1):
        raise TypeError(f"{name} must be token ids (torch.long) of shape (T,) or (1, T)")
    ids = ids.reshape(-1)
    if ids.numel() == 0 and not allow_empty:
        raise ValueError(f"{name} must hold at least one token")
    return ids


def _reorder(cache: KVCache, parents: torch.Tensor) -> None:
    """Give each surviving beam the cached keys and values of the beam it extends."""
    for layer in range(len(cache.k)):
        cache.k[layer] = cache.k[layer][parents]
        cache.v[layer] = cache.v[layer][parents]


@torch.no_grad()
def beam_search(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    beam_width: int,
    *,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
) -> BeamSearchResult:
    """Beam search for the most likely continuation of one prompt.

    Implements :prf:ref:`alg-beam-search`.

    Keeps the ``beam_width`` partial sequences of highest log-probability; at each step every
    unfinished one is extended by every token of the vocabulary and the ``beam_width`` best
    of these and of the finished ones are kept, by raw log-probability (ties go to an
    extension before a finished hypothesis, then to the extension of the earlier hypothesis,
    then to the smaller token id). A hypothesis finishes when it emits ``eos_id`` and is then
    carried along unchanged, holding one of the ``beam_width`` places. The search stops after
    ``max_new_tokens`` tokens or when every kept hypothesis has finished. Only then are the
    surviving hypotheses ordered by ln p / n^length_penalty, n their number of new tokens (the
    end token included): 0 ranks by log-probability, 1 (the default) by log-probability per
    token. The penalty re-ranks the survivors; it cannot recover a hypothesis pruned earlier.

    This differs from Hugging Face's beam search, which keeps ``beam_width`` unfinished beams
    (from the 2 · ``beam_width`` best extensions by raw log-probability) and a separate pool
    of the ``beam_width`` best finished hypotheses, each scored with the length penalty when
    it enters the pool (``BeamHypotheses.add``); there, finished hypotheses never take the
    place of a running beam. The book's variant is greedy decoding at width 1 and exhaustive
    search when the beam holds every sequence, which the tests check.

    Parameters
    ----------
    model : GPT
        The model; it runs in eval mode without gradients, and its training flag is restored.
    idx : torch.Tensor
        The prompt, token ids of shape (T,) or (1, T), at most ``block_size`` tokens.
    max_new_tokens : int
        At most this many tokens are appended, >= 0.
    beam_width : int
        Number of hypotheses kept, >= 1; 1 is greedy decoding.
    eos_id : int, optional
        The end-of-sequence token; None lets every hypothesis run to ``max_new_tokens``.
    length_penalty : float
        The exponent of the length in the final score.

    Returns
    -------
    BeamSearchResult
        The kept hypotheses, best first.

    Examples
    --------
    >>> import torch
    >>> from llmtrain.pretraining import GPT, GPTConfig
    >>> _ = torch.manual_seed(0)
    >>> model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8))
    >>> result = beam_search(model, torch.tensor([0, 1]), 3, beam_width=2)
    >>> len(result.sequences), result.best.shape
    (2, torch.Size([5]))
    """
    model = _check_model(model)
    prompt = _check_ids("idx", idx)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, 0)
    n_beam = check_int("beam_width", beam_width, 1)
    V, T_ctx = model.config.vocab_size, model.config.block_size
    if eos_id is not None:
        eos_id = check_int("eos_id", eos_id, 0, V - 1)
    α_len = check_real("length_penalty", length_penalty)
    if prompt.numel() > T_ctx:
        raise ValueError(
            f"the prompt (idx) has {prompt.numel()} tokens, more than block_size={T_ctx}"
        )
    was_training = model.training
    model.eval()
    try:
        dtype = next(model.parameters()).dtype
        cache = KVCache(model.config, 1, device=prompt.device, dtype=dtype)
        logits = model(prompt[None], cache=cache)[0][:, -1]  # prefill: (1, V)
        live = prompt[None]  # (n_live, T + s): the unfinished hypotheses
        live_lp = torch.zeros(1, dtype=torch.float64)  # their log-probabilities
        finished: list[tuple[torch.Tensor, float]] = []
        for step in range(max_new_tokens):
            # Every extension of every live hypothesis, then the finished ones, by log-prob.
            extended = live_lp[:, None] + F.log_softmax(logits.double(), dim=-1)
            done_lp = torch.tensor([lp for _, lp in finished], dtype=torch.float64)
            candidates = torch.cat((extended.flatten(), done_lp))
            order = torch.argsort(candidates, descending=True, stable=True)[:n_beam]
            keep_finished, parents, tokens = [], [], []
            for j in order.tolist():
                if j >= extended.numel():  # a finished hypothesis keeps its place
                    keep_finished.append(finished[j - extended.numel()])
                elif j % V == eos_id:
                    sequence = torch.cat((live[j // V], prompt.new_tensor([eos_id])))
                    keep_finished.append((sequence, candidates[j].item()))
                else:
                    parents.append(j // V)
                    tokens.append(j % V)
            finished = keep_finished
            if not parents:
                live, live_lp = live[:0], live_lp[:0]
                break
            parents_t, tokens_t = torch.tensor(parents), torch.tensor(tokens)
            live_lp = extended.flatten()[parents_t * V + tokens_t]
            live = torch.cat((live[parents_t], tokens_t[:, None]), dim=1)
            if step == max_new_tokens - 1:
                break
            if cache.length < T_ctx:  # the cached keys of each parent, then one new token
                _reorder(cache, parents_t)
                logits = model(tokens_t[:, None], cache=cache)[0][:, -1]
            else:  # past the context the window slides: recompute it, as GPT.generate does
                logits = model(live[:, -T_ctx:])[0][:, -1]
    finally:
        model.train(was_training)
    hypotheses = finished + list(zip(live, live_lp.tolist(), strict=True))
    sequences = [s for s, _ in hypotheses]
    log_probs = torch.tensor([lp for _, lp in hypotheses], dtype=torch.float64)
    lengths = torch.tensor([len(s) - len(prompt) for s in sequences], dtype=torch.float64)
    scores = log_probs / lengths.clamp(min=1) ** α_len
    ranking = torch.argsort(scores, descending=True, stable=True)
    return BeamSearchResult(
        sequences=[sequences[i] for i in ranking.tolist()],
        log_probs=log_probs[ranking],
        scores=scores[ranking],
    )


def _until(tokens: list[int], stop_id: int | None) -> tuple[int, ...]:
    """The tokens before the first ``stop_id`` (all of them if it does not occur)."""
    if stop_id is not None and stop_id in tokens:
        tokens = tokens[: tokens.index(stop_id)]
    return tuple(tokens)


def decode_answers(
    model: GPT,
    prompts,
    max_new_tokens: int,
    *,
    n_samples: int = 1,
    stop_id: int | None = None,
    beam_width: int | None = None,
    seed: int = 0,
    **sampling,
) -> list[list[tuple[int, ...]]]:
    """Decode ``n_samples`` answers to each prompt (lists of token ids): each answer is the
    new tokens up to, not including, ``stop_id``.

    With ``beam_width`` the answer is the best hypothesis of :func:`beam_search` (with
    ``eos_id=stop_id``; deterministic, so it is given once). Otherwise the answers are drawn
    by :meth:`~llmtrain.pretraining.GPT.generate` with the keyword arguments of ``sampling``
    (``temperature``, ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty``; temperature 0
    is greedy), from one generator seeded with ``seed``. Prompts of equal length share one
    batch, each repeated ``n_samples`` times.
    """
    model = _check_model(model)
    ids = [_check_ids("prompts", x) for x in prompts]
    n_samples = check_int("n_samples", n_samples, 1)
    if beam_width is not None:
        if sampling:
            raise ValueError(f"beam search takes no sampling arguments, got {sorted(sampling)}")
        beams = []
        for x in ids:
            best = beam_search(model, x, max_new_tokens, beam_width, eos_id=stop_id).best
            beams.append([_until(best[len(x) :].tolist(), stop_id)])
        return beams
    generator = torch.Generator().manual_seed(check_int("seed", seed, 0))
    answers: list[list[tuple[int, ...]]] = [[] for _ in ids]
    by_length: dict[int, list[int]] = {}
    for i, x in enumerate(ids):
        by_length.setdefault(len(x), []).append(i)
    for length, members in sorted(by_length.items()):
        batch = torch.stack([ids[i] for i in members]).repeat_interleave(n_samples, dim=0)
        out = model.generate(batch, max_new_tokens, generator=generator, **sampling)
        for row, tokens in enumerate(out[:, length:].tolist()):
            answers[members[row // n_samples]].append(_until(tokens, stop_id))
    return answers


def accuracy_and_diversity(answers, targets) -> tuple[float, float]:
    """Exact match and diversity of decoded ``answers`` (one list of answers per prompt, as
    :func:`decode_answers` returns) against one target answer per prompt.

    Returns the fraction of all answers equal to their prompt's target, and the mean number
    of distinct answers per prompt (1 for a deterministic decoder).
    """
    answers, targets = list(answers), [tuple(t) for t in targets]
    if not answers or len(answers) != len(targets) or not all(answers):
        raise ValueError(
            "answers and targets must be non-empty and of equal length, with at least one "
            f"answer per prompt; got {len(answers)} prompts and {len(targets)} targets"
        )
    correct = [tuple(a) == t for group, t in zip(answers, targets, strict=True) for a in group]
    distinct = [len({tuple(a) for a in group}) for group in answers]
    return sum(correct) / len(correct), sum(distinct) / len(distinct)


@torch.no_grad()
def continuation_log_probs(model: GPT, prompt, continuation) -> torch.Tensor:
    """ln p(y_t | prompt, y_<t) for each token y_t of ``continuation``, in float64.

    One forward pass over the prompt and the continuation (together at most ``block_size``
    tokens), in eval mode; the sum is the log-probability of the whole continuation, the
    quantity beam search maximises.
    """
    model = _check_model(model)
    x = _check_ids("prompt", prompt)
    y = _check_ids("continuation", continuation)
    ids = torch.cat((x, y))
    if ids.numel() - 1 > model.config.block_size:
        raise ValueError(
            f"prompt and continuation have {ids.numel()} tokens; at most "
            f"block_size + 1 = {model.config.block_size + 1} fit"
        )
    was_training = model.training
    model.eval()
    try:
        logits = model(ids[None, :-1])[0][0, len(x) - 1 :]
    finally:
        model.train(was_training)
    return F.log_softmax(logits.double(), dim=-1).gather(-1, y[:, None]).squeeze(-1)


def continuation_perplexity(model: GPT, pairs) -> float:
    """exp of the mean negative log-likelihood per token of the continuations of ``pairs``.

    ``pairs`` is a non-empty iterable of (prompt, continuation) token ids. Every token of
    every continuation counts once (a token-weighted mean, like the training loss of
    supervised fine-tuning, whose prompt tokens are masked out); the prompts are read, not
    scored.
    """
    log_probs = [continuation_log_probs(model, x, y) for x, y in pairs]
    if not log_probs:
        raise ValueError("pairs must hold at least one (prompt, continuation) pair")
    return math.exp(-torch.cat(log_probs).mean().item())


def kv_cache_bytes(model, n_tokens: int | None = None, *, batch_size=1, bytes_per_value=2) -> int:
    """Bytes of the KV cache: 2 n_layer n_tokens d_kv bytes_per_value per sequence.

    Each layer keeps a key and a value vector of width d_kv = n_kv_head · d_model / n_head for
    every token; d_kv = d_model with one key-value head per query head, less with grouped-query
    attention. ``model`` is a :class:`~llmtrain.pretraining.GPTConfig`, a
    :class:`~llmtrain.pretraining.ModelShape` or the name of one of
    ``llmtrain.pretraining.MODEL_PRESETS``; ``n_tokens`` defaults to the full context.
    """
    shape = _shape(model)
    n = shape.n_ctx if n_tokens is None else check_int("n_tokens", n_tokens, 0)
    B = check_int("batch_size", batch_size, 1)
    b = check_int("bytes_per_value", bytes_per_value, 1)
    d_kv = shape.n_kv_head * (shape.n_embd // shape.n_head)
    return 2 * shape.n_layer * n * d_kv * b * B


def measured_kv_cache_bytes(cache: KVCache) -> int:
    """The bytes a :class:`~llmtrain.pretraining.KVCache` holds: its key and value tensors."""
    if not isinstance(cache, KVCache):
        raise TypeError(f"cache must be a KVCache, got {type(cache).__name__}")
    return sum(t.numel() * t.element_size() for t in (*cache.k, *cache.v))
