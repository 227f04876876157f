"""Muon: momentum whose update matrix is orthogonalised by a Newton-Schulz iteration.

The update follows ``torch.optim.Muon`` (torch 2.13) in the book's symbols: learning rate α,
weight decay λ, momentum μ, momentum buffer m, its Nesterov blend m̃, and the orthogonalised
update O = NS(m̃), for a weight matrix of n_row rows and n_col columns.

Torch casts the input of its Newton-Schulz iteration to bfloat16 whatever the parameter's
dtype, so that its float64 Muon adds a bfloat16-rounded update to float64 weights.
:func:`newton_schulz` and :func:`muon_step` run the iteration in the dtype they are given
unless ``dtype`` (``ns_dtype``) names another torch dtype; :class:`Muon` passes
``torch.bfloat16`` by default and so reproduces ``torch.optim.Muon``'s numbers exactly.
NumPy has no bfloat16: on NumPy arrays the iteration always runs in the arrays' own dtype.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_int, check_real, check_shape_match
from . import _ops
from ._moments import ema_, previous
from .torch_front import TorchOptimizer

__all__ = ["Muon", "muon_lr_scale", "muon_step", "newton_schulz"]

# The quintic of Keller Jordan's Muon, (a₁, a₃, a₅) in a₁σ + a₃σ³ + a₅σ⁵, and torch's defaults.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
EPS = 1e-7
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def _check_coefficients(coefficients) -> tuple[float, float, float]:
    if isinstance(coefficients, (str, bytes)) or not hasattr(coefficients, "__len__"):
        raise TypeError(f"ns_coefficients must be three real numbers, got {coefficients!r}")
    if len(coefficients) != 3:
        raise ValueError(f"ns_coefficients must be three real numbers, got {coefficients!r}")
    return tuple(check_real(f"ns_coefficients[{i}]", c) for i, c in enumerate(coefficients))


def newton_schulz(
    G, *, steps: int = NS_STEPS, coefficients=NS_COEFFICIENTS, eps: float = EPS, dtype=None
):
    """Approximately orthogonalise a matrix: replace G = U Σ Vᵀ by about U Vᵀ.

    Implements :prf:ref:`alg-newton-schulz`.

    Divides G by its Frobenius norm (at least ``eps``), which puts every singular value in
    [0, 1], then applies ``steps`` times X ← a₁X + (a₃ XXᵀ + a₅ (XXᵀ)²) X. Each step maps every
    singular value σ to p(σ) = a₁σ + a₃σ³ + a₅σ⁵ and keeps the singular vectors, so the result
    is U p(p(...p(Σ/‖G‖_F)...)) Vᵀ. A matrix with more rows than columns is transposed first, so
    that XXᵀ is the smaller Gram matrix. G is a 2-D NumPy array or torch tensor and is not
    modified. The iteration runs in G's dtype, or for a tensor in ``dtype`` if it is given:
    ``dtype=torch.bfloat16`` is ``torch.optim.Muon``'s iteration operation for operation, and
    returns a bfloat16 tensor as it does. NumPy has no bfloat16, so for an array ``dtype`` must
    be None.
    """
    n_steps = check_int("steps", steps, 0, 99)
    a1, a3, a5 = _check_coefficients(coefficients)
    ε = check_real("eps", eps, 0.0, low_open=True)
    if len(G.shape) != 2:
        raise ValueError(f"G must be a 2-D matrix, got shape {tuple(G.shape)}")
    tall = G.shape[0] > G.shape[1]
    if not _ops._is_torch(G):
        if dtype is not None:
            raise TypeError(
                f"dtype applies to torch tensors only (NumPy has no bfloat16), got {dtype!r}"
            )
        X = G.T if tall else G
        X = X / max(float(np.linalg.norm(X)), ε)  # ‖X‖₂ ≤ ‖X‖_F = 1: the quintic's domain
        for _ in range(n_steps):
            A = X @ X.T
            X = a1 * X + (a3 * A + a5 * (A @ A)) @ X
        return X.T if tall else X
    # Torch's own order of operations, so that dtype=torch.bfloat16 rounds as torch.optim.Muon:
    # cast, transpose, divide by the norm clamped at ε, then two fused products (addmm) a step.
    X = G if dtype is None else G.to(dtype)
    X = X.T if tall else X
    X = X / X.norm().clamp(min=ε)
    for _ in range(n_steps):
        A = X @ X.T
        X = torch.addmm(X, torch.addmm(A, A, A, beta=a3, alpha=a5), X, beta=a1)
    return X.T if tall else X


def muon_lr_scale(shape, adjust_lr_fn: str | None = None) -> float:
    """The factor adj by which Muon multiplies α for a matrix of ``shape`` (n_row, n_col).

    ``None`` or ``"original"``: adj = √max(1, n_row/n_col) (Keller Jordan's Muon);
    ``"match_rms_adamw"``: adj = 0.2 √max(n_row, n_col) (Moonshot), which gives the update the
    RMS of a typical AdamW update, about 0.2, so that AdamW's α and λ carry over.
    """
    if adjust_lr_fn not in ADJUST_LR_FNS:
        raise ValueError(
            f"adjust_lr_fn must be None, 'original' or 'match_rms_adamw', got {adjust_lr_fn!r}"
        )
    n_row, n_col = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(n_row, n_col))
    return math.sqrt(max(1.0, n_row / n_col))


def muon_step(
    θ,
    g,
    state: dict,
    *,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = EPS,
    ns_steps: int = NS_STEPS,
    adjust_lr_fn: str | None = None,
    ns_dtype=None,
    out=None,
):
    """One Muon step for a weight matrix: momentum, orthogonalise, decay, step.

    Implements :prf:ref:`alg-muon`.

    Parameters
    ----------
    θ : array or tensor
        The weight matrix θ_{t-1}, 2-D (Muon is for hidden matrices; use AdamW for the rest).
    g : array or tensor
        The minibatch gradient g_t, the shape of θ.
    state : dict
        ``{}`` before the first step, then ``{"momentum_buffer": m}`` (torch's name).
    lr : float
        Learning rate α ≥ 0, multiplied by :func:`muon_lr_scale` for the step (not the decay).
    weight_decay : float
        Decoupled weight decay λ ≥ 0: θ ← (1 - αλ) θ before the step.
    momentum : float
        μ in [0, 1]: m_t = μ m_{t-1} + (1 - μ) g_t.
    nesterov : bool
        Orthogonalise m̃_t = μ m_t + (1 - μ) g_t instead of m_t.
    ns_coefficients, eps, ns_steps
        The quintic (a₁, a₃, a₅), the norm floor ε > 0 and the number of steps (0 to 99) of
        :func:`newton_schulz`.
    adjust_lr_fn : {None, "original", "match_rms_adamw"}
        The learning-rate factor adj of :func:`muon_lr_scale`.
    ns_dtype : torch.dtype, optional
        For tensors, the dtype of the Newton-Schulz iteration (``torch.bfloat16`` is what
        ``torch.optim.Muon`` uses); None runs it in g's dtype, the only choice for NumPy arrays.
    out : array or tensor, optional
        Where to write θ_t (it may be θ itself); a new array if None.

    Returns
    -------
    tuple
        The new parameters θ_t and the new state.
    """
    α = check_real("lr", lr, 0.0)
    λ = check_real("weight_decay", weight_decay, 0.0)
    μ = check_real("momentum", momentum, 0.0, 1.0)
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
    ns = dict(steps=ns_steps, coefficients=ns_coefficients, eps=eps, dtype=ns_dtype)
    if len(θ.shape) != 2:
        raise ValueError(f"θ must be a 2-D matrix for Muon, got shape {tuple(θ.shape)}")
    check_shape_match("θ", θ.shape, "g", g.shape)
    adj = muon_lr_scale(θ.shape, adjust_lr_fn)
    m = ema_(previous(state, "momentum_buffer", g), g, 1.0 - μ)
    if nesterov:  # m̃_t = g_t + μ (m_t - g_t), as torch's g.lerp(m, μ)
        m̃ = g.lerp(m, μ) if _ops._is_torch(g) else g + μ * (m - g)
    else:
        m̃ = m
    O_t = newton_schulz(m̃, **ns)
    # θ_t = (1 - αλ) θ_{t-1} - α adj O_t: the decay uses α itself, only the step is rescaled.
    decayed = θ * (1.0 - α * λ)
    return _ops.add_scaled(decayed, O_t, -α * adj, out=out), {"momentum_buffer": m}


class Muon(TorchOptimizer):
    """Drop-in replacement for ``torch.optim.Muon``, driven by :func:`muon_step`.

    Implements :prf:ref:`alg-muon` for PyTorch training loops, with the same constructor
    arguments and defaults; every parameter must be a 2-D matrix. By default the numbers are
    torch's: like torch, the Newton-Schulz iteration runs in bfloat16 whatever the parameter's
    dtype. The one extra argument, ``ns_dtype``, chooses another dtype for it; None runs it in
    the parameter's dtype (see the module docstring).
    """

    update_rule = staticmethod(muon_step)

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = EPS,
        ns_steps: int = NS_STEPS,
        adjust_lr_fn: str | None = None,
        ns_dtype: torch.dtype | None = torch.bfloat16,
    ):
        if ns_dtype is not None and not (
            isinstance(ns_dtype, torch.dtype) and ns_dtype.is_floating_point
        ):
            raise TypeError(
                f"ns_dtype must be a floating-point torch.dtype or None, got {ns_dtype!r}"
            )
        hyperparameters = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
        )
        # TorchOptimizer's dry run validates on a vector, which Muon rejects: check on a 1×1
        # matrix instead, then set up the groups as TorchOptimizer does (Muon has no maximize).
        muon_step(np.zeros((1, 1)), np.zeros((1, 1)), {}, **hyperparameters)
        hyperparameters["ns_dtype"] = ns_dtype  # after the NumPy dry run, which takes no dtype
        self._rule_keys = tuple(hyperparameters)
        super(TorchOptimizer, self).__init__(params, hyperparameters)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(
                        f"Muon only optimizes 2-D matrices, got a parameter of shape "
                        f"{tuple(p.shape)}; give it to AdamW"
                    )
