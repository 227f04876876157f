"""Demos of the chapter on denoising objectives: T5's span corruption and BART's infilling."""

from __future__ import annotations

from ...objectives import noise_span_counts, span_corruption, text_infilling
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground
from ..token_text import PASSAGE, TokenText, WordVocab

__all__ = ["span_corruption_demo", "text_infilling_demo"]

_WORDS = WordVocab(specials=())
_IDS = _WORDS.encode(PASSAGE)
_N = len(_IDS)
_SENTINELS = 100
_V = len(_WORDS) + _SENTINELS  # T5 puts its sentinels at the top of the vocabulary


def _name(i: int) -> str:
    return f"<X{_V - 1 - i}>" if i >= len(_WORDS) else _WORDS.token(i)


def _corrupt(noise_density, mean_span_length, seed):
    inputs, targets = span_corruption(
        _IDS,
        vocab_size=_V,
        noise_density=noise_density,
        mean_span_length=mean_span_length,
        num_sentinels=_SENTINELS,
        generator=seed,
    )
    counts = noise_span_counts(_N, noise_density, mean_span_length)
    return inputs.tolist(), targets.tolist(), counts


def _kinds(ids, other):
    return ["sentinel" if i >= len(_WORDS) else other for i in ids]


def _title(fig, y, text):
    return fig.text(0.02, y, text, fontsize=10, va="top", weight="bold")


def _freezer(fig, ax, titles, dynamic):
    """Render the titles once into a background image, at the first slider move (after the
    layout is final); returns the function to call at the start of every update."""
    background = FrozenBackground(fig, [ax], extra=titles)
    state = {"first": True}

    def freeze():
        if state["first"]:
            state["first"] = False
        elif background.image is None:
            background.capture(dynamic)

    return freeze


def _draw_spans(fig, result, **params):
    ax = fig.subplots()
    ax.set_axis_off()  # gives the layout engine an axes to lay out
    titles = [_title(fig, 0.97, "input to the encoder: each dropped span is one sentinel")]
    top = TokenText(fig, 2 * _N, x0=0.02, y0=0.88, x1=0.98, columns=90, line_height=0.075)
    titles.append(
        _title(fig, 0.52, "target for the decoder: each sentinel, then the span it replaced")
    )
    bottom = TokenText(fig, 2 * _N, x0=0.02, y0=0.43, x1=0.98, columns=90, line_height=0.075)
    footer = fig.text(0.02, 0.06, "", fontsize=9, va="top")
    freeze = _freezer(fig, ax, titles, [*top.artists, *bottom.artists, footer])

    def update(result, *, noise_density, mean_span_length, seed):
        freeze()
        inputs, targets, (n_noise, n_span) = result
        top.update([_name(i) for i in inputs], _kinds(inputs, "plain"))
        bottom.update([_name(i) for i in targets], _kinds(targets, "noise"))
        footer.set_text(
            f"n = {_N} tokens, r = {noise_density:.2f}, s̄ = {mean_span_length:.1f}: "
            f"{n_noise} noise tokens in {n_span} spans; input {len(inputs)} tokens, "
            f"target {len(targets)} tokens"
        )

    update(result, **params)
    return update


@demo_factory
def span_corruption_demo() -> Demo:
    """T5's span corruption (:func:`llmtrain.objectives.span_corruption`) of a short
    passage, with sliders for the noise density r, the mean span length s̄ and the seed."""
    return Demo(
        _corrupt,
        _draw_spans,
        [
            Slider("noise_density", 0.0, 0.6, 0.15, step=0.01, label="noise density r"),
            Slider("mean_span_length", 1.0, 10.0, 3.0, step=0.5, label="mean span length s̄"),
            Slider("seed", 0, 50, 0, integer=True, label="seed"),
        ],
        figsize=(9.0, 3.6),
        alt=(
            "Two blocks of word tokens from a short passage: the encoder's input, each dropped "
            "span replaced by one sentinel token, and the decoder's target, each sentinel "
            "followed by the words it replaced, with the counts below. The sliders set the noise "
            "density r, the mean span length and the random seed."
        ),
    )


_MASK = len(_WORDS)  # one extra id for BART's mask token


def _infill(mask_ratio, span_rate, seed):
    out = text_infilling(
        _IDS, mask_id=_MASK, mask_ratio=mask_ratio, span_rate=span_rate, generator=seed
    )
    return out


def _draw_infill(fig, result, **params):
    ax = fig.subplots()
    ax.set_axis_off()
    titles = [_title(fig, 0.97, "original document: the spans that will be replaced")]
    top = TokenText(fig, _N, x0=0.02, y0=0.88, x1=0.98, columns=90, line_height=0.075)
    titles.append(
        _title(fig, 0.52, "corrupted input: one [MASK] per span (violet: a span of length 0)")
    )
    bottom = TokenText(fig, 2 * _N, x0=0.02, y0=0.43, x1=0.98, columns=90, line_height=0.075)
    footer = fig.text(0.02, 0.06, "", fontsize=9, va="top")
    freeze = _freezer(fig, ax, titles, [*top.artists, *bottom.artists, footer])

    def update(out, *, mask_ratio, span_rate, seed):
        freeze()
        covered = ["plain"] * _N
        for a, w in zip(out.starts.tolist(), out.lengths.tolist(), strict=True):
            covered[a : a + w] = ["noise"] * w
        top.update([_WORDS.token(int(i)) for i in _IDS], covered)
        lengths = iter(out.lengths.tolist())
        tokens, kinds = [], []
        for i in out.ids.tolist():
            if i == _MASK:
                tokens.append("[MASK]")
                kinds.append("insert" if next(lengths) == 0 else "mask")
            else:
                tokens.append(_WORDS.token(i))
                kinds.append("plain")
        bottom.update(tokens, kinds)
        w = out.lengths.tolist()
        footer.set_text(
            f"{sum(w)} of {_N} tokens in {len(w)} spans, lengths drawn from Poisson(w̄ = "
            f"{span_rate:.1f}): {', '.join(map(str, w[:18]))}{' ...' if len(w) > 18 else ''}"
        )

    update(result, **params)
    return update


@demo_factory
def text_infilling_demo() -> Demo:
    """BART's text infilling (:func:`llmtrain.objectives.text_infilling`) of a short
    passage, with sliders for the fraction r of tokens covered, the Poisson mean w̄ of the
    span lengths, and the seed."""
    return Demo(
        _infill,
        _draw_infill,
        [
            Slider("mask_ratio", 0.0, 0.6, 0.3, step=0.01, label="fraction covered r"),
            Slider("span_rate", 0.5, 8.0, 3.0, step=0.5, label="mean span length w̄"),
            Slider("seed", 0, 50, 0, integer=True, label="seed"),
        ],
        figsize=(9.0, 3.6),
        alt=(
            "Two blocks of word tokens: the original passage with the spans to be replaced "
            "highlighted, and the corrupted input with one [MASK] per span (violet for a span of "
            "length 0, an insertion), with the span lengths below. The sliders set the fraction "
            "of tokens covered, the mean span length and the random seed."
        ),
    )
