"""Demo of the chapter on generation: temperature, top-k and top-p on a trained model."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
import torch

from ..._threads import one_torch_thread
from ...pretraining import GPT, sampling_distribution
from ..demo import Demo, Slider, demo_factory
from ..plots import moving_title

__all__ = ["sampling_demo"]

#: The prompt the demo continues, and how much it shows.
PROMPT = "Return the number of "
SHOWN = 20  # bars: the most probable next tokens
NEW_TOKENS = 60


@dataclass(frozen=True)
class _Prompt:
    """A model, its tokenizer, a prompt and the prompt's next-token logits, computed once."""

    model: GPT
    tokenizer: object
    ids: torch.Tensor  # (1, n)
    logits: torch.Tensor  # (V,), float64
    order: np.ndarray  # the SHOWN most probable tokens at τ = 1, most probable first
    labels: tuple[str, ...]


def _prepare(model, tokenizer, prompt: str) -> _Prompt:
    ids = torch.tensor([tokenizer.encode(prompt)])
    with torch.no_grad(), one_torch_thread():
        logits = model.eval()(ids)[0][0, -1].double()
    order = torch.argsort(logits, descending=True, stable=True)[:SHOWN].numpy()
    labels = tuple(_visible(tokenizer.decode([int(i)])) for i in order)
    return _Prompt(model, tokenizer, ids, logits, order, labels)


def _visible(text: str, spaces: bool = True) -> str:
    """Whitespace made visible: a bar labelled " " would show nothing."""
    text = text.replace("\n", "↵").replace("\t", "⇥")
    return text.replace(" ", "␣") if spaces else text


def sampling(*, temperature: float, top_k: int, top_p: float, state: _Prompt):
    """The next-token distribution after the prompt, before and after the filters, and a
    continuation sampled with them (seed 0)."""
    before = sampling_distribution(state.logits, temperature=temperature)
    after = sampling_distribution(state.logits, temperature=temperature, top_k=top_k, top_p=top_p)
    kept = after > 0
    with one_torch_thread():
        out = state.model.generate(
            state.ids,
            NEW_TOKENS,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=torch.Generator().manual_seed(0),
        )
    text = state.tokenizer.decode(out[0, state.ids.shape[1] :].tolist())
    return {
        "before": before.numpy()[state.order],
        "after": after.numpy()[state.order],
        "n_kept": int(kept.sum()),
        "kept_mass": float(before[kept].sum()),
        "continuation": text,
    }


def _draw(fig, result, *, state, **params):
    ax, text_ax = fig.subplots(2, 1, height_ratios=(3.2, 1))
    x = np.arange(SHOWN)
    before = ax.bar(x, result["before"], color="#d5d8dc", width=0.8, label="softmax(z / τ)")
    after = ax.bar(x, result["after"], color="#2e86c1", width=0.45, label="sampled from")
    ax.set_xticks(x, state.labels, fontsize=10)
    ax.set_xlim(-0.6, SHOWN - 0.4)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    title = moving_title(ax)
    text_ax.axis("off")
    prompt = state.tokenizer.decode(state.ids[0].tolist())
    text = text_ax.text(0, 1, "", va="top", ha="left", family="monospace", fontsize=9)

    def update(result, **params):
        for bar, h in zip(before, result["before"], strict=True):
            bar.set_height(h)
        for bar, h in zip(after, result["after"], strict=True):
            bar.set_height(h)
        V = state.logits.numel()
        title.set_text(
            f"next token after {prompt!r}: sampling from {result['n_kept']} of {V} tokens, "
            f"{result['kept_mass']:.0%} of the mass"
        )
        sample = _visible(prompt + "|" + result["continuation"], spaces=False)
        text.set_text("\n".join(textwrap.wrap(sample, 95)[:3]))

    update(result, **params)
    return update


@demo_factory
def sampling_demo(model: GPT | None = None, tokenizer=None, prompt: str = PROMPT):
    """The next-token distribution of a trained model after ``prompt`` under temperature,
    top-k and top-p, and a continuation sampled with them. Without a model, the book's small
    trained character-level model (:func:`llmtrain.pretraining.demo_model`)."""
    if model is None:
        from ...pretraining.cached_models import demo_model

        model, tokenizer = demo_model()
    state = _prepare(model, tokenizer, prompt)
    V = state.logits.numel()
    return Demo(
        sampling,
        _draw,
        [
            Slider("temperature", 0.0, 2.0, 1.0, label="temperature τ"),
            Slider("top_k", 1, V, V, integer=True, label="top-k"),
            Slider("top_p", 0.05, 1.0, 1.0, label="top-p"),
        ],
        fixed={"state": state},
        figsize=(9.0, 4.2),
        alt=(
            "Bars of a trained character model's probabilities for its 20 most likely next "
            "characters after a prompt: after the temperature (wide, grey) and what is sampled "
            "from after top-k and top-p (narrow, blue); below, a continuation sampled with these "
            "settings. The sliders set the temperature τ, top-k and top-p."
        ),
        static_points=5,
        static_note="each position samples a continuation from the model",
    )
