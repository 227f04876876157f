"""Demo of the chapter on attention masks: the three architectures as mask matrices."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..._threads import one_torch_thread
from ...objectives import causal_mask, encoder_decoder_masks, prefix_lm_mask
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, moving_title

__all__ = ["attention_mask_demo", "draw_mask"]

#: White where attention is blocked, blue where it is allowed; grey where a block is absent.
_CMAP = ListedColormap(["white", "#2e86c1", "#eeeeee"])
N_MAX = 24
#: The sliders' starting values; the figure is laid out for them whatever the values drawn.
DEFAULTS = {"n": 10, "prefix_length": 4}
#: How many frozen backgrounds (one per sequence length n) a demo keeps.
_BACKGROUNDS = 12


@lru_cache(maxsize=128)
def _masks(n: int, prefix_length: int):
    """The three masks for (n, n₀), read-only and cached: the demo revisits the same few."""
    with one_torch_thread():
        masks = _build_masks(n, prefix_length)
    for M in masks[:3]:
        M.setflags(write=False)
    return masks


def _build_masks(n: int, prefix_length: int):
    n0 = min(prefix_length, n)
    causal = causal_mask(n).numpy()
    prefix = prefix_lm_mask(n, n0).numpy()
    # Encoder-decoder over the same n tokens: the encoder reads the first n0 tokens, the
    # decoder the rest. Blocks: [encoder self | (none)] over [cross | decoder self].
    combined = np.full((n, n), 2, dtype=np.int8)
    if 0 < n0 < n:
        enc = encoder_decoder_masks(n0, n - n0)
        combined[:n0, :n0] = enc.encoder.numpy()
        combined[n0:, :n0] = enc.cross.numpy()
        combined[n0:, n0:] = enc.decoder.numpy()
    return causal.astype(np.int8), prefix.astype(np.int8), combined, n0


def draw_mask(ax, M: np.ndarray, title: str):
    """Draw a mask matrix (rows = queries i, columns = keys j); returns the image artist."""
    image = ax.imshow(M, cmap=_CMAP, vmin=0, vmax=2, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("key position j")
    ax.set_ylabel("query position i")
    # Whole positions, and labels as wide as two digits whatever n is: the layout is fixed
    # once, and a label that grows would run into the next panel.
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}".rjust(2, "\u2007")))
    return image


def _draw(fig, result, *, n, prefix_length):
    axes = fig.subplots(1, 3)
    images = [draw_mask(ax, M, "") for ax, M in zip(axes, result[:3], strict=True)]
    titles = [moving_title(ax, fontsize=10) for ax in axes]
    for ax in axes[1:]:
        ax.set_ylabel("")

    lines = [ax.axvline(-0.5, color="#c0392b", lw=1.5) for ax in axes[1:]]
    lines += [ax.axhline(-0.5, color="#c0392b", lw=1.5) for ax in axes[1:]]

    # The axes, ticks and labels depend on n only: after the first move they are drawn into
    # an image once per n (kept for the last few n), and a move draws the masks, the lines
    # and the titles over it.
    background = FrozenBackground(fig, axes)
    dynamic = [*images, *lines, *titles]
    dynamic += [spine for ax in axes for spine in ax.spines.values()]  # drawn over the masks
    backgrounds: dict[int, np.ndarray] = {}
    first_done = False

    def freeze(n: int) -> None:
        if n in backgrounds:
            background.image.pixels = backgrounds.pop(n)
        else:
            background.capture(dynamic)
            if len(backgrounds) >= _BACKGROUNDS:
                del backgrounds[next(iter(backgrounds))]  # the least recently used
        backgrounds[n] = background.image.pixels

    def update(result, *, n, prefix_length):
        *masks, n0 = result
        for ax, image, M in zip(axes, images, masks, strict=True):
            image.set_data(M)
            image.set_extent((-0.5, n - 0.5, n - 0.5, -0.5))
            ax.set_xlim(-0.5, n - 0.5)
            ax.set_ylim(n - 0.5, -0.5)
        for line in lines[:2]:
            line.set_xdata([n0 - 0.5, n0 - 0.5])
        for line in lines[2:]:
            line.set_ydata([n0 - 0.5, n0 - 0.5])
        counts = [int((M == 1).sum()) for M in masks]
        titles[0].set_text(f"causal decoder\n{counts[0]} allowed (i, j) pairs")
        titles[1].set_text(f"prefix decoder, n₀ = {n0}\n{counts[1]} allowed")
        titles[2].set_text(
            f"encoder-decoder, {n0} + {n - n0}\n{counts[2]} allowed"
            if 0 < n0 < n
            else "encoder-decoder\nneeds 0 < n₀ < n"
        )
        if first_done:  # after the layout, which the first draw fixes
            freeze(n)

    update(result, n=n, prefix_length=prefix_length)
    first_done = True
    return update


@demo_factory
def attention_mask_demo() -> Demo:
    """The attention masks of a causal decoder, a prefix decoder and an encoder-decoder
    (:func:`llmtrain.objectives.causal_mask`, :func:`llmtrain.objectives.prefix_lm_mask`,
    :func:`llmtrain.objectives.encoder_decoder_masks`), with sliders for the sequence length
    n and the prefix length n₀ (also the encoder's share of the n tokens; capped at n)."""
    return Demo(
        _masks,
        _draw,
        [
            Slider("n", 2, N_MAX, DEFAULTS["n"], integer=True, label="sequence length n"),
            Slider(
                "prefix_length",
                0,
                N_MAX,
                DEFAULTS["prefix_length"],
                integer=True,
                label="prefix length n₀",
            ),
        ],
        figsize=(9.0, 3.5),
        alt=(
            "Three mask matrices, query position (down) against key position (across), blue "
            "where attention is allowed: a causal decoder, a prefix decoder with a full block "
            "over its prefix, and an encoder-decoder with its encoder, cross-attention and "
            "decoder blocks, red lines at the prefix boundary. The sliders set the sequence "
            "length n and the prefix length n₀."
        ),
    )
