"""The runs of Part IV's chapters on preferences and rewards, trained by the package and kept
on disk: the reward model, and the policies that RL (PPO, GRPO, REINFORCE, RLOO) and direct
alignment (DPO, IPO, SimPO) make from the SFT model.

Every run starts from :func:`~llmtrain.posttraining.sft_model` and is cached like it: under a
key of the SFT model's own key, the run's configuration, its data and the code of the modules
that train it, so that a build trains each run once and two builds give the same weights.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..pretraining import GPT, BPETokenizer, LoopConfig, cache_dir
from ..pretraining.cached_models import cache_key, store_entry
from .direct_alignment import train_direct
from .models import SFT_CONFIG, finetune_key, sft_model
from .preference_data import PreferencePair, preference_pairs
from .reward_model import RewardModel, train_reward_model
from .rl import RLConfig, gold_reward, train_rl
from .task_world import Example, make_examples

__all__ = [
    "DIRECT_CONFIG",
    "LENGTH_BIAS",
    "PPO_BETAS",
    "PPO_TASKS",
    "REWARD_CONFIG",
    "AlignmentRun",
    "cached_direct",
    "cached_reward_model",
    "cached_rl",
    "ppo_config",
    "preference_data",
    "rl_prompts",
]

_HERE = Path(__file__).resolve().parent
# The modules whose code decides the weights of these runs (besides those of the SFT model):
# Part IV's, and Part III's sampler, which draws every rollout.
_SOURCES = [
    _HERE / name
    for name in (
        "alignment_runs.py",
        "direct_alignment.py",
        "policy_gradients.py",
        "preference_data.py",
        "preference_losses.py",
        "reward_model.py",
        "rl.py",
    )
] + [_HERE.parent / "pretraining" / "sampling.py"]

#: The probability with which the simulated labeller prefers the longer answer of a pair
#: whose answers differ in length, whichever is right: the bias a reward model learns and a
#: policy optimised against it exploits.
LENGTH_BIAS = 0.3

#: Reward-model training: 200 updates of 16 pairs, AdamW at 10⁻³, no weight decay.
REWARD_CONFIG = LoopConfig(
    batch_size=16,
    block_size=64,
    max_iters=200,
    lr=1e-3,
    warmup_iters=10,
    weight_decay=0.0,
    eval_interval=50,
    eval_iters=4,
)

#: Direct alignment (DPO and its relatives): 100 updates of 16 pairs, AdamW at 10⁻⁴.
DIRECT_CONFIG = LoopConfig(
    batch_size=16,
    block_size=64,
    max_iters=100,
    lr=1e-4,
    warmup_iters=10,
    weight_decay=0.0,
    eval_interval=50,
    eval_iters=4,
)


#: The KL coefficients β of the PPO runs against the learned reward (a factor 10 apart): the
#: RLHF chapter's three runs, the middle one the run the direct-alignment chapter compares
#: DPO with.
PPO_BETAS = (0.03, 0.3, 3.0)
#: The prompts of the PPO runs: all four tasks of the task world.
PPO_TASKS = ("reverse", "capitals", "length", "first_letter")


def ppo_config(beta: float) -> RLConfig:
    """The PPO run with KL coefficient ``beta``: 30 updates at a learning rate of 10⁻⁴;
    each rollout samples one answer to each of 64 prompts and serves 2 epochs of 2
    minibatches; an evaluation on the same 64 validation prompts every 10 updates (the loop
    also evaluates on a training rollout then: evaluations cost about a rollout and a half)."""
    return RLConfig(
        method="ppo",
        batch_size=64,
        group_size=1,
        epochs=2,
        minibatches=2,
        max_iters=30,
        lr=1e-4,
        beta=beta,
        eval_interval=10,
        eval_iters=1,
    )


def preference_data() -> tuple[list[PreferencePair], list[PreferencePair]]:
    """The preference pairs: 4,000 on the training words, to train on, and 500 on the test
    words, to measure on, all labelled by the labeller with ``LENGTH_BIAS``."""
    return (
        preference_pairs("train", 4000, seed=0, length_bias=LENGTH_BIAS),
        preference_pairs("test", 500, seed=1, length_bias=LENGTH_BIAS),
    )


def rl_prompts(tasks: tuple[str, ...] = ("reverse",)) -> tuple[list[Example], list[Example]]:
    """Prompts for RL: 2,000 on the training words and 200 on the test words, of ``tasks``
    (by default reversal, the one task the SFT model has not mastered)."""
    return (
        make_examples("train", 2000, seed=5, tasks=tasks),
        make_examples("test", 200, seed=6, tasks=tasks),
    )


@dataclass
class AlignmentRun:
    """A model made from the SFT model, and how it was made.

    Attributes
    ----------
    model : GPT or RewardModel
        The trained policy (a GPT) or reward model, in eval mode.
    tokenizer : BPETokenizer
    log, losses : list
        The loop's evaluation records and per-update losses.
    records : dict
        Whatever else the run recorded: RL's ``history``, ``evaluations`` and ``updates``
        (see :class:`~llmtrain.posttraining.RLResult`).
    seconds : float
        The training time measured when the run was made (the cache keeps it).
    """

    model: torch.nn.Module
    tokenizer: BPETokenizer
    log: list[dict] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    records: dict = field(default_factory=dict)
    seconds: float = 0.0


@functools.cache
def _sft() -> tuple[GPT, BPETokenizer, str]:
    """The SFT model, its tokenizer and its cache key, loaded once per process: computing the
    key hashes the fine-tuning data and code, which costs about a second every time."""
    model, tokenizer = sft_model()
    return model, tokenizer, finetune_key("full", SFT_CONFIG, 32, 64.0, False)


def _start() -> tuple[GPT, BPETokenizer]:
    """A fresh copy of the SFT model, the starting point of every run, and its tokenizer."""
    model, tokenizer, _ = _sft()
    return copy.deepcopy(model), tokenizer


def _cached(name: str, parts: list, model: torch.nn.Module, train: Callable[[], dict]) -> dict:
    """Load the run ``name`` of key ``parts`` into ``model``, or train it (``train`` trains
    ``model`` in place and returns its records) and store it. Returns the records."""
    key = cache_key(_sft()[2], name, parts, sources=_SOURCES)
    entry = cache_dir() / f"{name}-{key}"
    if (entry / "run.pt").is_file():
        state = torch.load(entry / "run.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        return state["records"]
    records = train()
    state = {"model": model.state_dict(), "records": records}
    store_entry(entry, lambda directory: torch.save(state, directory / "run.pt"))
    return records


def _pairs_key(pairs: list[PreferencePair]) -> list:
    return [[p.example.prompt, p.chosen, p.rejected] for p in pairs]


def cached_reward_model() -> AlignmentRun:
    """The reward model: the SFT model with a scalar head
    (:class:`~llmtrain.posttraining.RewardModel`), trained on :func:`preference_data` with
    ``REWARD_CONFIG``; cached. Every call returns a fresh copy of the model."""
    run = _reward_model_run()
    return replace(run, model=copy.deepcopy(run.model))


@functools.cache
def _reward_model_run() -> AlignmentRun:
    """:func:`cached_reward_model`, loaded (or trained) once per process."""
    sft, tokenizer = _start()
    train_pairs, val_pairs = preference_data()
    model = RewardModel(sft)

    def train() -> dict:
        trained, result = train_reward_model(sft, tokenizer, train_pairs, val_pairs, REWARD_CONFIG)
        model.load_state_dict(trained.state_dict())
        return {"log": result.log, "losses": result.losses, "seconds": result.log[-1]["elapsed_s"]}

    parts = [asdict(REWARD_CONFIG), _pairs_key(train_pairs), _pairs_key(val_pairs)]
    records = _cached("reward-model", parts, model, train)
    model.eval()
    return AlignmentRun(model, tokenizer, records["log"], records["losses"], {}, records["seconds"])


def cached_rl(config: RLConfig, *, reward: str = "gold", tasks=("reverse",)) -> AlignmentRun:
    """The SFT model trained by :func:`~llmtrain.posttraining.train_rl` with ``config`` on
    :func:`rl_prompts` of ``tasks``; cached. ``reward`` is ``"gold"`` (the checker,
    :func:`~llmtrain.posttraining.gold_reward`) or ``"learned"`` (:func:`cached_reward_model`,
    which with PPO also starts the value model, as in InstructGPT). The run's ``records``
    hold RL's ``history``, ``evaluations`` and ``updates``."""
    if reward not in ("gold", "learned"):
        raise ValueError(f"reward must be 'gold' or 'learned', got {reward!r}")
    if not isinstance(config, RLConfig):
        raise TypeError(f"config must be an RLConfig, got {type(config).__name__}")
    policy, tokenizer = _start()
    train_examples, val_examples = rl_prompts(tuple(tasks))
    value_init = None
    reward_fn = gold_reward
    if reward == "learned":
        rm = cached_reward_model().model
        reward_fn = rm.reward_function(tokenizer)
        value_init = rm if config.method == "ppo" else None

    def train() -> dict:
        result = train_rl(
            policy,
            tokenizer,
            train_examples,
            val_examples,
            reward_fn,
            config,
            value_init=value_init,
        )
        return {
            "log": result.log,
            "losses": result.losses,
            "seconds": result.log[-1]["elapsed_s"],
            "history": result.history,
            "evaluations": result.evaluations,
            "updates": result.updates,
        }

    parts = [asdict(config), reward, [e.prompt for e in train_examples + val_examples]]
    records = _cached("rl", parts, policy, train)
    policy.eval()
    extra = {k: records[k] for k in ("history", "evaluations", "updates")}
    return AlignmentRun(
        policy, tokenizer, records["log"], records["losses"], extra, records["seconds"]
    )


def cached_direct(
    config: LoopConfig = DIRECT_CONFIG, *, loss: str = "dpo", beta: float | None = None
) -> AlignmentRun:
    """The SFT model trained on :func:`preference_data` by
    :func:`~llmtrain.posttraining.train_direct` with ``loss`` (``"dpo"``, ``"ipo"``,
    ``"simpo"``) and ``beta`` (None: the loss's default); cached."""
    if not isinstance(config, LoopConfig):
        raise TypeError(f"config must be a LoopConfig, got {type(config).__name__}")
    policy, tokenizer = _start()
    train_pairs, val_pairs = preference_data()

    def train() -> dict:
        result = train_direct(
            policy, tokenizer, train_pairs, val_pairs, config, loss=loss, beta=beta
        )
        return {"log": result.log, "losses": result.losses, "seconds": result.log[-1]["elapsed_s"]}

    parts = [asdict(config), loss, beta, _pairs_key(train_pairs), _pairs_key(val_pairs)]
    records = _cached("direct", parts, policy, train)
    policy.eval()
    return AlignmentRun(
        policy, tokenizer, records["log"], records["losses"], {}, records["seconds"]
    )
