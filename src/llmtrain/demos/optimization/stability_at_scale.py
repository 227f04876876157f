"""Demo of the stability-at-scale chapter: block-wise 8-bit quantisation of a moment-like tensor."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...optim import dequantize_blockwise, quantize_blockwise
from ..demo import Demo, Slider, demo_factory
from ..plots import FrozenBackground, moving_title

__all__ = ["heavy_tailed_moment", "quantization_demo"]


@lru_cache(maxsize=8)
def heavy_tailed_moment(n: int = 8192, seed: int = 0) -> np.ndarray:
    """A stand-in for Adam's first moment: log-normal magnitudes over five decades, random
    signs, and a few outliers 100 times larger than typical, as large gradients leave."""
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(-6.0, 2.0, n)) * rng.choice([-1.0, 1.0], n)
    x[rng.choice(n, 4, replace=False)] *= 100.0
    return x


def _compute(log2_block, log10_floor):
    x = heavy_tailed_moment()
    block = 2 ** int(log2_block)
    floor = 10.0**log10_floor
    relative = {}
    for kind in ("dynamic", "linear"):
        codes, scales = quantize_blockwise(x, block, code_map=kind)
        d = dequantize_blockwise(codes, scales, block, code_map=kind)
        relative[kind] = np.abs(d - x) / np.maximum(np.abs(x), floor)
    counted = np.abs(x) >= floor
    return {k: np.sort(r[counted]) for k, r in relative.items()}


def _draw(fig, result, *, log2_block, log10_floor):
    ax = fig.subplots()
    ax.set(
        xlabel="fraction of entries",
        ylabel="relative error |x̂ - x| / |x|",
        yscale="log",
        ylim=(1e-5, 2.0),
        xlim=(0.0, 1.0),
    )
    ax.axhline(1.0, color="0.5", lw=1, ls="--")
    (dyn,) = ax.plot([], [], color="C0", label="dynamic map (Dettmers et al.)")
    (lin,) = ax.plot([], [], color="C3", label="linear absmax map")
    ax.legend(loc="upper left", fontsize=8)
    title = moving_title(ax)
    background = FrozenBackground(fig, [ax])

    def update(result, *, log2_block, log10_floor):
        for line, kind in ((dyn, "dynamic"), (lin, "linear")):
            r = np.maximum(result[kind], 1e-5)
            line.set_data(np.linspace(0, 1, r.size), r)
        median = {k: float(np.median(v)) for k, v in result.items()}
        title.set_text(
            f"block size {2 ** int(log2_block)}: median error {median['dynamic']:.3f} (dynamic),"
            f" {median['linear']:.3f} (linear)"
        )

    update(result, log2_block=log2_block, log10_floor=log10_floor)
    background.capture([dyn, lin, title])
    return update


@demo_factory
def quantization_demo():
    """Sorted relative errors of 8-bit block-wise quantisation, dynamic against linear levels."""
    return Demo(
        _compute,
        _draw,
        [
            Slider("log2_block", 4, 13, 11, integer=True, label="log₂ block size"),
            Slider("log10_floor", -9.0, -3.0, -6.0, label="log₁₀ smallest |x| counted"),
        ],
        alt=(
            "The relative errors of 8-bit block-wise quantisation of a heavy-tailed tensor, "
            "sorted, against the fraction of entries, on a log scale: the dynamic map (blue) and "
            "the linear absmax map (red), median errors in the title. The sliders set the block "
            "size (as log₂) and the smallest magnitude counted (as log₁₀)."
        ),
    )
