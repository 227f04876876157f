"""Demo of the chapter on packed sequences: the document mask of a packed row, and the
padding that packing saves compared with padding every document to the longest."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from matplotlib.colors import ListedColormap

from ..._threads import one_torch_thread
from ...objectives import document_causal_mask, pack_documents
from ..demo import Demo, Slider, demo_factory
from ..plots import moving_title

__all__ = ["packing_demo"]

N_DOCS_MAX = 12
BLOCK_MAX = 48
#: White where attention is blocked; one colour per document, grey for padding.
_CMAP = ListedColormap(["white", "#bbbbbb", *["#2e86c1", "#e67e22", "#27ae60", "#8e44ad"] * 3])


class PackingView(NamedTuple):
    mask: np.ndarray  # (T, T) codes of the first row: 0 blocked, 1 padding, 2 + k document k
    padded_tokens: int  # every document padded to the longest (with its EOS)
    packed_tokens: int  # rows * block_size
    real_tokens: int  # documents and their EOS tokens
    rows: int


@lru_cache(maxsize=256)
def _compute(n_docs: int, block_size: int) -> PackingView:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, block_size, size=n_docs)  # each fits with its EOS
    docs = [[1] * int(n) for n in lengths]
    with one_torch_thread():
        batch = pack_documents(docs, block_size, eos_id=0)
        d = batch.document_ids[0]
        M = document_causal_mask(d).numpy()
    codes = np.where(d.numpy() < 0, 1, 2 + d.numpy() % 12)
    real = int(lengths.sum()) + n_docs
    return PackingView(
        np.where(M, codes[None, :], 0).astype(np.int8),
        n_docs * (int(lengths.max()) + 1),
        batch.ids.numel(),
        real,
        batch.ids.shape[0],
    )


def _draw(fig, result, *, n_docs, block_size):
    ax_mask, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    image = ax_mask.imshow(
        result.mask, cmap=_CMAP, vmin=0, vmax=_CMAP.N - 1, interpolation="nearest"
    )
    ax_mask.set_xlabel("key position j")
    ax_mask.set_ylabel("query position i")
    mask_title = moving_title(ax_mask, fontsize=10)
    bars = ax_bar.bar(["pad to longest", "packed"], [0, 0], color=["#c0392b", "#2e86c1"])
    real_line = ax_bar.axhline(0, color="black", lw=1.5, ls="--", label="real tokens (with EOS)")
    ax_bar.set_ylim(0, N_DOCS_MAX * BLOCK_MAX * 1.05)
    ax_bar.set_ylabel("tokens computed")
    ax_bar.legend(loc="upper left", fontsize=8)
    bar_title = moving_title(ax_bar, fontsize=10)

    def update(result, *, n_docs, block_size):
        T = block_size
        image.set_data(result.mask)
        image.set_extent((-0.5, T - 0.5, T - 0.5, -0.5))
        ax_mask.set_xlim(-0.5, T - 0.5)
        ax_mask.set_ylim(T - 0.5, -0.5)
        mask_title.set_text(f"document mask of row 1 of {result.rows}")
        for bar, h in zip(bars, (result.padded_tokens, result.packed_tokens), strict=True):
            bar.set_height(h)
        real_line.set_ydata([result.real_tokens] * 2)
        waste = [1 - result.real_tokens / t for t in (result.padded_tokens, result.packed_tokens)]
        bar_title.set_text(f"padding: {waste[0]:.0%} vs {waste[1]:.0%}")

    update(result, n_docs=n_docs, block_size=block_size)
    return update


@demo_factory
def packing_demo() -> Demo:
    """Packing random documents (lengths uniform in 1 .. T - 1) with
    :func:`llmtrain.objectives.pack_documents`: the document mask
    (:func:`llmtrain.objectives.document_causal_mask`) of the first packed row, and the tokens
    computed when every document is padded to the longest versus when they are packed."""
    return Demo(
        _compute,
        _draw,
        [
            Slider("n_docs", 1, N_DOCS_MAX, 6, integer=True, label="documents"),
            Slider("block_size", 4, BLOCK_MAX, 24, integer=True, label="row length n_ctx"),
        ],
        figsize=(9.0, 3.8),
        alt=(
            "Left: the document mask of the first packed row, query position against key "
            "position, each document's block in its own colour and padding grey; right: bars of "
            "the tokens computed when every document is padded to the longest and when they are "
            "packed, with the real tokens dashed. The sliders set the number of documents and "
            "the row length."
        ),
    )
