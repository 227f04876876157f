"""Reinforcement learning on the book's GPT: PPO with a value model (RLHF), GRPO, REINFORCE
with a baseline and RLOO, all run by Part III's :func:`~llmtrain.pretraining.train_loop`.

A training step of RL has two halves. The *rollout* samples answers to prompts from the
current policy, scores them with a reward function and computes what the loss treats as
constants: the log-probabilities of the sampled tokens under the policy that sampled them
(π_old) and under the frozen reference model (π_ref), and the advantages.
:class:`Rollouts` does this; it is the loop's batch source. The *update* is a gradient step on
a loss of those constants: the objectives :class:`PPOObjective`, :class:`GRPOObjective` and
:class:`ReinforceObjective` are the loop's model (``forward(*batch)`` returns
``(stats, loss)``). One rollout serves ``epochs`` passes of ``minibatches`` updates each, which
is what makes PPO's ratio π/π_old differ from 1 and its clip matter.

A sequence of a rollout is the prompt in the chat template followed by the sampled answer,
cut after its first ``<|end|>`` (or after ``max_new_tokens`` tokens, when the answer never
ends: its text is then None) and right-padded with ``<|end|>``. Token-level quantities have
shape (N, T - 1), column t - 1 belonging to token t, as
:func:`~llmtrain.posttraining.token_logprobs` returns them; the response mask ``mask[:, 1:]``
marks the columns that count.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_int, check_real
from .._threads import one_torch_thread
from ..pretraining import GPT, LoopConfig, Tokenizer, TrainResult, train_loop
from .chat import encode_chat
from .policy_gradients import (
    GRPO_SCALES,
    KL_ESTIMATORS,
    gae,
    grpo_advantages,
    kl_estimate,
    ppo_clip_loss,
    token_logprobs,
)
from .task_world import Example, check_answer

__all__ = [
    "RL_METHODS",
    "GRPOObjective",
    "PPOObjective",
    "RLConfig",
    "RLResult",
    "ReinforceObjective",
    "Rollouts",
    "gold_reward",
    "rl_objective",
    "train_rl",
    "value_model",
]

#: The RL algorithms :func:`train_rl` runs.
RL_METHODS = ("ppo", "grpo", "reinforce", "rloo")

Reward = Callable[[Sequence[Example], Sequence["str | None"]], torch.Tensor]


def gold_reward(examples: Sequence[Example], answers: Sequence[str | None]) -> torch.Tensor:
    """The verifiable reward of the task world: 1 for an answer that is exactly right
    (:func:`~llmtrain.posttraining.check_answer`), 0 otherwise (an answer None, which never
    ended, included). Returns a float tensor of shape (B,)."""
    if len(examples) != len(answers):
        raise ValueError(
            f"examples and answers must have the same length, got {len(examples)} and "
            f"{len(answers)}"
        )
    return torch.tensor([float(check_answer(e, a)) for e, a in zip(examples, answers, strict=True)])


@dataclass
class RLConfig(LoopConfig):
    """The hyperparameters of an RL run: Part III's :class:`~llmtrain.pretraining.LoopConfig`
    (``max_iters`` counts optimizer updates) with defaults for fine-tuning a trained policy
    (a small learning rate, constant after a short warmup, no weight decay) and the fields
    below. The defaults are a GRPO run of 60 updates that raises the sampled accuracy of the
    book's SFT model on the reverse task; PPO with one answer per prompt wants more prompts
    per rollout (e.g. ``batch_size=64, group_size=1, epochs=2, minibatches=2``).

    ``batch_size`` is the number of prompts per rollout; a rollout holds
    ``batch_size * group_size`` answers. ``grad_accum`` must be 1 and ``optimizer`` may not be
    ``"muon"`` (the objective is not a bare GPT). When ``min_lr`` is None it is set to ``lr``:
    the rate stays constant after warmup. ``block_size`` only enters the loop's tokens-per-second
    figure (the rows of a rollout are as long as its longest prompt plus ``max_new_tokens``).

    Parameters
    ----------
    method : {"ppo", "grpo", "reinforce", "rloo"}
        The algorithm (see :func:`rl_objective`).
    group_size : int
        G, the answers sampled per prompt (GRPO and RLOO need G ≥ 2; PPO usually uses 1).
    epochs : int
        The passes over each rollout; each pass makes ``minibatches`` updates. REINFORCE and
        RLOO have no ratio to correct for a policy that has moved since sampling, so they need
        one update per rollout: ``epochs = minibatches = 1``.
    minibatches : int
        The updates per pass, each on an equal share of the rollout's answers (shuffled
        afresh every pass); it must divide ``batch_size * group_size`` (1 for REINFORCE and
        RLOO).
    clip : float
        ε of the clipped ratio, in (0, 1).
    beta : float
        β ≥ 0, the weight of the KL penalty towards the reference model.
    kl_estimator : {"k1", "k2", "k3"} or None
        The per-token KL estimate (:func:`~llmtrain.posttraining.kl_estimate`) that the penalty
        uses; None picks the method's usual one: ``"k3"`` in GRPO's loss, ``"k1"`` (the log
        ratio) in the reward of the other methods.
    temperature : float
        The sampling temperature, in (0, ∞).
    max_new_tokens : int
        The longest answer, in tokens (its ``<|end|>`` included).
    gamma, lam : float
        PPO's discount γ and GAE's λ, in [0, 1].
    value_coef : float
        PPO's weight c₁ ≥ 0 of the value loss.
    value_clip : float
        PPO2's clip of the value update (0 turns it off).
    scale : {"group", "batch", "none"}
        GRPO's advantage normalisation (:func:`~llmtrain.posttraining.grpo_advantages`).
    """

    batch_size: int = 8
    block_size: int = 64
    max_iters: int = 60
    lr: float = 1e-4
    warmup_iters: int = 5
    weight_decay: float = 0.0
    eval_interval: int = 30
    eval_iters: int = 1
    method: str = "grpo"
    group_size: int = 8
    epochs: int = 1
    minibatches: int = 1
    clip: float = 0.2
    beta: float = 0.04
    kl_estimator: str | None = None
    temperature: float = 1.0
    max_new_tokens: int = 8
    gamma: float = 1.0
    lam: float = 0.95
    value_coef: float = 0.1
    value_clip: float = 0.2
    scale: str = "group"

    def __post_init__(self):
        if self.min_lr is None:
            self.min_lr = self.lr
        super().__post_init__()
        if self.method not in RL_METHODS:
            raise ValueError(f"method must be one of {RL_METHODS}, got {self.method!r}")
        check_int("grad_accum", self.grad_accum, 1, 1)
        if self.optimizer == "muon":
            raise ValueError("optimizer must be 'adamw', 'sgd' or 'lion' for RL, got 'muon'")
        low = 2 if self.method in ("grpo", "rloo") else 1
        check_int("group_size", self.group_size, low)
        one_pass = self.method in ("reinforce", "rloo")
        check_int("epochs", self.epochs, 1, 1 if one_pass else 2**63 - 1)
        n = self.batch_size * self.group_size
        check_int("minibatches", self.minibatches, 1, 1 if one_pass else n)
        if n % self.minibatches:
            raise ValueError(
                f"minibatches must divide the rollout's batch_size * group_size = {n} answers, "
                f"got {self.minibatches}"
            )
        check_real("clip", self.clip, 0.0, 1.0, low_open=True, high_open=True)
        check_real("beta", self.beta, 0.0)
        if self.kl_estimator is not None and self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"kl_estimator must be one of {KL_ESTIMATORS} or None, got {self.kl_estimator!r}"
            )
        check_real("temperature", self.temperature, 0.0, low_open=True)
        check_int("max_new_tokens", self.max_new_tokens, 1)
        check_real("gamma", self.gamma, 0.0, 1.0)
        check_real("lam", self.lam, 0.0, 1.0)
        check_real("value_coef", self.value_coef, 0.0)
        check_real("value_clip", self.value_clip, 0.0)
        if self.scale not in GRPO_SCALES:
            raise ValueError(f"scale must be one of {GRPO_SCALES}, got {self.scale!r}")

    @property
    def kl_kind(self) -> str:
        """The KL estimator in use: ``kl_estimator``, or the method's usual one."""
        if self.kl_estimator is not None:
            return self.kl_estimator
        return "k3" if self.method == "grpo" else "k1"


def value_model(init: nn.Module) -> GPT:
    """A value model V(s): a deep copy of a GPT whose language-model head is replaced by a
    scalar head ``nn.Linear(n_embd, 1)``, so that ``v(idx)[0]`` has shape (B, T, 1): the value
    of the state that ends at each position.

    ``init`` is the GPT to start from (the policy, or a reward model's GPT), or a module with
    a ``gpt`` attribute such as :class:`~llmtrain.posttraining.RewardModel`. A GPT that already
    has a scalar head keeps it (InstructGPT starts the value model from the reward model);
    a new head starts at zero, so that every value is 0 before training. Every parameter of
    the copy is trainable.
    """
    gpt = init if isinstance(init, GPT) else getattr(init, "gpt", None)
    if not isinstance(gpt, GPT):
        raise TypeError(
            "init must be a llmtrain.pretraining.GPT or a module with a GPT as its .gpt, "
            f"got {type(init).__name__}"
        )
    v = copy.deepcopy(gpt)
    if v.lm_head.out_features != 1:
        v.lm_head = nn.Linear(gpt.config.n_embd, 1)  # a new module: never tied
        nn.init.zeros_(v.lm_head.weight)
        nn.init.zeros_(v.lm_head.bias)
    v.requires_grad_(True)
    return v


def _frozen_copy(model: GPT) -> GPT:
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def _masked_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return (x * m).sum() / m.sum().clamp(min=1)


# -- objectives --------------------------------------------------------------------------------


class _Objective(nn.Module):
    """What the three objectives share: the policy (trained), the frozen reference, the
    config, and a log of the statistics of every training forward pass."""

    def __init__(self, policy: GPT, reference: GPT, config: RLConfig):
        super().__init__()
        if not isinstance(policy, GPT):
            raise TypeError(f"policy must be a llmtrain.pretraining.GPT, got {type(policy)}")
        if not isinstance(reference, GPT):
            raise TypeError(f"reference must be a llmtrain.pretraining.GPT, got {type(reference)}")
        if not isinstance(config, RLConfig):
            raise TypeError(f"config must be an RLConfig, got {type(config).__name__}")
        if reference is policy:
            raise ValueError("reference must be a frozen copy of the policy, not the policy")
        self.policy = policy
        self.reference = reference.requires_grad_(False)
        self.rl = config
        #: The statistics of every forward pass made with gradients (the updates), in order.
        self.log: list[dict] = []

    def train(self, mode: bool = True):
        super().train(mode)
        self.reference.eval()  # frozen: never in training mode
        return self

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """The trainable modules' two groups each (frozen parameters left out), merged."""
        groups = [
            {"params": [], "weight_decay": weight_decay},
            {"params": [], "weight_decay": 0.0},
        ]
        for module in self._trained():
            for merged, own in zip(groups, module.parameter_groups(weight_decay), strict=True):
                merged["params"].extend(own["params"])
        return groups

    def _trained(self) -> list[GPT]:
        return [self.policy]

    def logprobs(self, model: GPT, idx: torch.Tensor) -> torch.Tensor:
        """ln π_τ(x_t | x_<t) (N, T - 1) under the distribution the answers are sampled from,
        softmax(z / τ) at ``config.temperature`` τ, as TRL computes them: the loss is then on
        the sampling policy at any τ. At τ = 1 this is
        :func:`~llmtrain.posttraining.token_logprobs`."""
        if self.rl.temperature == 1.0:
            return token_logprobs(model, idx)
        logits = model(idx[:, :-1])[0] / self.rl.temperature
        return F.log_softmax(logits, dim=-1).gather(-1, idx[:, 1:, None]).squeeze(-1)

    def advantages(self, idx, mask, rewards, old_logp, ref_logp):
        """The advantages (N, T - 1) of a rollout, and the value targets and old values
        (zeros for the methods without a value model)."""
        raise NotImplementedError

    def _policy_terms(self, idx, mask, old_logp, advantages):
        """ln π of the batch and the statistics of the clipped ratio."""
        m = mask[:, 1:].float()
        logp = self.logprobs(self.policy, idx)
        with torch.no_grad():
            ratio = torch.exp(logp - old_logp)
            clipped = ratio.clamp(1 - self.rl.clip, 1 + self.rl.clip)
            # The clipped term is the one the min picks, and it differs from the unclipped one.
            active = (clipped * advantages < ratio * advantages).float()
            stats = {
                "ratio": float(_masked_mean(ratio, m)),
                "clipfrac": float(_masked_mean(active, m)),
            }
        return logp, m, stats

    def _finish(self, stats: dict, loss: torch.Tensor):
        stats["loss"] = float(loss.detach())
        if torch.is_grad_enabled():
            self.log.append(stats)
        return stats, loss


class PPOObjective(_Objective):
    """PPO for RLHF in the style of InstructGPT (Ouyang et al., 2022; Stiennon et al., 2020;
    Ziegler et al., 2019): the KL penalty is part of the reward, a value model gives GAE
    advantages.

    Per response token t the reward is r_t = -β k(t) with k the KL estimate
    (``config.kl_kind``, the log ratio ln π_old - ln π_ref by default), plus the scalar reward
    of the answer at its last token. The value model V (a :func:`value_model`, trained by the
    same optimizer: ``parameter_groups`` includes it) reads the sequence; V at column t - 1
    (the state before token t) is the value of that state, and the state after the last token is
    terminal (value 0). :func:`~llmtrain.posttraining.gae` (γ, λ) gives the advantages Â_t and
    the returns Â_t + V_t; the advantages are then *whitened* over the rollout's response tokens
    (minus their mean, over their standard deviation), as most implementations do. The loss is

        ppo_clip_loss(ln π, ln π_old, Â, ε) + c₁ · ½ mean_t max((V_t - R_t)², (V_t^clip - R_t)²)

    with V_t^clip = V_t^old + clip(V_t - V_t^old, -ε_V, ε_V), PPO2's clipped value loss (as in
    TRL and OpenAI's baselines); ``value_clip`` = 0 uses the plain squared error.

    Implements :prf:ref:`alg-ppo-rlhf` (its loss; :func:`train_rl` runs the loop).
    """

    def __init__(self, policy: GPT, reference: GPT, config: RLConfig, value_init=None):
        super().__init__(policy, reference, config)
        self.value = value_model(policy if value_init is None else value_init)

    def _trained(self) -> list[GPT]:
        return [self.policy, self.value]

    def values(self, idx: torch.Tensor) -> torch.Tensor:
        """V of the state before each token 1 .. T-1, shape (N, T - 1)."""
        return self.value(idx[:, :-1])[0].squeeze(-1)

    @torch.no_grad()
    def token_rewards(self, mask, rewards, old_logp, ref_logp) -> torch.Tensor:
        """r_t = -β k(t) on every response token, plus the answer's reward at its last one."""
        m = mask[:, 1:].float()
        per_token = -self.rl.beta * kl_estimate(old_logp, ref_logp, self.rl.kl_kind) * m
        last = m.shape[1] - 1 - m.flip(1).argmax(dim=1)
        per_token[torch.arange(len(m)), last] += rewards
        return per_token

    @torch.no_grad()
    def advantages(self, idx, mask, rewards, old_logp, ref_logp):
        m = mask[:, 1:].float()
        r = self.token_rewards(mask, rewards, old_logp, ref_logp)
        v = self.values(idx) * m
        # The state after the last column is terminal; prompt and padding columns hold value
        # 0 and reward 0, so they add nothing to the response's advantages.
        adv, returns = gae(
            r, torch.cat((v, torch.zeros_like(v[:, :1])), 1), gamma=self.rl.gamma, lam=self.rl.lam
        )
        mean = _masked_mean(adv, m)
        std = _masked_mean((adv - mean) ** 2, m).sqrt()  # the population standard deviation
        whitened = (adv - mean) / (std + 1e-8) * m
        return whitened, returns * m, v

    def forward(self, idx, mask, old_logp, ref_logp, advantages, returns, old_values):
        logp, m, stats = self._policy_terms(idx, mask, old_logp, advantages)
        policy_loss = ppo_clip_loss(logp, old_logp, advantages, clip=self.rl.clip, mask=m)
        v = self.values(idx)
        error = (v - returns) ** 2
        if self.rl.value_clip > 0:
            eps = self.rl.value_clip
            v_clipped = old_values + (v - old_values).clamp(-eps, eps)
            error = torch.maximum(error, (v_clipped - returns) ** 2)
        value_loss = 0.5 * _masked_mean(error, m)
        loss = policy_loss + self.rl.value_coef * value_loss
        with torch.no_grad():
            stats["policy_loss"] = float(policy_loss)
            stats["value_loss"] = float(value_loss)
            stats["kl"] = float(_masked_mean(kl_estimate(logp, ref_logp, "k3"), m))
        return self._finish(stats, loss)


class GRPOObjective(_Objective):
    """GRPO (Shao et al., 2024, DeepSeekMath, eqs. 3 and 4, outcome supervision): the
    group-relative advantage of each answer (:func:`~llmtrain.posttraining.grpo_advantages`
    with ``config.scale``) on every one of its tokens, and the KL penalty in the loss, not in
    the reward:

        ppo_clip_loss(ln π, ln π_old, Â, ε) + β · mean_t k(ln π_t, ln π_ref,t)

    with k the estimator ``config.kl_kind`` (k3 in the paper). Both means run over all the
    response tokens of the batch, every token weighing the same: DAPO's token-level loss (Yu
    et al., 2025). The paper instead averages over the tokens of each answer, then over the
    answers, which gives the tokens of a short answer more weight. With ``scale="none"`` the
    advantages are not divided by the group's standard deviation, as in Dr. GRPO (Liu et al.,
    2025); Dr. GRPO also drops the per-answer length normalisation, but divides the sum over
    tokens by a constant (the longest allowed answer) where this divides by the batch's token
    count.

    Implements :prf:ref:`alg-grpo` (its loss; :func:`train_rl` runs the loop).
    """

    @torch.no_grad()
    def advantages(self, idx, mask, rewards, old_logp, ref_logp):
        a = grpo_advantages(rewards, self.rl.group_size, scale=self.rl.scale)
        zeros = torch.zeros_like(old_logp)
        return a[:, None] * mask[:, 1:].float(), zeros, zeros

    def forward(self, idx, mask, old_logp, ref_logp, advantages, returns, old_values):
        logp, m, stats = self._policy_terms(idx, mask, old_logp, advantages)
        policy_loss = ppo_clip_loss(logp, old_logp, advantages, clip=self.rl.clip, mask=m)
        kl = _masked_mean(kl_estimate(logp, ref_logp, self.rl.kl_kind), m)
        loss = policy_loss + self.rl.beta * kl
        stats["policy_loss"] = float(policy_loss.detach())
        stats["kl"] = float(kl.detach())
        return self._finish(stats, loss)


class ReinforceObjective(_Objective):
    """REINFORCE with a baseline (Williams, 1992) and RLOO (Ahmadian et al., 2024).

    The reward of an answer is its score minus β times its KL estimate summed over its tokens
    (``config.kl_kind``, the log ratio by default: the KL penalty in the reward, as in RLHF).
    The baseline b_i is the mean reward of the whole rollout (``"reinforce"``; it includes
    r_i itself, which scales the expected gradient by (N - 1)/N without turning it) or the
    mean of the other G - 1 answers to the same prompt (``"rloo"``, leave-one-out, which does
    not depend on the answer's own reward, so the estimate is unbiased). The loss is

        -(1/N) Σ_i (r_i - b_i) ln π(y_i | x_i)

    with ln π(y | x) the sum over the answer's tokens. One update per rollout
    (``epochs = minibatches = 1``) makes π = π_old at the update, so the ratio of PPO would be
    1 and its clip inactive: the same gradient as
    :func:`~llmtrain.posttraining.ppo_clip_loss` with the answer's advantage on each token, up
    to the constant factor N / (number of response tokens) of its token mean.

    Implements :prf:ref:`alg-reinforce-rloo` (its loss; :func:`train_rl` runs the loop).
    """

    @torch.no_grad()
    def advantages(self, idx, mask, rewards, old_logp, ref_logp):
        m = mask[:, 1:].float()
        kl = (kl_estimate(old_logp, ref_logp, self.rl.kl_kind) * m).sum(dim=1)
        r = rewards - self.rl.beta * kl
        if self.rl.method == "rloo":
            G = self.rl.group_size
            groups = r.view(-1, G)
            baseline = ((groups.sum(dim=1, keepdim=True) - groups) / (G - 1)).reshape(-1)
        else:
            baseline = r.mean().expand_as(r)
        zeros = torch.zeros_like(old_logp)
        return (r - baseline)[:, None] * m, zeros, zeros

    def forward(self, idx, mask, old_logp, ref_logp, advantages, returns, old_values):
        logp, m, stats = self._policy_terms(idx, mask, old_logp, advantages)
        loss = -(advantages * logp * m).sum() / len(idx)
        stats["policy_loss"] = float(loss.detach())
        with torch.no_grad():
            stats["kl"] = float(_masked_mean(kl_estimate(logp, ref_logp, "k3"), m))
        return self._finish(stats, loss)


def rl_objective(
    policy: GPT, reference: GPT, config: RLConfig, *, value_init=None
) -> PPOObjective | GRPOObjective | ReinforceObjective:
    """The objective of ``config.method``: :class:`PPOObjective` (with a value model started
    from ``value_init``, or from the policy), :class:`GRPOObjective`, or
    :class:`ReinforceObjective` for ``"reinforce"`` and ``"rloo"``."""
    if not isinstance(config, RLConfig):
        raise TypeError(f"config must be an RLConfig, got {type(config).__name__}")
    if config.method == "ppo":
        return PPOObjective(policy, reference, config, value_init=value_init)
    if value_init is not None:
        raise ValueError(f"value_init is only used by method 'ppo', got {config.method!r}")
    if config.method == "grpo":
        return GRPOObjective(policy, reference, config)
    return ReinforceObjective(policy, reference, config)


# -- rollouts ----------------------------------------------------------------------------------


class Rollouts:
    """The batch source of RL for :func:`~llmtrain.pretraining.train_loop`: answers sampled
    from the current policy, scored, with everything the objective's loss treats as constant.

    ``batch(n, generator)`` draws n prompts (uniformly, with replacement) from ``examples``,
    samples ``group_size`` answers to each from the objective's policy as it is now (at
    ``temperature``, with ``generator``), scores them with ``reward``, and computes, without
    gradients, ln π_old and ln π_ref of every token (both at the sampling temperature τ, the
    log-probabilities of softmax(z / τ), as TRL computes them) and the objective's advantages. That
    rollout is returned for ``epochs * minibatches`` consecutive calls: in each pass, its
    answers are shuffled (with ``generator``) and cut into ``minibatches`` equal parts, one per
    call; then the next call samples a new rollout. The tuple is
    ``(idx, mask, old_logp, ref_logp, advantages, returns, old_values)``, the arguments of the
    objective's ``forward``; the answers to one prompt are consecutive rows.

    A call made without gradients (``train_loop`` evaluates under ``torch.no_grad``)
    is an evaluation: it samples a fresh rollout, returns all of it and leaves the training
    rollout alone. Every rollout adds one record to ``history`` (training) or
    ``evaluations`` (evaluation): ``update`` (the optimizer updates made before it, counted
    from this source's training calls), ``reward`` (the mean reward), ``gold`` (the mean
    :func:`gold_reward`, whatever the training reward is), ``kl`` (the mean over answers of
    Σ_t (ln π_old - ln π_ref), the k1 estimate of the answer's KL), ``kl_k3`` (the same with
    k3), ``length`` (the mean answer length in tokens, ``<|end|>`` included) and ``ended`` (the
    fraction of answers that wrote ``<|end|>``).

    The policy's dropout should be 0 (as in the book's models): π_old is computed in the
    policy's current mode, and the loss must see the same function for the ratio to start at 1.

    Implements :prf:ref:`alg-rl-rollout`.
    """

    def __init__(
        self,
        objective: _Objective,
        tokenizer: Tokenizer,
        examples: Sequence[Example],
        reward: Reward,
    ):
        if not isinstance(objective, _Objective):
            raise TypeError(f"objective must be an RL objective, got {type(objective).__name__}")
        if len(examples) == 0:
            raise ValueError("examples must hold at least one example")
        if not callable(reward):
            raise TypeError(f"reward must be callable, got {type(reward).__name__}")
        self.objective = objective
        self.config = objective.rl
        self.tokenizer = tokenizer
        self.examples = list(examples)
        self.reward = reward
        self.end_id = tokenizer.special_tokens["<|end|>"]
        self.prompts = [encode_chat(tokenizer, e.prompt)[0] for e in self.examples]
        budget = self.config.max_new_tokens
        longest = max(len(p) for p in self.prompts) + budget
        context = objective.policy.config.block_size
        if longest > context:
            raise ValueError(
                f"max_new_tokens must leave room for the longest prompt ({longest - budget} "
                f"tokens) in the model's context of {context} tokens, got {budget}"
            )
        self.history: list[dict] = []
        self.evaluations: list[dict] = []
        self._calls = 0
        self._rollout: tuple | None = None
        self._order: torch.Tensor | None = None

    @property
    def policy(self) -> GPT:
        """The model being trained (a live reference)."""
        return self.objective.policy

    @property
    def reference(self) -> GPT:
        """The frozen reference model."""
        return self.objective.reference

    @torch.no_grad()
    def sample(self, prompts: list[int], generator: torch.Generator):
        """Sample ``group_size`` answers to each of the prompts (indices into ``examples``):
        token ids (N, T), the response mask (N, T) and the answers' texts (None if unended)."""
        G, budget = self.config.group_size, self.config.max_new_tokens
        by_length: dict[int, list[int]] = {}
        for row, i in enumerate(prompts):
            by_length.setdefault(len(self.prompts[i]), []).append(row)
        T = max(by_length) + budget
        N = len(prompts) * G
        idx = torch.full((N, T), self.end_id, dtype=torch.long)
        mask = torch.zeros((N, T))
        answers: list[str | None] = [None] * N
        for length, rows in sorted(by_length.items()):
            x = torch.tensor([self.prompts[prompts[r]] for r in rows]).repeat_interleave(G, 0)
            out = self.policy.generate(
                x, budget, temperature=self.config.temperature, generator=generator
            )
            for k, seq in enumerate(out):
                n = rows[k // G] * G + k % G
                new = seq[length:].tolist()
                ended = self.end_id in new
                keep = new.index(self.end_id) + 1 if ended else budget  # cut after <|end|>
                idx[n, :length] = seq[:length]
                idx[n, length : length + keep] = seq[length : length + keep]
                mask[n, length : length + keep] = 1
                if ended:
                    answers[n] = self.tokenizer.decode(new[: keep - 1])
        return idx, mask, answers

    @torch.no_grad()
    def rollout(self, n: int, generator: torch.Generator) -> tuple[tuple, dict]:
        """A fresh rollout on n prompts: the batch tuple and its record."""
        n = check_int("n", n, 1)
        prompts = torch.randint(len(self.examples), (n,), generator=generator).tolist()
        idx, mask, answers = self.sample(prompts, generator)
        examples = [self.examples[i] for i in prompts for _ in range(self.config.group_size)]
        rewards = self.reward(examples, answers)
        if not isinstance(rewards, torch.Tensor) or rewards.shape != (len(answers),):
            raise ValueError(
                f"reward must return a tensor of shape ({len(answers)},), got "
                f"{getattr(rewards, 'shape', type(rewards).__name__)}"
            )
        rewards = rewards.float()
        old_logp = self.objective.logprobs(self.policy, idx)
        ref_logp = self.objective.logprobs(self.reference, idx)
        advantages, returns, old_values = self.objective.advantages(
            idx, mask, rewards, old_logp, ref_logp
        )
        m = mask[:, 1:]
        record = {
            "reward": float(rewards.mean()),
            "gold": float(gold_reward(examples, answers).mean()),
            "kl": float(((old_logp - ref_logp) * m).sum(1).mean()),
            "kl_k3": float((kl_estimate(old_logp, ref_logp, "k3") * m).sum(1).mean()),
            "length": float(m.sum(1).mean()),
            "ended": sum(a is not None for a in answers) / len(answers),
        }
        return (idx, mask, old_logp, ref_logp, advantages, returns, old_values), record

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        if not torch.is_grad_enabled():  # an evaluation
            batch, record = self.rollout(n, generator)
            self.evaluations.append({"update": self._calls, **record})
            return batch
        step = self._calls % (self.config.epochs * self.config.minibatches)
        if step == 0:
            self._rollout, record = self.rollout(n, generator)
            self.history.append({"update": self._calls, **record})
        self._calls += 1
        parts = self.config.minibatches
        if parts == 1:
            return self._rollout
        if step % parts == 0:  # a new pass: shuffle the answers
            self._order = torch.randperm(len(self._rollout[0]), generator=generator)
        rows = self._order.view(parts, -1)[step % parts]
        return tuple(t[rows] for t in self._rollout)

    def prompt(self) -> torch.Tensor:
        return torch.tensor(self.prompts[0])

    def digest(self) -> str:
        content = json.dumps([[e.task, e.word, e.prompt, e.response] for e in self.examples])
        return hashlib.sha256(content.encode()).hexdigest()


# -- the run -----------------------------------------------------------------------------------


@dataclass
class RLResult(TrainResult):
    """What :func:`train_rl` returns: the :class:`~llmtrain.pretraining.TrainResult` of the loop
    (whose ``model`` is the objective: the policy is ``result.model.policy``; the losses are
    the objective's) and the RL records.

    Attributes
    ----------
    history : list of dict
        One record per training rollout (see :class:`Rollouts`).
    evaluations : list of dict
        One record per evaluation (at update 0, every ``eval_interval`` updates and at the end):
        the means of the ``eval_iters`` validation rollouts' records, with ``iter``.
    updates : list of dict
        The objective's statistics at every update: ``loss``, ``policy_loss``, ``ratio`` (the
        mean of π/π_old over the response tokens), ``clipfrac`` (the fraction of them where
        the clipped term is the one the loss uses), ``kl`` (the mean per-token KL estimate
        against the reference: GRPO's penalty, k3 for the other methods) and PPO's
        ``value_loss``.
    """

    history: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    updates: list[dict] = field(default_factory=list)


def train_rl(
    policy: GPT,
    tokenizer: Tokenizer,
    train_examples: Sequence[Example],
    val_examples: Sequence[Example],
    reward: Reward = gold_reward,
    config: RLConfig | None = None,
    *,
    value_init=None,
    progress: bool = False,
) -> RLResult:
    """Train ``policy`` in place by ``config.method`` on the prompts of ``train_examples``,
    with Part III's :func:`~llmtrain.pretraining.train_loop`: :class:`Rollouts` as the batches
    and :func:`rl_objective` as the model. The reference model is a frozen copy of the policy
    as it is at the start.

    ``reward(examples, answers)`` returns a float tensor of shape (B,) (:func:`gold_reward`,
    or a learned reward such as :meth:`~llmtrain.posttraining.RewardModel.reward_function`).
    ``value_init`` (PPO only) starts the value model from another GPT (or a reward model)
    instead of the policy. Evaluations sample rollouts on ``val_examples``; their loss is the
    objective's loss on them (with the same validation prompts and random stream each time).
    ``progress`` shows the loop's progress bar. The run uses one torch thread (the book's small
    models run fastest so) and restores the setting after it.

    Implements :prf:ref:`alg-ppo-rlhf` with ``method="ppo"`` (the loop; the loss is
    :class:`PPOObjective`'s).
    """
    config = RLConfig() if config is None else config
    if not isinstance(config, RLConfig):
        raise TypeError(f"config must be an RLConfig, got {type(config).__name__}")
    objective = rl_objective(policy, _frozen_copy(policy), config, value_init=value_init)
    train_data = Rollouts(objective, tokenizer, train_examples, reward)
    val_data = Rollouts(objective, tokenizer, val_examples, reward)
    with one_torch_thread():  # the book's small models run fastest on one thread
        result = train_loop(
            objective, train_data, val_data, config, tokenizer=tokenizer, progress=progress
        )
    policy.eval()
    k = config.eval_iters
    evaluations = []
    for j, record in enumerate(result.log):
        parts = val_data.evaluations[j * k : (j + 1) * k]
        mean = {key: sum(p[key] for p in parts) / k for key in parts[0] if key != "update"}
        evaluations.append({"iter": record["iter"], **mean})
    return RLResult(
        **vars(result),
        history=train_data.history,
        evaluations=evaluations,
        updates=objective.log,
    )
