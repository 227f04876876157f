"""Demo of the chapter on preferences and reward models: best-of-n sampling against the
learned reward model, measured with the learned (proxy) and the gold reward as n grows.

The sweep (:func:`overoptimisation`) samples once and is kept on disk, so that the chapter,
its tests and the static page's worker processes all read the same numbers."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from ..._checks import check_real
from ..._threads import one_torch_thread
from ...posttraining import (
    best_of_n,
    cached_reward_model,
    check_answer,
    expected_best_of_n,
    make_examples,
    sft_model,
)
from ...pretraining.cached_models import cache_key, cached_json, weights_digest
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, freeze_on_top, moving_title

__all__ = ["overoptimisation", "reward_overoptimisation_demo"]

N_PROMPTS = 64  # test prompts, the four tasks in turn
N_MAX = 32  # answers sampled per prompt: best-of-n for every n up to N_MAX
TEMPERATURE = 2.0  # at 1 the SFT model repeats a few answers: best-of-n has little to pick from
MAX_NEW_TOKENS = 10  # the longest answer (5 letters) and <|end|> fit with room to spare
PROMPT_SEED = 2  # make_examples("test", N_PROMPTS, seed=PROMPT_SEED)
SAMPLE_SEED = 0
SHOWN = 8  # prompts whose chosen answers the demo lists

_HERE = Path(__file__).resolve().parent
_SOURCES = [
    _HERE / "reward_models.py",
    *(
        _HERE.parents[1] / "posttraining" / name
        for name in (
            "chat.py",
            "decoding.py",
            "direct_alignment.py",
            "preference_data.py",
            "reward_model.py",
            "rl.py",
            "task_world.py",
        )
    ),
    _HERE.parents[1] / "pretraining" / "gpt.py",
]


def _distinct(reward):
    """``reward`` scoring each distinct (prompt, answer) once: a policy's samples repeat."""

    def scored(examples, answers):
        keys = [(e.prompt, a) for e, a in zip(examples, answers, strict=True)]
        position, rows = {}, []  # each distinct key's row among the distinct ones
        for i, key in enumerate(keys):
            if key not in position:
                position[key] = len(rows)
                rows.append(i)
        r = reward([examples[i] for i in rows], [answers[i] for i in rows])
        return r[[position[key] for key in keys]]

    return scored


def _length(answer: str | None) -> int:
    """Tokens of an answer (one per byte here); an unfinished one counts the whole budget."""
    return MAX_NEW_TOKENS if answer is None else len(answer.encode())


def _sweep(temperature: float) -> dict:
    sft, tokenizer = sft_model()
    reward_model = cached_reward_model().model
    examples = make_examples("test", N_PROMPTS, seed=PROMPT_SEED)
    seen = {}

    def proxy(exs, answers):  # the learned reward, keeping what it scored
        seen["answers"] = list(answers)
        seen["scores"] = _distinct(reward_model.reward_function(tokenizer))(exs, answers)
        return seen["scores"]

    n_values = list(range(1, N_MAX + 1))
    curves = best_of_n(
        sft, tokenizer, examples, proxy, n_values,
        temperature=temperature, max_new_tokens=MAX_NEW_TOKENS, seed=SAMPLE_SEED,
    )  # fmt: skip
    answers = [seen["answers"][i * N_MAX : (i + 1) * N_MAX] for i in range(N_PROMPTS)]
    scores = seen["scores"].double().reshape(N_PROMPTS, N_MAX)
    lengths = torch.tensor([[_length(a) for a in group] for group in answers], dtype=torch.float64)
    # The expected length of the best-of-n answer, by the same estimator as the rewards.
    curves["length"] = [
        sum(expected_best_of_n(scores[i], lengths[i], n)[1] for i in range(N_PROMPTS)) / N_PROMPTS
        for n in n_values
    ]
    # One concrete draw per shown prompt: the best of its first n samples.
    chosen = [
        [group[int(s[:n].argmax())] for n in n_values]
        for group, s in zip(answers, scores, strict=True)
    ]
    curves["prompts"] = [e.prompt for e in examples[:SHOWN]]
    curves["chosen"] = chosen[:SHOWN]
    curves["chosen_right"] = [
        [check_answer(e, a) for a in row]
        for e, row in zip(examples[:SHOWN], chosen[:SHOWN], strict=True)
    ]
    curves["distinct"] = sum(len(set(group)) for group in answers) / N_PROMPTS
    curves["answers"], curves["scores"] = answers, scores.tolist()
    curves["unfinished"] = sum(a is None for group in answers for a in group) / (N_PROMPTS * N_MAX)
    return curves


@functools.cache
def overoptimisation(temperature: float = TEMPERATURE) -> dict:
    """Best-of-n sampling from the SFT model against the learned reward model, n = 1 ...
    ``N_MAX``: for ``N_PROMPTS`` test prompts, ``N_MAX`` answers sampled at ``temperature``,
    scored by the reward model (the proxy) and by the checker (the gold reward), and the
    expected proxy reward, gold reward and answer length (tokens) of the best of n, by
    :func:`llmtrain.posttraining.best_of_n`.

    Returns a dict of lists indexed by n - 1 (``"n"``, ``"kl"``, ``"proxy"``, ``"gold"``,
    ``"length"``), the answers best-of-n picks for the first ``SHOWN`` prompts at each n
    (``"prompts"``, ``"chosen"``, ``"chosen_right"``) and the mean number of distinct
    answers per prompt (``"distinct"``), the fraction of unfinished ones
    (``"unfinished"``), and every sampled answer and its proxy reward, one list per prompt
    (``"answers"``, ``"scores"``). Computed once and cached on disk, keyed by the weights of
    both models, the settings and the code.
    """
    sft, _ = sft_model()
    temperature = check_real("temperature", temperature, 0.0, low_open=True)
    settings = [N_PROMPTS, N_MAX, temperature, MAX_NEW_TOKENS, PROMPT_SEED, SAMPLE_SEED, SHOWN]
    digest = weights_digest(sft, cached_reward_model().model)

    def sweep() -> dict:
        with one_torch_thread():
            return _sweep(temperature)

    return cached_json("best-of-n", cache_key(settings, digest, sources=_SOURCES), sweep)


def _compute(*, n: int, sweep: dict) -> dict:
    i = n - 1
    return {
        "n": n,
        **{k: sweep[k][i] for k in ("kl", "proxy", "gold", "length")},
        "chosen": [row[i] for row in sweep["chosen"]],
        "chosen_right": [row[i] for row in sweep["chosen_right"]],
    }


def _shown(answer: str | None) -> str:
    # Bytes that are not text decode to U+FFFD, which the font lacks.
    return "(no <|end|>)" if answer is None else repr(answer.replace("\ufffd", "?"))


def _draw(fig, result, *, sweep: dict, **values):
    curves, words = fig.subplots(1, 2, width_ratios=(1.25, 1))
    proxy_ax = curves.twinx()
    proxy_ax.patch.set_facecolor("none")  # the frozen background shows its patch: see through
    kl = sweep["kl"]
    (gold_line,) = curves.plot(kl, sweep["gold"], "-", color="C2", label="gold: exact match")
    (proxy_line,) = proxy_ax.plot(kl, sweep["proxy"], "-", color="C0", label="proxy: reward model")
    marker = curves.axvline(0, color="0.4", lw=1, ls="--")
    (gold_dot,) = curves.plot([], [], "o", color="C2", ms=7)
    (proxy_dot,) = proxy_ax.plot([], [], "o", color="C0", ms=7)
    curves.set_xlabel("KL of best-of-n from the SFT model, ln n - (n-1)/n (nats)")
    curves.set_ylabel("gold reward (exact match)", color="C2")
    proxy_ax.set_ylabel("proxy reward (reward model)", color="C0")
    curves.set_ylim(0, 1)
    low, high = min(sweep["proxy"]), max(sweep["proxy"])
    proxy_ax.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
    curves.grid(alpha=0.3)
    legend = curves.legend(
        handles=[gold_line, proxy_line], loc="lower left", fontsize=8, frameon=False
    )
    title = moving_title(curves)
    words.set_axis_off()
    words.set_xlim(0, 1)
    words.set_ylim(len(sweep["prompts"]) + 0.5, -1.2)
    header = words.text(0, -0.9, "", fontsize=9, va="center")
    rows = []
    for j, prompt in enumerate(sweep["prompts"]):
        words.text(0, j, prompt, fontsize=8, va="center")
        rows.append(words.text(0.72, j, "", fontsize=8, va="center", family="monospace"))

    # Only the marker and the texts move: the rest is one frozen image after the first move.
    background = FrozenBackground(fig, [curves, proxy_ax, words])
    moving = [marker, gold_dot, proxy_dot, title, header, *rows]

    def update(result, **values):
        if background.image is None and first_done:
            background.capture([*moving, legend])
            freeze_on_top(fig, [legend])
        x = result["kl"]
        marker.set_xdata([x, x])
        gold_dot.set_data([x], [result["gold"]])
        proxy_dot.set_data([x], [result["proxy"]])
        title.set_text(
            f"best of n = {result['n']}: gold {result['gold']:.2f}, proxy {result['proxy']:.2f}"
        )
        header.set_text(
            f"answers best-of-{result['n']} picks (mean length {result['length']:.2f} tokens)"
        )
        for text, answer, right in zip(rows, result["chosen"], result["chosen_right"], strict=True):
            text.set_text(_shown(answer))
            text.set_color("C2" if right else "C3")

    first_done = False
    update(result, **values)
    first_done = True
    return update


@demo_factory
def reward_overoptimisation_demo() -> Demo:
    """Reward over-optimisation measured on the book's models (:func:`overoptimisation`):
    the proxy (reward model) and gold (checker) rewards of best-of-n sampling from the SFT
    model against the KL of best-of-n, a marker at the slider's n, and the answers best-of-n
    picks for a few test prompts at that n."""
    sweep = overoptimisation()
    return Demo(
        _compute,
        _draw,
        [Slider("n", 1, N_MAX, 8, integer=True, label="best of n")],
        fixed={"sweep": sweep},
        figsize=(9.5, 3.8),
        alt=(
            "Left: the gold reward (exact match, green) and the learned reward model's proxy "
            f"reward (blue, right axis) of best-of-n sampling from the fine-tuned model at "
            f"temperature {TEMPERATURE:g} on {N_PROMPTS} test prompts, against the KL of "
            "best-of-n from the model, ln n - (n-1)/n; the proxy rises with n while the gold "
            "reward peaks at small n and then falls; a dashed line and dots mark the slider's n. "
            f"Right: for {SHOWN} test prompts, the answer best-of-n picks among the first n "
            "samples, green when right and red when wrong, and the expected answer length. "
            "The slider sets n."
        ),
    )
