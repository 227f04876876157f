"""Demo of the chapter on direct alignment: DPO at three values of β on the book's model,
measured against the SFT model it starts from and against PPO with the learned reward.

Every policy is measured the same way (:func:`policy_scores`): exact match of its greedy
answers to the chapter's test prompts, the learned reward model's score of those answers,
their length, and the KL divergence from the SFT model estimated from sampled answers
(:func:`sampled_kl`). For DPO, :func:`logprob_shift` adds how far training moved the
log-probabilities of the right answers and of the near misses of the held-out preference
pairs. :func:`direct_alignment_results` collects it all, computed once and kept on disk, so
that the chapter, its tests and the static page's worker processes read the same numbers."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import torch

from ..._threads import one_torch_thread
from ...posttraining import (
    DIRECT_CONFIG,
    PPO_BETAS,
    PPO_TASKS,
    cached_direct,
    cached_reward_model,
    cached_rl,
    check_answer,
    complete,
    decode_answers,
    encode_chat,
    kl_estimate,
    make_examples,
    ppo_config,
    preference_data,
    sequence_logprobs,
    sft_model,
    token_logprobs,
)
from ...posttraining.preference_data import encode_responses
from ...pretraining import GPT, Tokenizer
from ...pretraining.cached_models import cache_key, cached_json, weights_digest
from ..demo import Demo, Slider, demo_factory

__all__ = [
    "DPO_BETAS",
    "DPO_CONFIG",
    "PPO_BETA",
    "direct_alignment_results",
    "dpo_beta_demo",
    "dpo_run",
    "logprob_shift",
    "policy_scores",
    "ppo_run",
    "sampled_kl",
]

#: The chapter's DPO runs: ``DIRECT_CONFIG`` cut to 40 updates of
#: 16 pairs (AdamW at 10⁻⁴ after 10 warmup updates), evaluated once at the end; short enough
#: for the three runs to train within the chapter's build time.
DPO_CONFIG = dataclasses.replace(DIRECT_CONFIG, max_iters=40, eval_interval=40)
#: The values of β of the DPO runs (a factor 5 apart: the slider's three positions).
DPO_BETAS = (0.02, 0.1, 0.5)
#: The KL coefficient of the PPO run DPO is compared with: the RLHF chapter's middle run.
PPO_BETA = PPO_BETAS[1]
N_TEST = 400  # the test prompts of Part IV's chapters: make_examples("test", 400, seed=1)
TEST_SEED = 1
MAX_NEW_TOKENS = 10  # the longest answer (5 letters) and <|end|> fit with room to spare
KL_SEED = 0  # the generator of the answers sampled for the KL estimate

_HERE = Path(__file__).resolve().parent
_SOURCES = [
    _HERE / "direct_alignment.py",
    *(
        _HERE.parents[1] / "posttraining" / name
        for name in (
            "alignment_runs.py",
            "chat.py",
            "decoding.py",
            "evaluation.py",
            "policy_gradients.py",
            "preference_data.py",
            "reward_model.py",
            "task_world.py",
        )
    ),
    _HERE.parents[1] / "pretraining" / "gpt.py",
]


def dpo_run(beta: float):
    """The SFT model trained by DPO with ``beta`` on the preference pairs, with
    ``DPO_CONFIG`` (:func:`~llmtrain.posttraining.cached_direct`; cached)."""
    return cached_direct(DPO_CONFIG, loss="dpo", beta=beta)


def ppo_run():
    """The RLHF chapter's PPO run with β = ``PPO_BETA``: the SFT model trained by PPO
    against the learned reward model on the prompts of all four tasks
    (:func:`~llmtrain.posttraining.ppo_config`,
    :func:`~llmtrain.posttraining.cached_rl`; cached)."""
    return cached_rl(ppo_config(PPO_BETA), reward="learned", tasks=PPO_TASKS)


def _answer_rows(tokenizer: Tokenizer, prompts, answers, end: int):
    """Rows of prompt + sampled answer (+ ``<|end|>`` if the answer ended), right-padded, and
    masks over the answer's tokens: exactly the tokens that were sampled."""
    rows = [
        (p, list(a) + ([end] if len(a) < MAX_NEW_TOKENS else []))
        for p, a in zip(prompts, answers, strict=True)
    ]
    T = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), T), end, dtype=torch.long)
    mask = torch.zeros(len(rows), T)
    for i, (p, a) in enumerate(rows):
        ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        mask[i, len(p) : len(p) + len(a)] = 1
    return ids, mask


@torch.no_grad()
def sampled_kl(
    policy: GPT, reference: GPT, tokenizer: Tokenizer, examples, *, seed: int = KL_SEED
) -> float:
    """KL(π ‖ π_ref) between the answers of two models, in nats per answer: one answer y
    sampled from ``policy`` (temperature 1, at most ``MAX_NEW_TOKENS`` tokens) to each
    example's prompt x, the estimator k3 of :func:`~llmtrain.posttraining.kl_estimate` at
    each of its tokens, summed over the answer and averaged over the prompts. Each token's k3
    is an unbiased estimate of the KL of that token's distribution given the tokens before,
    and these KLs add up to the KL of whole answers, so the sum is unbiased too; unlike the
    log-ratio of whole answers it is never negative, and it varies less."""
    end = tokenizer.special_tokens["<|end|>"]
    prompts = [encode_chat(tokenizer, e.prompt)[0] for e in examples]
    answers = decode_answers(
        policy,
        [torch.tensor(p) for p in prompts],
        MAX_NEW_TOKENS,
        stop_id=end,
        seed=seed,
        temperature=1.0,
    )
    ids, mask = _answer_rows(tokenizer, prompts, [a for (a,) in answers], end)
    k3 = kl_estimate(token_logprobs(policy, ids), token_logprobs(reference, ids), "k3")
    return float((k3 * mask[:, 1:]).sum(dim=1).mean())


@torch.no_grad()
def policy_scores(policy: GPT, sft: GPT, tokenizer: Tokenizer, examples, reward) -> dict:
    """A policy measured on ``examples``: ``"exact_match"`` of its greedy answers (all
    examples) and ``"by_task"``, ``"reward"`` (the mean of ``reward(examples, answers)`` over
    the greedy answers: the learned reward model's score), ``"length"`` (their mean length in
    tokens, the budget for an unfinished one), ``"kl"`` (:func:`sampled_kl` from ``sft``; 0
    for ``sft`` itself) and ``"answers"`` (the greedy answers)."""
    answers = complete(policy, tokenizer, [e.prompt for e in examples], max_new_tokens=10)
    right = [check_answer(e, a) for e, a in zip(examples, answers, strict=True)]
    tasks = sorted({e.task for e in examples})
    by_task = {
        t: float(np.mean([r for r, e in zip(right, examples, strict=True) if e.task == t]))
        for t in tasks
    }
    lengths = [MAX_NEW_TOKENS if a is None else len(tokenizer.encode_ordinary(a)) for a in answers]
    return {
        "exact_match": float(np.mean(right)),
        "by_task": by_task,
        "reward": float(reward(examples, answers).mean()),
        "length": float(np.mean(lengths)),
        "kl": 0.0 if policy is sft else sampled_kl(policy, sft, tokenizer, examples),
        "answers": answers,
    }


def _remembered(reward):
    """``reward`` scoring each (prompt, answer) once across calls: the policies mostly give
    the same greedy answers."""
    memory: dict = {}

    def scored(examples, answers):
        keys = [(e.prompt, a) for e, a in zip(examples, answers, strict=True)]
        fresh = list(dict.fromkeys(k for k in keys if k not in memory))
        if fresh:
            by_prompt = {e.prompt: e for e in examples}
            values = reward([by_prompt[p] for p, _ in fresh], [a for _, a in fresh])
            memory.update(zip(fresh, values.tolist(), strict=True))
        return torch.tensor([memory[k] for k in keys])

    return scored


@torch.no_grad()
def logprob_shift(policy: GPT, sft: GPT, tokenizer: Tokenizer, pairs) -> dict:
    """How far preference training moved ln π of each pair's two answers from the SFT
    model's: ``"right"`` and ``"wrong"`` (lists, one value per pair) for the right answer and
    the near miss (whichever the labeller chose), ``"margin"`` the implicit reward margin
    h = Δ ln π(chosen) - Δ ln π(rejected) of :func:`~llmtrain.posttraining.dpo_loss` (without
    β), and ``"tasks"``."""
    prompts = [p.example.prompt for p in pairs]
    shift = {}
    for side in ("chosen", "rejected"):
        ids, mask = encode_responses(tokenizer, prompts, [getattr(p, side) for p in pairs])
        shift[side] = sequence_logprobs(policy, ids, mask) - sequence_logprobs(sft, ids, mask)
    correct = torch.tensor([p.label_correct for p in pairs])
    right = torch.where(correct, shift["chosen"], shift["rejected"])
    wrong = torch.where(correct, shift["rejected"], shift["chosen"])
    return {
        "right": right.tolist(),
        "wrong": wrong.tolist(),
        "margin": (shift["chosen"] - shift["rejected"]).tolist(),
        "tasks": [p.example.task for p in pairs],
    }


def _measure(sft, tokenizer, reward_model, dpo, ppo) -> dict:
    examples = make_examples("test", N_TEST, seed=TEST_SEED)
    reversal = [p for p in preference_data()[1] if p.example.task == "reverse"]
    reward = _remembered(reward_model.reward_function(tokenizer))
    results = {
        "sft": policy_scores(sft, sft, tokenizer, examples, reward),
        "ppo": policy_scores(ppo.model, sft, tokenizer, examples, reward),
        "ppo_seconds": ppo.seconds,
        "dpo": {},
    }
    for beta, run in dpo.items():
        scores = policy_scores(run.model, sft, tokenizer, examples, reward)
        scores["shift"] = logprob_shift(run.model, sft, tokenizer, reversal)
        scores["losses"] = run.losses
        scores["val_loss"] = run.log[-1]["val_loss"]
        scores["seconds"] = run.seconds
        results["dpo"][str(beta)] = scores
    return results


@functools.cache
def direct_alignment_results() -> dict:
    """The SFT model, the DPO runs (:func:`dpo_run` for every β of ``DPO_BETAS``) and the
    PPO run (:func:`ppo_run`), each measured by :func:`policy_scores` on the ``N_TEST`` test
    prompts; the DPO runs also by :func:`logprob_shift` on the held-out preference pairs, with
    their per-update losses, final validation loss and training time.

    Returns ``{"sft": scores, "ppo": scores, "ppo_seconds": s, "dpo": {str(β): scores}}``.
    Trains the runs that are not cached; the measurements are computed once and kept on
    disk, keyed by the weights of every model, the settings and the code."""
    sft, tokenizer = sft_model()
    reward_model = cached_reward_model().model
    dpo = {beta: dpo_run(beta) for beta in DPO_BETAS}
    ppo = ppo_run()
    models = [sft, reward_model, ppo.model, *(run.model for run in dpo.values())]
    settings = [N_TEST, TEST_SEED, MAX_NEW_TOKENS, KL_SEED, list(DPO_BETAS)]
    key = cache_key(settings, weights_digest(*models), sources=_SOURCES)

    def measure() -> dict:
        with one_torch_thread():
            return _measure(sft, tokenizer, reward_model, dpo, ppo)

    return cached_json("direct-alignment", key, measure)


# -- the demo ---------------------------------------------------------------------------------

_BINS = np.linspace(-12, 2, 29)  # Δ ln π, in half-nat bins; the outer bins take the tails


def _histogram(values) -> np.ndarray:
    return np.histogram(np.clip(values, _BINS[0], _BINS[-1]), _BINS)[0]


def _nearest(value: float) -> float:
    return min(DPO_BETAS, key=lambda b: abs(np.log(b) - np.log(value)))


def _compute(*, beta, results):
    b = _nearest(beta)
    run = results["dpo"][str(b)]
    tasks = run["shift"]["tasks"]
    rows = [i for i, t in enumerate(tasks) if t == "reverse"]
    return {
        "beta": b,
        "right": _histogram([run["shift"]["right"][i] for i in rows]),
        "wrong": _histogram([run["shift"]["wrong"][i] for i in rows]),
        "n_pairs": len(rows),
        "right_mean": float(np.mean([run["shift"]["right"][i] for i in rows])),
        "wrong_mean": float(np.mean([run["shift"]["wrong"][i] for i in rows])),
        "kl": run["kl"],
        "reverse": run["by_task"]["reverse"],
        "exact_match": run["exact_match"],
    }


def _draw(fig, result, *, results, **values):
    ax_shift, ax_trade = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    centres = (_BINS[:-1] + _BINS[1:]) / 2
    width = _BINS[1] - _BINS[0]
    right = ax_shift.bar(
        centres, np.zeros(len(centres)), width, color="C2", alpha=0.6, label="right answer"
    )
    wrong = ax_shift.bar(
        centres, np.zeros(len(centres)), width, color="C3", alpha=0.6, label="near miss"
    )
    ax_shift.axvline(0, color="k", lw=0.8)
    top = max(
        max(_histogram(r["shift"][side]).max() for side in ("right", "wrong"))
        for r in results["dpo"].values()
    )
    ax_shift.set_ylim(0, 1.1 * top)
    ax_shift.set_xlabel("Δ ln π(answer | prompt) after DPO, from the SFT model")
    ax_shift.set_ylabel("held-out reversal pairs")
    ax_shift.legend(loc="upper left", fontsize=8, frameon=False)
    mean_right = ax_shift.axvline(0, color="C2", ls="--", lw=1)
    mean_wrong = ax_shift.axvline(0, color="C3", ls="--", lw=1)

    points = [("SFT", results["sft"], "k", "o"), ("PPO", results["ppo"], "C0", "s")]
    for name, s, colour, marker in points:
        ax_trade.plot(s["kl"], s["by_task"]["reverse"], marker, color=colour, ms=7)
        ax_trade.annotate(
            name,
            (s["kl"], s["by_task"]["reverse"]),
            xytext=(5, 4),
            textcoords="offset points",
            fontsize=8,
        )
    dpo = [results["dpo"][str(b)] for b in DPO_BETAS]
    kls, accs = [s["kl"] for s in dpo], [s["by_task"]["reverse"] for s in dpo]
    ax_trade.plot(kls, accs, "o:", color="C1", ms=5, alpha=0.5)
    for b, x, y in zip(DPO_BETAS, kls, accs, strict=True):
        ax_trade.annotate(
            f"β={b:g}", (x, y), xytext=(5, -10), textcoords="offset points", fontsize=7, color="C1"
        )
    (current,) = ax_trade.plot([0], [0], "o", color="C1", ms=11, mfc="none", mew=2)
    every_kl = [s["kl"] for _, s, _, _ in points] + kls
    every_acc = [s["by_task"]["reverse"] for _, s, _, _ in points] + accs
    ax_trade.set_xlim(min(0, min(every_kl)) - 0.02, 1.25 * max(every_kl) + 0.02)
    ax_trade.set_ylim(min(every_acc) - 0.08, max(every_acc) + 0.08)
    ax_trade.set_xlabel("KL from the SFT model (nats per answer)")
    ax_trade.set_ylabel(f"greedy exact match, reversal ({N_TEST // 4} prompts)")
    ax_trade.grid(alpha=0.3)
    title = fig.suptitle("", fontsize=10)

    def update(result, **values):
        for bars, counts in ((right, result["right"]), (wrong, result["wrong"])):
            for bar, c in zip(bars, counts, strict=True):
                bar.set_height(c)
        mean_right.set_xdata([result["right_mean"]] * 2)
        mean_wrong.set_xdata([result["wrong_mean"]] * 2)
        current.set_data([result["kl"]], [result["reverse"]])
        title.set_text(
            f"DPO, β = {result['beta']:g}: mean Δ ln π {result['right_mean']:.2f} (right), "
            f"{result['wrong_mean']:.2f} (near miss); KL {result['kl']:.3f}; reversal "
            f"{100 * result['reverse']:.0f}%, all tasks {100 * result['exact_match']:.0f}%"
        )

    update(result, **values)
    return update


@demo_factory
def dpo_beta_demo() -> Demo:
    """DPO's β on the book's model: how far the DPO run of each β moved the log-probability
    of the right answer and of the near miss of the held-out reversal pairs (histograms),
    and where the run lands in KL from the SFT model and reversal accuracy, next to the SFT
    model and PPO. Every run is trained (or loaded) when the demo is made."""
    results = direct_alignment_results()
    return Demo(
        _compute,
        _draw,
        [
            # Steps of a factor 5 (log10 5 on the log slider): only the runs' values.
            Slider(
                "beta",
                DPO_BETAS[0],
                DPO_BETAS[-1],
                0.1,
                step=float(np.log10(5)),
                scale="log",
                label="DPO's β",
            ),
        ],
        fixed={"results": results},
        figsize=(10.0, 3.8),
        alt=(
            "Left: histograms, over the held-out preference pairs of the reversal task, of "
            "the change that DPO made to the log-probability of the right answer (green) and "
            "of the near miss (red), with dashed lines at their means. Right: greedy exact "
            "match on reversal against the KL divergence from the SFT model, for the SFT "
            "model, PPO and the DPO runs of the three values of β, the chosen one circled. "
            "The slider chooses β (0.02, 0.1 or 0.5)."
        ),
        static_points=3,
        static_note="each position is a DPO run, and the grid holds all three",
    )
