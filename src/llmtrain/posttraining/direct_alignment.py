"""Direct alignment: training the policy on preference pairs without a reward model (DPO,
IPO, SimPO), and best-of-n sampling, the simplest way to use a reward model at all.

:class:`DirectPreferenceObjective` is the model :func:`~llmtrain.pretraining.train_loop`
trains: it scores the chosen and the rejected responses of a batch of pairs under the policy
(and, for DPO and IPO, under a frozen reference model) with
:func:`~llmtrain.posttraining.sequence_logprobs`, and returns the loss of
:mod:`~llmtrain.posttraining.preference_losses`. :func:`train_direct` runs it.

:func:`best_of_n` samples n answers to each prompt and keeps the one a (proxy) reward scores
highest; plotting its proxy and gold rewards against its KL divergence from the policy,
ln n - (n - 1)/n, draws the reward over-optimisation curve of Gao et al. (2022) (who plot
against d = √KL).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from .._checks import check_int, check_real, check_shape_match
from .._threads import one_torch_thread
from ..pretraining import GPT, LoopConfig, Tokenizer, TrainResult, train_loop
from .chat import encode_chat
from .decoding import decode_answers
from .policy_gradients import sequence_logprobs
from .preference_data import PairBatches, PreferencePair
from .preference_losses import dpo_loss, ipo_loss, simpo_loss
from .reward_model import _check_config, _check_rows
from .rl import gold_reward
from .task_world import Example

__all__ = [
    "DIRECT_LOSSES",
    "DirectPreferenceObjective",
    "best_of_n",
    "best_of_n_kl",
    "expected_best_of_n",
    "train_direct",
]

#: The losses :class:`DirectPreferenceObjective` can train with.
DIRECT_LOSSES = ("dpo", "ipo", "simpo")


class DirectPreferenceObjective(nn.Module):
    """Preference training of a policy as a model for
    :func:`~llmtrain.pretraining.train_loop`.

    ``forward(chosen_ids, chosen_mask, rejected_ids, rejected_mask)`` returns
    ``(margins, loss)``: the implicit reward margins of the pairs (detached, shape (B,)) and
    the mean loss. With s_w, s_l the policy's sequence log-probabilities of the chosen and the
    rejected response and s_w^ref, s_l^ref the reference's:

    - ``"dpo"``: :func:`~llmtrain.posttraining.dpo_loss`; margin β h with
      h = (s_w - s_w^ref) - (s_l - s_l^ref);
    - ``"ipo"``: :func:`~llmtrain.posttraining.ipo_loss`; the same margin;
    - ``"simpo"``: :func:`~llmtrain.posttraining.simpo_loss`, with the response lengths ``|y|``
      (the sums of the masks, ``<|end|>`` included) and no reference; margin
      ``β (s_w/|y_w| - s_l/|y_l|)``.

    The reference is frozen: its parameters have ``requires_grad`` False (so the optimizer
    keeps no state for them), it stays in eval mode even when the objective is switched to
    training, and its log-probabilities are computed without gradients.

    Implements :prf:ref:`alg-dpo` (with ``loss="dpo"``).

    Parameters
    ----------
    policy : GPT
        The model being trained.
    reference : GPT or None
        The frozen reference π_ref (usually a copy of the policy before training); None only
        for SimPO.
    loss : {"dpo", "ipo", "simpo"}
    beta : float, optional
        β > 0; None takes the loss's own default (0.1 for DPO and IPO, 2 for SimPO).
    **loss_kwargs
        Further keyword arguments of the loss (``gamma`` for SimPO).
    """

    def __init__(
        self,
        policy: GPT,
        reference: GPT | None,
        *,
        loss: str = "dpo",
        beta: float | None = None,
        **loss_kwargs,
    ):
        super().__init__()
        if loss not in DIRECT_LOSSES:
            raise ValueError(f"loss must be one of {DIRECT_LOSSES}, got {loss!r}")
        if not isinstance(policy, GPT):
            raise TypeError(
                f"policy must be a llmtrain.pretraining.GPT, got {type(policy).__name__}"
            )
        if loss == "simpo":
            if reference is not None:
                raise ValueError("reference must be None for SimPO, which uses no reference model")
        elif not isinstance(reference, GPT):
            raise TypeError(
                f"reference must be a llmtrain.pretraining.GPT for {loss!r}, "
                f"got {type(reference).__name__}"
            )
        if beta is None:
            beta = 2.0 if loss == "simpo" else 0.1
        self.beta = check_real("beta", beta, 0.0, math.inf, low_open=True)
        self.loss, self.loss_kwargs = loss, loss_kwargs
        self.policy = policy
        self.reference = reference
        if reference is not None:
            reference.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.reference is not None:
            self.reference.eval()  # no dropout: the reference is a fixed function
        return self

    def forward(self, chosen_ids, chosen_mask, rejected_ids, rejected_mask):
        _check_rows("chosen_ids", chosen_ids, "chosen_mask", chosen_mask)
        _check_rows("rejected_ids", rejected_ids, "rejected_mask", rejected_mask)
        check_shape_match("chosen_ids", chosen_ids.shape, "rejected_ids", rejected_ids.shape)
        B = chosen_ids.shape[0]
        # Chosen and rejected rows in one pass.
        ids = torch.cat((chosen_ids, rejected_ids))
        mask = torch.cat((chosen_mask, rejected_mask))
        s = sequence_logprobs(self.policy, ids, mask)
        s_w, s_l = s[:B], s[B:]
        if self.loss == "simpo":
            n = mask.sum(dim=1).to(s.dtype)
            n_w, n_l = n[:B], n[B:]
            loss = simpo_loss(s_w, s_l, n_w, n_l, beta=self.beta, **self.loss_kwargs)
            margins = self.beta * (s_w / n_w - s_l / n_l)
        else:
            with torch.no_grad():
                ref = sequence_logprobs(self.reference, ids, mask)
            ref_w, ref_l = ref[:B], ref[B:]
            fn = dpo_loss if self.loss == "dpo" else ipo_loss
            loss = fn(s_w, s_l, ref_w, ref_l, beta=self.beta, **self.loss_kwargs)
            margins = self.beta * ((s_w - ref_w) - (s_l - ref_l))
        return margins.detach(), loss

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        return self.policy.parameter_groups(weight_decay)


def train_direct(
    policy: GPT,
    tokenizer: Tokenizer,
    train_pairs: Sequence[PreferencePair],
    val_pairs: Sequence[PreferencePair],
    config: LoopConfig,
    *,
    loss: str = "dpo",
    beta: float | None = None,
    progress: bool = False,
    **loss_kwargs,
) -> TrainResult:
    """Train ``policy`` in place on preference pairs with DPO, IPO or SimPO
    (:class:`DirectPreferenceObjective`) by :func:`~llmtrain.pretraining.train_loop`. The
    reference is a frozen copy of the policy as it is when the call starts (none for SimPO).
    Returns the :class:`~llmtrain.pretraining.TrainResult`, whose losses are the preference
    losses (ln 2 at the start for DPO); the policy ends in eval mode. ``progress`` shows the
    loop's progress bar; ``loss_kwargs`` go to the loss (``gamma`` for SimPO).

    Implements :prf:ref:`alg-dpo` (with ``loss="dpo"``).
    """
    if not isinstance(policy, GPT):
        raise TypeError(f"policy must be a llmtrain.pretraining.GPT, got {type(policy).__name__}")
    config = _check_config(config, policy)
    reference = None if loss == "simpo" else copy.deepcopy(policy)
    objective = DirectPreferenceObjective(policy, reference, loss=loss, beta=beta, **loss_kwargs)
    train_data = PairBatches(tokenizer, train_pairs, config.block_size)
    val_data = PairBatches(tokenizer, val_pairs, config.block_size)
    with one_torch_thread():  # the book's small models lose time to a second thread
        result = train_loop(
            objective, train_data, val_data, config, tokenizer=tokenizer, progress=progress
        )
    policy.eval()
    return result


def best_of_n_kl(n: int) -> float:
    """ln n - (n - 1)/n: the KL divergence from the policy of best-of-n sampling, as Stiennon
    et al. (2020) and Gao et al. (2022) state it. It is exact when no single answer has a
    positive probability (the best of n then has density n F^(n-1) in the reward's quantile F);
    Beirami et al. (2024) show that in general it is an upper bound, which is loose when the
    policy repeats a few answers, as a fine-tuned model on a short task does."""
    n = check_int("n", n, 1)
    return math.log(n) - (n - 1) / n


def expected_best_of_n(proxy: torch.Tensor, gold: torch.Tensor, n: int) -> tuple[float, float]:
    """E[proxy] and E[gold] of the sample of highest proxy among n drawn without replacement
    from the N samples of one prompt: the exact average over all C(N, n) subsets (the
    estimator :func:`~llmtrain.posttraining.best_of_n` averages over prompts; ``gold`` may
    be any per-sample value, such as the answer's length).

    Sorted by proxy (ascending), sample i (0-based) is the best of a subset when it is in the
    subset and the other n - 1 members come from the i samples below it: C(i, n-1) of the
    C(N, n) subsets. Ties in proxy are broken at random, which gives every sample of a tied
    group the group's mean gold reward."""
    N = proxy.numel()
    order = torch.argsort(proxy, stable=True)
    p, g = proxy[order].double(), gold[order].double()
    # Each tied group's gold replaced by the group's mean.
    _, group, counts = torch.unique_consecutive(p, return_inverse=True, return_counts=True)
    g = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, group, g)[group] / counts[group]
    log_w = torch.tensor(
        [
            math.lgamma(i + 1) - math.lgamma(n) - math.lgamma(i - n + 2)
            if i >= n - 1
            else -math.inf
            for i in range(N)
        ],
        dtype=torch.float64,
    )
    w = torch.exp(log_w - (math.lgamma(N + 1) - math.lgamma(n + 1) - math.lgamma(N - n + 1)))
    return float((w * p).sum()), float((w * g).sum())


@torch.no_grad()
def best_of_n(
    policy: GPT,
    tokenizer: Tokenizer,
    examples: Sequence[Example],
    reward: Callable[[Sequence[Example], Sequence[str | None]], torch.Tensor],
    n_values: Sequence[int],
    *,
    temperature: float = 1.0,
    max_new_tokens: int = 10,
    seed: int = 0,
    gold: Callable[[Sequence[Example], Sequence[str | None]], torch.Tensor] | None = None,
) -> dict[str, list[float]]:
    """Best-of-n sampling measured with a proxy and a gold reward, for each n of ``n_values``.

    The policy samples N = max(``n_values``) answers to each example's prompt (at
    ``temperature``, from a generator seeded with ``seed``; an answer that has not written
    ``<|end|>`` within ``max_new_tokens`` tokens is None). ``reward`` (the proxy) and ``gold``
    (default: :func:`gold_reward`, exact match as 1.0 or 0.0) score every answer.
    For each n, best-of-n keeps the answer of highest proxy reward among n samples; its
    expected proxy and gold rewards are estimated for each prompt from the N samples without
    bias by averaging over all C(N, n) subsets of size n in closed form (the order-statistics
    estimator of Nakano et al., 2021, which Gao et al., 2022, use), then averaged over the
    prompts. At n = 1 this is the mean reward of all the samples.

    Returns a dict of lists, one entry per n in the order given: ``"n"``, ``"kl"``
    (:func:`best_of_n_kl`), ``"proxy"``, ``"gold"``.

    Implements :prf:ref:`alg-best-of-n`.
    """
    if not isinstance(policy, GPT):
        raise TypeError(f"policy must be a llmtrain.pretraining.GPT, got {type(policy).__name__}")
    if len(examples) == 0:
        raise ValueError("examples must hold at least one Example, got none")
    n_values = list(n_values)
    if not n_values:
        raise ValueError("n_values must hold at least one n, got none")
    n_values = [check_int("n_values", n, 1) for n in n_values]
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, 1)
    gold = gold_reward if gold is None else gold
    N = max(n_values)
    end = tokenizer.special_tokens["<|end|>"]
    prompts = [torch.tensor(encode_chat(tokenizer, e.prompt)[0]) for e in examples]
    with one_torch_thread():
        decoded = decode_answers(
            policy,
            prompts,
            max_new_tokens,
            n_samples=N,
            stop_id=end,
            seed=seed,
            temperature=temperature,
        )
    # An answer as long as the budget never reached <|end|>.
    answers = [
        tokenizer.decode(list(a)) if len(a) < max_new_tokens else None
        for group in decoded
        for a in group
    ]
    repeated = [e for e in examples for _ in range(N)]
    scores = {}
    with one_torch_thread():
        for name, fn in (("reward", reward), ("gold", gold)):
            r = torch.as_tensor(fn(repeated, answers), dtype=torch.float64)
            if r.shape != (len(answers),):
                raise ValueError(
                    f"{name} must return one value per answer, shape ({len(answers)},), "
                    f"got {tuple(r.shape)}"
                )
            scores[name] = r.reshape(len(examples), N)
    out: dict[str, list[float]] = {"n": [], "kl": [], "proxy": [], "gold": []}
    for n in n_values:
        best = [
            expected_best_of_n(p, g, n)
            for p, g in zip(scores["reward"], scores["gold"], strict=True)
        ]
        out["n"].append(n)
        out["kl"].append(best_of_n_kl(n))
        out["proxy"].append(sum(b[0] for b in best) / len(best))
        out["gold"].append(sum(b[1] for b in best) / len(best))
    return out
