"""A reward model: the book's GPT with a scalar head, trained on preference pairs with the
Bradley-Terry loss.

The reward r(x, y) of a prompt x and a response y is one number: the GPT reads the prompt in
the chat template, the response and its ``<|end|>`` marker, and a linear head maps the last
hidden state (at that ``<|end|>``, which has seen everything before it) to a scalar.
InstructGPT (Ouyang et al., 2022) starts the reward model from the fine-tuned (SFT) model,
which already reads the task; :func:`train_reward_model` does the same with whatever GPT it
is given. Training is Part III's :func:`~llmtrain.pretraining.train_loop` on
:class:`~llmtrain.posttraining.PairBatches`, with :class:`BradleyTerryObjective` as the model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from .._checks import check_real, check_shape_match
from .._threads import one_torch_thread
from ..pretraining import GPT, LoopConfig, Tokenizer, TrainResult, train_loop
from .preference_data import PairBatches, PreferencePair, encode_responses
from .preference_losses import bradley_terry_loss
from .task_world import Example

__all__ = [
    "BradleyTerryObjective",
    "RewardModel",
    "preference_accuracy",
    "train_reward_model",
]

# Rows scored in one forward pass by reward_function and preference_accuracy (bounds memory).
_CHUNK = 512


def _check_rows(name: str, ids, mask_name: str, mask) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.is_floating_point():
        raise TypeError(f"{name} must be an integer torch.Tensor of shape (B, T)")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{mask_name} must be a torch.Tensor, got {type(mask).__name__}")
    check_shape_match(name, ids.shape, mask_name, mask.shape)


def _last_response_position(mask: torch.Tensor) -> torch.Tensor:
    """The index of the last 1 of each row of a 0/1 mask (B, T); every row needs one."""
    marked = mask != 0
    if not bool(marked.any(dim=1).all()):
        raise ValueError("mask must mark at least one response token (a 1) in every row")
    T = mask.shape[1]
    return T - 1 - marked.flip(1).int().argmax(dim=1)


class RewardModel(nn.Module):
    """The book's GPT with a scalar head: r(x, y) read at the last response token.

    The GPT is deep-copied (the model passed in is left untouched) and its language-model
    head, V outputs per position, is replaced by ``nn.Linear(n_embd, 1)``, so that the copy
    computes one number per position. ``forward(idx, mask)`` returns the rewards, shape (B,):
    for each row of token ids ``idx`` (B, T), the head's output at the last position where
    ``mask`` (B, T) is 1, which in the book's rows is the response's final ``<|end|>``.

    Implements :prf:ref:`alg-reward-model` (the model).

    Parameters
    ----------
    gpt : GPT
        The model to start from (InstructGPT starts from the SFT model).
    """

    def __init__(self, gpt: GPT):
        super().__init__()
        if not isinstance(gpt, GPT):
            raise TypeError(f"gpt must be a llmtrain.pretraining.GPT, got {type(gpt).__name__}")
        self.gpt = copy.deepcopy(gpt)
        self.gpt.lm_head = nn.Linear(gpt.config.n_embd, 1)  # a new module: never tied
        # The head starts at zero: every reward is 0 and the loss exactly ln 2, so training
        # starts from no preference at all rather than from a random direction in the hidden
        # state. Only the head moves in the first update (the body's gradient is proportional
        # to the head's weight); from the second on, both do.
        nn.init.zeros_(self.gpt.lm_head.weight)
        nn.init.zeros_(self.gpt.lm_head.bias)

    def forward(self, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check_rows("idx", idx, "mask", mask)
        scores = self.gpt(idx)[0].squeeze(-1)  # (B, T): a reward at every position
        last = _last_response_position(mask)
        return scores.gather(1, last[:, None]).squeeze(1)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """The GPT's groups: the head's weight is a matrix, decayed like the others; its bias
        is not."""
        return self.gpt.parameter_groups(weight_decay)

    @torch.no_grad()
    def score(
        self, tokenizer: Tokenizer, prompts: Sequence[str], responses: Sequence[str]
    ) -> torch.Tensor:
        """The rewards of ``responses`` to ``prompts`` (shape (B,)), each row read in the chat
        template with its ``<|end|>``, in eval mode, without gradients."""
        was_training = self.training
        self.eval()
        try:
            out = []
            for i in range(0, len(prompts), _CHUNK):
                ids, mask = encode_responses(
                    tokenizer, prompts[i : i + _CHUNK], responses[i : i + _CHUNK]
                )
                out.append(self(ids, mask))
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)

    def reward_function(
        self, tokenizer: Tokenizer, *, none_reward: float | None = None
    ) -> Callable[[Sequence[Example], Sequence[str | None]], torch.Tensor]:
        """This model as a reward function: ``reward(examples, answers)`` -> a float tensor of
        shape (B,), the reward of each answer to its example's prompt.

        An answer None (the policy never wrote ``<|end|>``) cannot be scored; it gets
        ``none_reward``, or by default the lowest reward of the batch's finished answers (0
        when none finished), so that an unfinished answer never ranks above a finished one and
        the value stays on the reward model's scale.
        """
        if none_reward is not None:
            none_reward = check_real("none_reward", none_reward)

        def reward(examples: Sequence[Example], answers: Sequence[str | None]) -> torch.Tensor:
            if len(examples) != len(answers):
                raise ValueError(
                    f"examples and answers must have the same length, got {len(examples)} "
                    f"and {len(answers)}"
                )
            done = [i for i, a in enumerate(answers) if a is not None]
            scored = self.score(
                tokenizer, [examples[i].prompt for i in done], [answers[i] for i in done]
            ).float()
            if none_reward is not None:
                low = none_reward
            else:
                low = float(scored.min()) if len(done) else 0.0
            out = torch.full((len(answers),), low)
            out[done] = scored
            return out

        return reward


class BradleyTerryObjective(nn.Module):
    """Reward-model training as a model for :func:`~llmtrain.pretraining.train_loop`:
    ``forward(chosen_ids, chosen_mask, rejected_ids, rejected_mask)`` returns
    ``(margins, loss)``, the reward margins r(x, y_w) - r(x, y_l) of the pairs (detached,
    shape (B,)) and the mean Bradley-Terry loss -log σ(r(x, y_w) - r(x, y_l))
    (:func:`~llmtrain.posttraining.bradley_terry_loss`)."""

    def __init__(self, reward_model: RewardModel):
        super().__init__()
        if not isinstance(reward_model, RewardModel):
            raise TypeError(
                f"reward_model must be a RewardModel, got {type(reward_model).__name__}"
            )
        self.reward_model = reward_model

    def forward(self, chosen_ids, chosen_mask, rejected_ids, rejected_mask):
        _check_rows("chosen_ids", chosen_ids, "chosen_mask", chosen_mask)
        _check_rows("rejected_ids", rejected_ids, "rejected_mask", rejected_mask)
        check_shape_match(
            "chosen_ids", chosen_ids.shape[:1], "rejected_ids", rejected_ids.shape[:1]
        )
        B = chosen_ids.shape[0]
        if chosen_ids.shape == rejected_ids.shape:  # one pass over both halves
            r = self.reward_model(
                torch.cat((chosen_ids, rejected_ids)), torch.cat((chosen_mask, rejected_mask))
            )
            r_w, r_l = r[:B], r[B:]
        else:
            r_w = self.reward_model(chosen_ids, chosen_mask)
            r_l = self.reward_model(rejected_ids, rejected_mask)
        return (r_w - r_l).detach(), bradley_terry_loss(r_w, r_l)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        return self.reward_model.parameter_groups(weight_decay)


def _check_config(config, gpt: GPT) -> LoopConfig:
    if not isinstance(config, LoopConfig):
        raise TypeError(f"config must be a LoopConfig, got {type(config).__name__}")
    if config.block_size > gpt.config.block_size:
        raise ValueError(
            f"config.block_size must be at most the model's context of "
            f"{gpt.config.block_size} tokens, got {config.block_size}"
        )
    return config


def train_reward_model(
    gpt: GPT,
    tokenizer: Tokenizer,
    train_pairs: Sequence[PreferencePair],
    val_pairs: Sequence[PreferencePair],
    config: LoopConfig,
    *,
    progress: bool = False,
) -> tuple[RewardModel, TrainResult]:
    """A reward model started from ``gpt`` (which is left untouched) and trained on
    ``train_pairs`` with the Bradley-Terry loss by :func:`~llmtrain.pretraining.train_loop`
    (``config`` sets the loop: batch of pairs, updates, learning rate, ...; its
    ``block_size`` bounds the rows). Returns the model, in eval mode, and the
    :class:`~llmtrain.pretraining.TrainResult`, whose losses are Bradley-Terry losses (ln 2
    at the start) and whose ``val_loss`` is measured on ``val_pairs``; ``progress`` shows the
    loop's progress bar.

    Implements :prf:ref:`alg-reward-model`.
    """
    reward_model = RewardModel(gpt)
    config = _check_config(config, gpt)
    train_data = PairBatches(tokenizer, train_pairs, config.block_size)
    val_data = PairBatches(tokenizer, val_pairs, config.block_size)
    objective = BradleyTerryObjective(reward_model)
    with one_torch_thread():  # the book's small models lose time to a second thread
        result = train_loop(
            objective, train_data, val_data, config, tokenizer=tokenizer, progress=progress
        )
    return reward_model.eval(), result


def preference_accuracy(
    reward_model: RewardModel,
    tokenizer: Tokenizer,
    pairs: Sequence[PreferencePair],
    *,
    gold: bool = True,
) -> float:
    """The fraction of ``pairs`` that the reward model orders right: the right answer scored
    strictly above the near miss (``gold=True``), or the labeller's choice scored strictly
    above the other answer (``gold=False``, agreement with the possibly biased labels)."""
    if not isinstance(reward_model, RewardModel):
        raise TypeError(f"reward_model must be a RewardModel, got {type(reward_model).__name__}")
    if len(pairs) == 0:
        raise ValueError("pairs must hold at least one PreferencePair, got none")
    prompts = [p.example.prompt for p in pairs]
    first = [p.correct if gold else p.chosen for p in pairs]
    second = [p.wrong if gold else p.rejected for p in pairs]
    r = reward_model.score(tokenizer, prompts + prompts, first + second)
    n = len(pairs)
    return float((r[:n] > r[n:]).float().mean())
