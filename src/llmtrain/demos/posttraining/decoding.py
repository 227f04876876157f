"""Demo of the chapter on decoding: accuracy and diversity of sampling and beam search on the
checkable task."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..._threads import one_torch_thread
from ...posttraining.chat import encode_chat
from ...posttraining.decoding import accuracy_and_diversity, decode_answers
from ...posttraining.task_world import make_examples
from ..demo import Demo, Slider, demo_factory

__all__ = ["decoding_demo"]

N_PROMPTS = 24  # test prompts, the tasks in turn
N_SAMPLES = 8  # answers sampled per prompt
MAX_NEW_TOKENS = 8  # the longest answer (6 letters) and its end marker fit
SHOWN = 6  # answers to the first prompt shown as bars


@dataclass
class _Task:
    """The model, the test prompts and their answers, and the decoded answers so far (the
    figure depends on the slider values only, so each setting is decoded once)."""

    model: object
    tokenizer: object
    prompts: list
    targets: list
    stop_id: int
    question: str
    answer: str
    sampled: dict = field(default_factory=dict)
    beams: dict = field(default_factory=dict)


def _task(model, tokenizer) -> _Task:
    examples = make_examples("test", N_PROMPTS, seed=1)
    prompts = [encode_chat(tokenizer, ex.prompt)[0] for ex in examples]
    targets = [tokenizer.encode_ordinary(ex.response) for ex in examples]
    stop_id = tokenizer.special_tokens["<|end|>"]
    return _Task(
        model, tokenizer, prompts, targets, stop_id, examples[0].prompt, examples[0].response
    )


def decoding(
    *, temperature: float, top_k: int, top_p: float, min_p: float, beam_width: int, state: _Task
):
    """Exact match and distinct answers per prompt of sampling (``N_SAMPLES`` answers to each
    of ``N_PROMPTS`` test prompts) and of beam search, and the sampled answers to the first
    prompt."""
    key = (temperature, top_k, top_p, min_p)
    with one_torch_thread():
        if key not in state.sampled:
            sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
            state.sampled[key] = decode_answers(
                state.model, state.prompts, MAX_NEW_TOKENS, n_samples=N_SAMPLES,
                stop_id=state.stop_id, **sampling,
            )  # fmt: skip
        if beam_width not in state.beams:
            state.beams[beam_width] = decode_answers(
                state.model, state.prompts, MAX_NEW_TOKENS, stop_id=state.stop_id,
                beam_width=beam_width,
            )  # fmt: skip
        if 1 not in state.beams:  # beam width 1 is greedy decoding: the reference point
            state.beams[1] = decode_answers(
                state.model, state.prompts, MAX_NEW_TOKENS, stop_id=state.stop_id, beam_width=1
            )
    sampled, beams = state.sampled[key], state.beams[beam_width]
    accuracy, distinct = accuracy_and_diversity(sampled, state.targets)
    beam_accuracy, _ = accuracy_and_diversity(beams, state.targets)
    counts = Counter(state.tokenizer.decode(list(a)) for a in sampled[0]).most_common()
    return {
        "accuracy": accuracy,
        "distinct": distinct,
        "beam_accuracy": beam_accuracy,
        "greedy_accuracy": accuracy_and_diversity(state.beams[1], state.targets)[0],
        "first_answers": counts,
    }


def _draw(fig, result, *, state: _Task, beam_width, **params):
    plane, bars = fig.subplots(1, 2, width_ratios=(1.1, 1))
    plane.scatter(
        [result["distinct"]], [result["accuracy"]], s=90, color="#2e86c1", zorder=3,
        label=f"sampling, {N_SAMPLES} answers per prompt",
    )  # fmt: skip
    plane.scatter(
        [1], [result["beam_accuracy"]], s=90, marker="s", color="#c0392b", zorder=3,
        label=f"beam search, width {beam_width}",
    )  # fmt: skip
    plane.axhline(result["greedy_accuracy"], color="#7f8c8d", lw=1, ls="--", label="greedy")
    plane.set_xlim(0.7, N_SAMPLES + 0.3)
    plane.set_ylim(-0.03, 1.03)
    plane.set_xlabel("distinct answers per prompt")
    plane.set_ylabel("exact match")
    plane.grid(alpha=0.3)
    plane.legend(loc="lower left", fontsize=8, frameon=False)
    plane.set_title(
        f"exact match {result['accuracy']:.0%} (sampling), {result['beam_accuracy']:.0%} (beam)",
        fontsize=10,
    )
    answers = result["first_answers"][:SHOWN]
    # Bytes that are not text decode to U+FFFD, which the font lacks.
    labels = [repr(a[:10].replace("\ufffd", "?")) for a, _ in answers]
    colours = ["#27ae60" if a == state.answer else "#95a5a6" for a, _ in answers]
    bars.barh(np.arange(len(answers)), [c for _, c in answers], color=colours)
    bars.set_yticks(np.arange(len(answers)), labels, fontsize=9, family="monospace")
    bars.invert_yaxis()
    bars.set_xlim(0, N_SAMPLES)
    bars.set_xlabel(f"times sampled (of {N_SAMPLES}); green: correct")
    bars.set_title(f"{state.question!r}", fontsize=10)


@demo_factory
def decoding_demo(model=None, tokenizer=None):
    """Exact match against distinct answers per prompt on test prompts of the task world, for
    sampling with temperature, top-k, top-p and min-p and for beam search, and the answers
    sampled for one prompt. Without a model, the book's fine-tuned model
    (:func:`llmtrain.posttraining.sft_model`)."""
    if model is None:
        from ...posttraining import sft_model

        model, tokenizer = sft_model()
    return Demo(
        decoding,
        _draw,
        [
            Slider("temperature", 0.0, 3.0, 1.5, label="temperature τ"),
            Slider("top_k", 1, 50, 50, integer=True, label="top-k"),
            Slider("top_p", 0.05, 1.0, 1.0, label="top-p"),
            Slider("min_p", 0.0, 0.3, 0.0, label="min-p"),
            Slider("beam_width", 1, 8, 1, integer=True, label="beam width"),
        ],
        fixed={"state": _task(model, tokenizer)},
        figsize=(9.0, 3.8),
        alt=(
            f"Left: the exact match of the fine-tuned model on {N_PROMPTS} test prompts of the "
            f"task world against the mean number of distinct answers among {N_SAMPLES} "
            "samples per prompt, for sampling (blue circle) and for beam search (red square), with "
            "greedy decoding's exact match as a dashed line. "
            "Right: how often each answer was sampled for the first prompt, the correct one in "
            "green. The sliders set the temperature, top-k, top-p, min-p and the beam width."
        ),
        static_points=3,
        static_main=("temperature", "top_p", "min_p"),
        static_note="each position decodes the test prompts with the model",
    )
