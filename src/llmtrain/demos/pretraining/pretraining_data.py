"""Demos and figures of the pretraining-data chapter."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from matplotlib.figure import Figure

from ...pretraining import (
    LLAMA1_MIXTURE,
    jaccard,
    lsh_candidate_pairs,
    lsh_probability,
    lsh_threshold,
    minhash_signatures,
    stdlib_documents,
    word_shingles,
)
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, moving_title

__all__ = ["edited_pairs", "llama1_mixture_figure", "minhash_bands_demo"]

NUM_PERM = 400  # enough for every slider setting: at most 40 bands of 10 rows


@dataclass(frozen=True)
class EditedPairs:
    """Pairs of real texts and their MinHash signatures: ``signatures[2i]`` and
    ``signatures[2i + 1]`` are a pair, with exact Jaccard similarity ``J[i]``."""

    J: np.ndarray
    signatures: np.ndarray


@cache
def edited_pairs(n_pairs: int = 300, seed: int = 0, num_perm: int = NUM_PERM) -> EditedPairs:
    """Pairs of real documents with similarities spread over [0, 1]: each of ``n_pairs``
    stdlib docstrings of at least 40 words, and a copy of it in which each word was replaced,
    with probability q, by a word from elsewhere in the corpus. A 5-word shingle survives
    with probability f = (1 - q)^5, and then J ≈ f / (2 - f); q is set so that this target
    is uniform on [0, 1]. The exact Jaccard similarity of the two shingle sets is computed
    with Python sets."""
    rng = np.random.default_rng(seed)
    texts = [d.text for d in stdlib_documents() if len(d.text.split()) >= 40]
    chosen = rng.choice(len(texts), size=min(n_pairs, len(texts)), replace=False)
    vocabulary = sorted({w for t in texts for w in t.split()})
    docs, J = [], []
    for i in chosen:
        words = texts[i].split()
        target = rng.uniform(0.0, 1.0)
        q = 1.0 - (2 * target / (1 + target)) ** (1 / 5)
        edited = [
            vocabulary[rng.integers(len(vocabulary))] if rng.random() < q else w for w in words
        ]
        docs += [texts[i], " ".join(edited)]
        J.append(jaccard(word_shingles(docs[-2]), word_shingles(docs[-1])))
    return EditedPairs(np.array(J), minhash_signatures(docs, num_perm, seed=seed))


@dataclass(frozen=True)
class BandingResult:
    """What the MinHash-banding demo draws."""

    bands: int
    rows: int
    threshold: float
    J: np.ndarray  # exact similarity of each pair
    candidate: np.ndarray  # whether banding made the pair a candidate
    bin_centres: np.ndarray
    bin_rates: np.ndarray  # fraction of candidates among the pairs of each similarity bin


def banding_result(*, bands, rows, n_pairs=300, seed=0) -> BandingResult:
    """Band the signatures of :func:`edited_pairs` and measure who becomes a candidate."""
    pairs = edited_pairs(n_pairs, seed)
    found = lsh_candidate_pairs(pairs.signatures, int(bands), int(rows))
    candidate = np.array([(2 * i, 2 * i + 1) in found for i in range(len(pairs.J))])
    edges = np.linspace(0.0, 1.0, 11)
    which = np.clip(np.digitize(pairs.J, edges) - 1, 0, 9)
    rates = np.array(
        [candidate[which == b].mean() if np.any(which == b) else np.nan for b in range(10)]
    )
    return BandingResult(
        int(bands),
        int(rows),
        lsh_threshold(int(bands), int(rows)),
        pairs.J,
        candidate,
        (edges[:-1] + edges[1:]) / 2,
        rates,
    )


def _draw(fig, result, **_):
    ax = fig.subplots()
    s = np.linspace(0.0, 1.0, 201)
    (curve,) = ax.plot(s, lsh_probability(s, result.bands, result.rows), color="C0", lw=2)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.04, 0.04, size=len(result.J))  # spread the 0/1 dots apart
    dots = ax.scatter(result.J, result.candidate + jitter, s=6, color="0.55", alpha=0.5)
    (rates,) = ax.plot([], [], "o", color="C3", markersize=7)
    threshold = ax.axvline(result.threshold, color="C2", linestyle="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.08, 1.08)
    ax.set_xlabel("Jaccard similarity J of the pair (exact)")
    ax.set_ylabel("probability of being a candidate")
    ax.grid(alpha=0.3)
    ax.legend(
        [curve, rates, dots, threshold],
        [
            r"$1 - (1 - J^{n_r})^{n_b}$",
            "measured rate per bin",
            "pairs (1 = candidate, 0 = not)",
            r"rise $(1/n_b)^{1/n_r}$",
        ],
        loc="center right",
        fontsize=8,
    )
    title = moving_title(ax)
    background = FrozenBackground(fig, [ax])
    dynamic = [curve, dots, rates, threshold, title]
    state = {"first": True}

    def update(result, **_):
        if state["first"]:
            state["first"] = False
        elif background.image is None:
            background.capture(dynamic)
        curve.set_ydata(lsh_probability(s, result.bands, result.rows))
        dots.set_offsets(np.column_stack([result.J, result.candidate + jitter]))
        rates.set_data(result.bin_centres, result.bin_rates)
        threshold.set_xdata([result.threshold, result.threshold])
        title.set_text(
            f"$n_b$ = {result.bands} bands of $n_r$ = {result.rows} rows "
            f"({result.bands * result.rows} hashes): {result.candidate.mean():.0%} of the pairs "
            "are candidates"
        )

    update(result)
    return update


@demo_factory
def minhash_bands_demo(n_pairs: int = 300, seed: int = 0) -> Demo:
    """LSH banding of MinHash signatures of real text pairs: the S-curve
    1 - (1 - J^n_r)^n_b, its rise (1/n_b)^(1/n_r) and the measured candidate rate, with
    sliders for the number of bands n_b and of rows per band n_r."""
    return Demo(
        banding_result,
        _draw,
        [
            Slider("bands", 1, 40, 20, integer=True, label="bands n_b"),
            Slider("rows", 1, 10, 5, integer=True, label="rows per band n_r"),
        ],
        fixed={"n_pairs": n_pairs, "seed": seed},
        figsize=(8.0, 4.2),
        alt=(
            "The probability that a pair of texts becomes an LSH candidate against the pair's "
            "exact Jaccard similarity: the S-curve 1 − (1 − J^n_r)^n_b (blue), each pair as a "
            "grey dot at 1 (candidate) or 0, the measured rate per similarity bin (red dots) and "
            "the curve's rise (dashed green line). The sliders set the number of bands n_b and "
            "the rows per band n_r."
        ),
    )


def llama1_mixture_figure() -> Figure:
    """LLaMA-1's published data mixture (Touvron et al., 2023, Table 1): the share of the
    training tokens drawn from each source, and how many times each source was seen."""
    fig = Figure(figsize=(9.0, 3.4))
    share_ax, epoch_ax = fig.subplots(1, 2, sharey=True)
    names = [s.name for s in LLAMA1_MIXTURE][::-1]
    shares = [100 * s.proportion for s in LLAMA1_MIXTURE][::-1]
    epochs = [s.epochs for s in LLAMA1_MIXTURE][::-1]
    share_ax.barh(names, shares, color="C0")
    for y, v in enumerate(shares):
        share_ax.text(v + 1, y, f"{v:.1f}%", va="center", fontsize=8)
    share_ax.set_xlim(0, 80)
    share_ax.set_xlabel("sampling proportion (% of training tokens)")
    epoch_ax.barh(names, epochs, color="C1")
    epoch_ax.axvline(1.0, color="0.3", lw=1, linestyle="--")
    for y, v in enumerate(epochs):
        epoch_ax.text(v + 0.05, y, f"{v:.2f}", va="center", fontsize=8)
    epoch_ax.set_xlim(0, 2.9)
    epoch_ax.set_xlabel("epochs over the source (1.4T-token runs)")
    fig.tight_layout()
    return fig
