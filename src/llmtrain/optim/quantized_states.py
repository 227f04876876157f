"""8-bit optimizer states: block-wise quantisation of Adam's moments (Dettmers et al., 2022).

Between steps, each moment is kept as one byte per entry plus one float32 scale per block of
``block_size`` entries (2048 in the paper). A byte is an index into a *code map*, a sorted
table of at most 256 values in [-1, 1]; entry i of block b stands for map[code_i] · N_b, with
N_b the block's absolute maximum. Two maps are provided: the paper's non-linear "dynamic"
map, and a linear one (equally spaced levels), simpler and much worse for small values.
Everything here runs on NumPy arrays.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .._checks import check_int, check_real, check_shape_match
from ._moments import check_betas

__all__ = [
    "adam8bit_step",
    "adam_state_bytes",
    "code_map",
    "dequantize_blockwise",
    "quantize_blockwise",
]

_MAPS = ("dynamic", "linear")


@cache
def code_map(kind: str = "dynamic", signed: bool = True) -> np.ndarray:
    """The sorted table of values in [-1, 1] (or [0, 1]) that 8-bit codes index.

    ``"linear"``: k/127 for k = -127..127 (signed) or k/255 for k = 0..255 (unsigned).
    ``"dynamic"``: the paper's dynamic tree map, built from its description: after the sign,
    the number E of leading zero bits gives a decimal exponent 10^-E (E = 0..6), the next bit
    is an indicator, and the remaining bits a fraction, linear in (0.1, 1). With fewer bits
    left for the fraction as E grows, the levels are dense in relative terms from about 10⁻⁷
    to 1, which suits Adam's moments, whose entries span orders of magnitude. Exactly 0 and
    1 are included; the unsigned map spends the sign bit on one more fraction bit.
    """
    if kind not in _MAPS:
        raise ValueError(f"kind must be one of {_MAPS}, got {kind!r}")
    if kind == "linear":
        values = np.arange(-127, 128) / 127 if signed else np.arange(256) / 255
        return values.astype(np.float32)
    values = [0.0, 1.0]
    for E in range(7):  # exponent 10^-E; the fraction has 6 - E bits (7 - E unsigned)
        n_fractions = 2 ** (6 - E + (not signed))
        edges = np.linspace(0.1, 1.0, n_fractions + 1)
        positive = 10.0**-E * (edges[:-1] + edges[1:]) / 2
        values += list(positive) + (list(-positive) if signed else [])
    return np.sort(np.asarray(values, dtype=np.float32))


def _check_map(kind, signed) -> np.ndarray:
    if not isinstance(kind, str):
        raise TypeError(f"code_map must be a str, got {type(kind).__name__}")
    return code_map(kind, bool(signed))


def _blocks(x: np.ndarray, block_size: int) -> np.ndarray:
    """The entries of x, flattened and zero-padded into rows of ``block_size``."""
    flat = np.ravel(x)
    padded = np.zeros(-(-flat.size // block_size) * block_size, dtype=np.float64)
    padded[: flat.size] = flat
    return padded.reshape(-1, block_size)


def quantize_blockwise(
    x, block_size: int = 2048, *, code_map: str = "dynamic", signed: bool = True
):
    """Quantise x to 8-bit codes, with one float32 scale (the absolute maximum) per block.

    Implements :prf:ref:`alg-blockwise-quantization`.

    Parameters
    ----------
    x : array
        The tensor to store; it is read in C order and cut into blocks of ``block_size``
        consecutive entries (the last block may be shorter).
    block_size : int
        Entries per block, ≥ 1. An outlier only coarsens the levels of its own block.
    code_map : {"dynamic", "linear"}
        The table of levels the codes index (see :func:`code_map`).
    signed : bool
        Whether x may be negative; False (for Adam's v ≥ 0) spends all codes on [0, 1].

    Returns
    -------
    tuple
        ``(codes, scales)``: uint8 codes of x's shape, each the index of the level nearest to
        x_i / N_b, and the float32 absolute maximum N_b of each block.
    """
    b = check_int("block_size", block_size, 1)
    levels = _check_map(code_map, signed)
    x = np.asarray(x)
    if not signed and x.size and x.min() < 0:
        raise ValueError("x must be non-negative when signed=False")
    blocks = _blocks(x, b)
    N = np.abs(blocks).max(axis=1).astype(np.float32)
    # An all-zero block has N_b = 0; dividing by 1 instead gives it the code of 0.
    normalised = blocks / np.where(N > 0, N, 1.0)[:, None].astype(np.float64)
    # The nearest level: count the midpoints between neighbouring levels below each value.
    midpoints = (levels[:-1].astype(np.float64) + levels[1:]) / 2
    codes = np.searchsorted(midpoints, normalised.ravel()[: x.size])
    return codes.astype(np.uint8).reshape(x.shape), N


def dequantize_blockwise(
    codes, scales, block_size: int = 2048, *, code_map: str = "dynamic", signed: bool = True
) -> np.ndarray:
    """The float32 tensor that ``(codes, scales)`` from :func:`quantize_blockwise` stands for.

    Implements :prf:ref:`alg-blockwise-quantization`: entry i of block b is map[code_i] · N_b.
    """
    b = check_int("block_size", block_size, 1)
    levels = _check_map(code_map, signed)
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise TypeError(f"codes must be uint8, got {codes.dtype}")
    scales = np.asarray(scales, dtype=np.float32)
    n_blocks = -(-codes.size // b)
    if scales.shape != (n_blocks,):
        raise ValueError(
            f"scales must have shape ({n_blocks},) for {codes.size} codes in blocks of {b}, "
            f"got {scales.shape}"
        )
    per_entry = np.repeat(scales, b)[: codes.size]
    return (levels[codes.ravel()] * per_entry).reshape(codes.shape)


def adam8bit_step(
    θ,
    g,
    state: dict,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    block_size: int = 2048,
    code_map: str = "dynamic",
    out=None,
):
    """One AdamW step whose moments m and v are stored in 8 bits between steps.

    Implements :prf:ref:`alg-adam-8bit`.

    The step dequantises m and v, runs the ordinary AdamW update in floating point, and
    quantises the new moments again, m with the signed map and v (never negative) with the
    unsigned one, as Dettmers et al. do. The update itself uses the moments before they are
    quantised; only what is kept until the next step is 8-bit.

    Parameters
    ----------
    θ, g : numpy.ndarray
        Parameters θ_{t-1} and the gradient g_t at θ_{t-1}, of the same shape.
    state : dict
        ``{}`` before the first step, then the step count t and the codes and block scales of
        m and v (``m_codes``, ``m_scales``, ``v_codes``, ``v_scales``).
    lr, betas, eps : float
        α ≥ 0, (β₁, β₂) in [0, 1), ε > 0, as in :func:`adamw_step`.
    weight_decay : float
        Decoupled weight decay λ ≥ 0: θ ← (1 - αλ) θ before the Adam step.
    block_size : int
        Entries per quantisation block, ≥ 1 (2048 in the paper).
    code_map : {"dynamic", "linear"}
        The 8-bit levels (see :func:`code_map`); "linear" is there to show why the paper's
        non-linear map is needed.
    out : numpy.ndarray, optional
        Where to write θ_t (it may be θ itself); a new array if None.

    Returns
    -------
    tuple
        The new parameters θ_t and the new state.
    """
    α = check_real("lr", lr, 0.0)
    β1, β2 = check_betas(betas)
    ε = check_real("eps", eps, 0.0, low_open=True)
    λ = check_real("weight_decay", weight_decay, 0.0)
    B = check_int("block_size", block_size, 1)
    _check_map(code_map, True)
    check_shape_match("θ", θ.shape, "g", g.shape)
    t = state.get("step", 0) + 1
    if t == 1:
        m, v = np.zeros(g.shape), np.zeros(g.shape)
    else:
        kw = dict(block_size=B, code_map=code_map)
        m = dequantize_blockwise(state["m_codes"], state["m_scales"], **kw).astype(np.float64)
        v = dequantize_blockwise(state["v_codes"], state["v_scales"], signed=False, **kw)
        v = v.astype(np.float64)
    m = β1 * m + (1.0 - β1) * g
    v = β2 * v + (1.0 - β2) * g * g
    step = α / (1.0 - β1**t) * m / (np.sqrt(v) / np.sqrt(1.0 - β2**t) + ε)
    θ_t = np.subtract(θ * (1.0 - α * λ), step, out=out)
    m_codes, m_scales = quantize_blockwise(m, B, code_map=code_map)
    v_codes, v_scales = quantize_blockwise(v, B, code_map=code_map, signed=False)
    new_state = {
        "step": t,
        "m_codes": m_codes,
        "m_scales": m_scales,
        "v_codes": v_codes,
        "v_scales": v_scales,
    }
    return θ_t, new_state


def adam_state_bytes(n_parameters: int, *, bits: int = 32, block_size: int = 2048) -> float:
    """Bytes that Adam's two moments take for ``n_parameters`` parameters.

    ``bits=32``: two float32 numbers per parameter, 8 bytes. ``bits=8``: one byte per moment
    entry plus a float32 scale per block of ``block_size`` entries, 2 + 8/``block_size`` bytes.
    """
    n = check_int("n_parameters", n_parameters, 0)
    B = check_int("block_size", block_size, 1)
    if bits == 32:
        return 8.0 * n
    if bits == 8:
        return 2.0 * (n + 4 * -(-n // B))
    raise ValueError(f"bits must be 32 or 8, got {bits!r}")
