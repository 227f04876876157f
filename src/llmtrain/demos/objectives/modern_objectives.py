"""Demos of the chapter on modern objectives: fill-in-the-middle and UL2's denoisers."""

from __future__ import annotations

from ...objectives import UL2_DENOISERS, fim_format, ul2_denoise
from ..demo import Demo, Slider, demo_factory
from ..token_text import PASSAGE, TokenText, WordVocab
from .denoising import _freezer, _title

__all__ = ["fim_demo", "ul2_demo"]

# -- fill-in-the-middle ----------------------------------------------------------------------

_SENTENCE = PASSAGE.split(" . ")[0] + " ."
_FIM = WordVocab(_SENTENCE, specials=("<PRE>", "<SUF>", "<MID>"))
_FIM_IDS = _FIM.encode(_SENTENCE)
_FIM_N = len(_FIM_IDS)
_PRE, _SUF, _MID = (_FIM.id(t) for t in ("<PRE>", "<SUF>", "<MID>"))
_PART = {"prefix": "plain", "middle": "same", "suffix": "noise"}


def _fim(start, length):
    a, b = start, min(start + length, _FIM_N)
    out = {"cuts": (a, b)}
    for mode in ("psm", "spm"):
        out[mode] = fim_format(
            _FIM_IDS, a, b, mode=mode, prefix_id=_PRE, suffix_id=_SUF, middle_id=_MID
        ).tolist()
    return out


def _fim_kinds(ids, a, b, mode):
    """Colour each token of a FIM sequence by the part of the document it came from."""
    parts = ["prefix"] * a + ["middle"] * (b - a) + ["suffix"] * (_FIM_N - b)
    order = {"psm": [*parts[:a], *parts[b:], *parts[a:b]], "spm": [*parts[b:], *parts[:b]]}
    words = iter(order[mode])
    return ["sentinel" if i in (_PRE, _SUF, _MID) else _PART[next(words)] for i in ids]


def _draw_fim(fig, result, **params):
    ax = fig.subplots()
    ax.set_axis_off()
    rows, titles = [], []
    heads = [
        "document: prefix (white), middle (yellow), suffix (grey)",
        "PSM:  <PRE> prefix <SUF> suffix <MID> middle",
        "SPM:  <PRE> <SUF> suffix <MID> prefix middle",
    ]
    for k, head in enumerate(heads):
        titles.append(_title(fig, 0.97 - 0.31 * k, head))
        rows.append(
            TokenText(
                fig, _FIM_N + 3, x0=0.02, y0=0.87 - 0.31 * k, x1=0.98, columns=90, line_height=0.09
            )
        )
    dynamic = [a for row in rows for a in row.artists]
    freeze = _freezer(fig, ax, titles, dynamic)

    def update(result, **_):
        freeze()
        a, b = result["cuts"]
        parts = ["prefix"] * a + ["middle"] * (b - a) + ["suffix"] * (_FIM_N - b)
        rows[0].update([_FIM.token(int(i)) for i in _FIM_IDS], [_PART[p] for p in parts])
        for row, mode in zip(rows[1:], ("psm", "spm"), strict=True):
            ids = result[mode]
            row.update([_FIM.token(i) for i in ids], _fim_kinds(ids, a, b, mode))

    update(result, **params)
    return update


@demo_factory
def fim_demo() -> Demo:
    """A sentence cut into prefix, middle and suffix, rewritten in the PSM and SPM orders of
    :func:`llmtrain.objectives.fim_format`; sliders move the middle's start and length."""
    return Demo(
        _fim,
        _draw_fim,
        [
            Slider("start", 0, _FIM_N, 6, integer=True, label="middle starts at token"),
            Slider("length", 0, _FIM_N, 5, integer=True, label="middle length"),
        ],
        figsize=(9.0, 3.4),
        alt=(
            "Three blocks of word tokens: a sentence with its prefix, middle and suffix "
            "coloured, then the same sentence rearranged in the PSM and in the SPM order with "
            "the sentinels <PRE>, <SUF> and <MID>. The sliders set where the middle starts and "
            "its length."
        ),
    )


# -- UL2 -------------------------------------------------------------------------------------

_WORDS = WordVocab(specials=("[R]", "[S]", "[X]"))
_IDS = _WORDS.encode(PASSAGE)
_N = len(_IDS)
_SENTINELS = 100
_V = len(_WORDS) + _SENTINELS
_MODES = {m: _WORDS.id(f"[{m}]") for m in "RSX"}


def _name(i: int) -> str:
    return f"<X{_V - 1 - i}>" if i >= len(_WORDS) else _WORDS.token(i)


def _ul2(denoiser, seed):
    d = UL2_DENOISERS[denoiser]
    e = ul2_denoise(
        _IDS, d, vocab_size=_V, mode_ids=_MODES, num_sentinels=_SENTINELS, generator=seed
    )
    return {"denoiser": d, "inputs": e.inputs.tolist(), "targets": e.targets.tolist()}


def _ul2_kinds(ids, other):
    specials = set(_MODES.values())
    return ["sentinel" if i >= len(_WORDS) else "mask" if i in specials else other for i in ids]


def _draw_ul2(fig, result, **params):
    ax = fig.subplots()
    ax.set_axis_off()
    titles = [
        _title(fig, 0.97, "input: mode token, then the text with its spans removed"),
        _title(fig, 0.52, "target: the removed spans"),
    ]
    top = TokenText(fig, 2 * _N, x0=0.02, y0=0.88, x1=0.98, columns=90, line_height=0.075)
    bottom = TokenText(fig, 2 * _N, x0=0.02, y0=0.43, x1=0.98, columns=90, line_height=0.075)
    footer = fig.text(0.02, 0.06, "", fontsize=9, va="top")
    freeze = _freezer(fig, ax, titles, [*top.artists, *bottom.artists, footer])

    def update(result, **_):
        freeze()
        d, inputs, targets = result["denoiser"], result["inputs"], result["targets"]
        top.update([_name(i) for i in inputs], _ul2_kinds(inputs, "plain"))
        bottom.update([_name(i) for i in targets], _ul2_kinds(targets, "noise"))
        what = (
            "prefix LM: the last r of the text"
            if d.mode == "S"
            else f"mean span length μ = {d.mean_span_length}"
        )
        footer.set_text(
            f"{d.mode}-denoiser, corruption rate r = {d.noise_density:.2f}, {what}; "
            f"n = {_N}, input {len(inputs)} tokens, target {len(targets)} tokens"
        )

    update(result, **params)
    return update


@demo_factory
def ul2_demo() -> Demo:
    """One of UL2's seven denoisers (:func:`llmtrain.objectives.ul2_denoise`) applied to a
    passage; sliders choose the denoiser and the seed."""
    return Demo(
        _ul2,
        _draw_ul2,
        [
            Slider(
                "denoiser",
                0,
                len(UL2_DENOISERS) - 1,
                0,
                integer=True,
                label="denoiser (0-1 R, 2 S, 3-6 X)",
            ),
            Slider("seed", 0, 50, 0, integer=True, label="seed"),
        ],
        figsize=(9.0, 3.6),
        alt=(
            "Two blocks of word tokens from a passage: the input, a mode token then the text "
            "with spans cut out (each replaced by a sentinel), and the target, the cut spans, "
            "with the denoiser's settings below. The sliders pick one of UL2's seven denoisers "
            "and the random seed."
        ),
    )
