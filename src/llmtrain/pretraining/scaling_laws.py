"""Scaling laws: the loss of a model as a function of its size and its data, and what they say
about spending a compute budget.

Two published laws are here with their constants: Hoffmann et al.'s (2022) parametric law
L(N, D) = E + A / N^α + B / D^β (with the replication of Besiroglu et al., 2024) and Kaplan
et al.'s (2020) L(N, D) = [(N_c / N)^(α_N / α_D) + D_c / D]^α_D. :func:`compute_optimal`
splits a budget of C = 6 N D FLOPs between N and D in closed form; :func:`fit_scaling_law`
fits Hoffmann's law to measured losses with Hoffmann's own procedure (a Huber loss on log
residuals, L-BFGS from a grid of starting points); :func:`scaling_ladder` trains the small
runs the book fits it to.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_int, check_real
from .._threads import one_torch_thread
from .cached_models import cached_pretrain
from .model_size import parameter_count
from .trainer import TrainConfig

__all__ = [
    "BESIROGLU_LAW",
    "HOFFMANN_LAW",
    "KAPLAN_LAW",
    "LADDER_CONFIG",
    "PF_DAY",
    "Allocation",
    "ChinchillaLaw",
    "KaplanLaw",
    "LadderRun",
    "ScalingFit",
    "bootstrap_scaling_fit",
    "compute_optimal",
    "fit_scaling_law",
    "kaplan_allocation",
    "ladder_choice",
    "scaling_ladder",
]

#: One petaflop/s-day in FLOPs, Kaplan et al.'s unit of compute: 10^15 · 86400.
PF_DAY = 1e15 * 86_400


def _positive(name: str, value) -> np.ndarray:
    """``value`` as a float array whose entries are all finite and > 0, or an error naming it."""
    x = np.asarray(value, dtype=float)
    if x.size == 0 or not np.all(np.isfinite(x)) or np.any(x <= 0):
        bad = x[~(np.isfinite(x) & (x > 0))] if x.size else x
        shown = bad.flat[0] if bad.size else "an empty array"
        raise ValueError(f"{name} must be in (0, inf) everywhere, got {shown}")
    return x


@dataclass(frozen=True)
class ChinchillaLaw:
    """Hoffmann et al.'s parametric loss L(N, D) = E + A / N^α + B / D^β.

    N is the number of parameters, D the number of training tokens, E the loss no model can
    beat (the entropy of the text), and the two power laws the excess of a finite model and a
    finite dataset.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, N, D):
        """L(N, D), elementwise over arrays (a float for scalars)."""
        N, D = _positive("N", N), _positive("D", D)
        out = self.E + self.A / N**self.alpha + self.B / D**self.beta
        return float(out) if out.ndim == 0 else out


#: Hoffmann et al. (2022), eq. (10): the fit of their approach 3.
HOFFMANN_LAW = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
#: Besiroglu et al. (2024): the same fit redone on data read off Hoffmann et al.'s Figure 4.
BESIROGLU_LAW = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)


@dataclass(frozen=True)
class KaplanLaw:
    """Kaplan et al.'s L(N, D) = [(N_c / N)^(α_N / α_D) + D_c / D]^α_D, with N the
    non-embedding parameters and D the tokens (of their WebText2 tokenizer)."""

    alpha_N: float
    alpha_D: float
    N_c: float
    D_c: float

    def loss(self, N, D):
        """L(N, D), elementwise over arrays (a float for scalars)."""
        N, D = _positive("N", N), _positive("D", D)
        out = ((self.N_c / N) ** (self.alpha_N / self.alpha_D) + self.D_c / D) ** self.alpha_D
        return float(out) if out.ndim == 0 else out


#: Kaplan et al. (2020), Table 2: the joint fit of L(N, D), eq. (4.1).
KAPLAN_LAW = KaplanLaw(alpha_N=0.076, alpha_D=0.103, N_c=6.4e13, D_c=1.8e13)


@dataclass(frozen=True)
class Allocation:
    """A split of a compute budget C = 6 N D: N parameters, D tokens, and the loss a law
    predicts for them (NaN when the law used predicts none)."""

    C: float
    N: float
    D: float
    loss: float

    @property
    def tokens_per_parameter(self) -> float:
        return self.D / self.N


def compute_optimal(law: ChinchillaLaw, C: float) -> Allocation:
    """The N and D that minimise ``law`` for a budget of C = 6 N D FLOPs, in closed form.

    Implements :prf:ref:`alg-compute-optimal`.

    With D = C / (6N), setting dL/dN = 0 gives α A N^(−α) = β B D^(−β), whence
    N_opt = G (C/6)^(β/(α+β)) with G = (α A / (β B))^(1/(α+β)), and D_opt = C / (6 N_opt).
    """
    if not isinstance(law, ChinchillaLaw):
        raise TypeError(f"law must be a ChinchillaLaw, got {type(law).__name__}")
    C = check_real("C", C, 0.0, low_open=True)
    a, b = law.alpha, law.beta
    G = (a * law.A / (b * law.B)) ** (1 / (a + b))
    N = G * (C / 6) ** (b / (a + b))
    D = C / (6 * N)
    return Allocation(C, N, D, law.loss(N, D))


def kaplan_allocation(C: float) -> Allocation:
    """Kaplan et al.'s compute-efficient split of a budget C (FLOPs), from their eq. (6.7).

    Training at the critical batch size costs C = 2 C_min, and uses D ≈ 4·10^10 tokens ·
    (C_min / PF-day)^0.26; the model is what the rest of the budget pays for,
    N = C / (6 D), which grows as C^0.74 (their N ∝ C_min^0.73). ``loss`` is NaN: this rule
    comes from their L(N, S) law, which predicts no loss for a token count.
    """
    C = check_real("C", C, 0.0, low_open=True)
    D = 4e10 * (C / 2 / PF_DAY) ** 0.26
    return Allocation(C, C / (6 * D), D, math.nan)


# -- fitting -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalingFit:
    """The result of :func:`fit_scaling_law`: the fitted law, the objective it reached (the
    summed Huber loss of the log residuals) and the number of L-BFGS starts it tried."""

    law: ChinchillaLaw
    objective: float
    starts: int


def _objective(p: torch.Tensor, logN, logD, logL, delta: float) -> torch.Tensor:
    """Σ_i Huber_δ(LSE(a − α log N_i, b − β log D_i, e) − log L_i) for p = (a, b, e, α, β),
    or for each row of a batch of them (shape (..., 5))."""
    a, b, e, α, β = (x[..., None] for x in p.unbind(-1))
    log_pred = torch.logaddexp(torch.logaddexp(a - α * logN, b - β * logD), e)
    return F.huber_loss(log_pred, logL.expand_as(log_pred), delta=delta, reduction="none").sum(-1)


def _lbfgs(p0: torch.Tensor, logN, logD, logL, delta: float, max_iter: int):
    """Minimise the objective with L-BFGS from p0; the objective reached and the point."""
    p = p0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [p],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        value = _objective(p, logN, logD, logL, delta)
        value.backward()
        return value

    opt.step(closure)
    with torch.no_grad():
        return float(_objective(p, logN, logD, logL, delta)), p.detach()


#: Hoffmann et al.'s grid of starting points (Appendix D.2): α, β ∈ {0, 0.5, ..., 2},
#: e ∈ {−1, −0.5, ..., 1}, a, b ∈ {0, 5, ..., 25}.
_GRID = dict(
    a=np.arange(0, 30, 5.0),
    b=np.arange(0, 30, 5.0),
    e=np.arange(-1, 1.5, 0.5),
    alpha=np.arange(0, 2.5, 0.5),
    beta=np.arange(0, 2.5, 0.5),
)


def fit_scaling_law(
    N,
    D,
    L,
    *,
    delta: float = 1e-3,
    starts: int = 4,
    init: ChinchillaLaw | None = None,
    max_iter: int = 500,
) -> ScalingFit:
    """Fit L(N, D) = E + A / N^α + B / D^β to measured losses, as Hoffmann et al. did.

    Implements :prf:ref:`alg-scaling-law-fit`.

    In the variables a = log A, b = log B, e = log E the law reads
    log L = LSE(a − α log N, b − β log D, e); the fit minimises the Huber loss (``delta``
    δ = 10^-3) of the residuals of log L with L-BFGS in float64. Hoffmann et al. start
    L-BFGS from every point of a grid of 4500 and keep the best fit; to stay fast this
    evaluates the objective on that whole grid and starts L-BFGS from its ``starts`` best
    points only. ``init``, a law, adds one more start at its constants (a bootstrap refit
    starts from the fit to all runs). ``max_iter`` bounds the L-BFGS iterations per start.
    """
    N, D, L = _positive("N", N), _positive("D", D), _positive("L", L)
    if not (N.shape == D.shape == L.shape and N.ndim == 1):
        raise ValueError(
            f"N, D and L must be 1-D arrays of one length, got shapes {N.shape}, {D.shape}, "
            f"{L.shape}"
        )
    if len(N) < 5:
        raise ValueError(f"N, D and L must hold at least 5 runs (5 constants), got {len(N)}")
    delta = check_real("delta", delta, 0.0, low_open=True)
    starts = check_int("starts", starts, 0 if init is not None else 1)
    max_iter = check_int("max_iter", max_iter, 1)
    logN, logD, logL = (torch.tensor(np.log(x), dtype=torch.float64) for x in (N, D, L))
    grid = torch.tensor(list(itertools.product(*_GRID.values())), dtype=torch.float64)
    with torch.no_grad():
        order = torch.argsort(_objective(grid, logN, logD, logL, delta))
    inits = grid[order[:starts]]
    if init is not None:
        if not isinstance(init, ChinchillaLaw):
            raise TypeError(f"init must be a ChinchillaLaw or None, got {type(init).__name__}")
        p = [math.log(init.A), math.log(init.B), math.log(init.E), init.alpha, init.beta]
        inits = torch.cat([torch.tensor([p], dtype=torch.float64), inits])
    best = None
    with one_torch_thread():
        for p0 in inits:
            value, p = _lbfgs(p0, logN, logD, logL, delta, max_iter)
            if math.isfinite(value) and (best is None or value < best[0]):
                best = (value, p)
    value, (a, b, e, α, β) = best[0], best[1].tolist()
    law = ChinchillaLaw(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=α, beta=β)
    return ScalingFit(law, value, len(inits))


def bootstrap_scaling_fit(
    N,
    D,
    L,
    *,
    resamples: int = 100,
    seed: int = 0,
    delta: float = 1e-3,
    starts: int = 0,
    max_iter: int = 100,
    init: ChinchillaLaw | None = None,
) -> list[ChinchillaLaw]:
    """Refit on ``resamples`` bootstrap resamples of the runs (drawn with replacement, with
    a NumPy generator seeded by ``seed``): the spread of the fitted constants is their
    uncertainty. Each refit starts from the fit to all runs and from the ``starts`` best
    grid points, for at most ``max_iter`` L-BFGS iterations (a warm start needs few).
    ``init`` is that fit when the caller has it already (else it is computed here).
    Resamples with fewer than 5 distinct runs are drawn again."""
    N, D, L = _positive("N", N), _positive("D", D), _positive("L", L)
    if init is None:
        init = fit_scaling_law(N, D, L, delta=delta).law
    resamples = check_int("resamples", resamples, 1)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    laws = []
    while len(laws) < resamples:
        idx = rng.integers(len(N), size=len(N))
        if len(set(idx.tolist())) < 5:
            continue
        fit = fit_scaling_law(
            N[idx], D[idx], L[idx], delta=delta, starts=starts, init=init, max_iter=max_iter
        )
        laws.append(fit.law)
    return laws


# -- the ladder of small runs --------------------------------------------------------------------

#: The shape and recipe every run of the ladder shares: 2 layers, context 32, 16 windows of 32
#: characters (512 tokens) per update, learning rate 5·10^-3; :func:`scaling_ladder` sets the
#: width and the number of updates.
LADDER_CONFIG = TrainConfig(
    tokenizer="char",
    n_layer=2,
    n_head=2,
    n_embd=32,
    block_size=32,
    batch_size=16,
    max_iters=100,
    lr=5e-3,
    warmup_iters=10,
    beta2=0.99,
    eval_interval=100,
    eval_iters=20,
)


@dataclass(frozen=True)
class LadderRun:
    """One run of the ladder: its width, N (all parameters), D (tokens trained on), the final
    validation loss, and the seconds its training took (as logged when it was trained)."""

    n_embd: int
    max_iters: int
    N: int
    D: int
    loss: float
    seconds: float


def scaling_ladder(
    text: str | None = None,
    *,
    widths: tuple[int, ...] = (16, 32, 64, 96),
    iters: tuple[int, ...] = (100, 250, 625),
    config: TrainConfig = LADDER_CONFIG,
) -> list[LadderRun]:
    """Train (or load from the cache of :func:`cached_pretrain`) one run per width and per
    number of updates: ``config`` with ``n_embd`` set to each width and ``max_iters`` to each
    count (warmup a tenth of the run, the cosine ending with it, one evaluation at the end).

    The default text is :func:`~llmtrain.pretraining.stdlib_corpus`.
    """
    if text is None:
        from .corpora import stdlib_corpus

        text = stdlib_corpus()
    runs = []
    for d in widths:
        check_int("widths", d, config.n_head)
        for T in iters:
            T = check_int("iters", T, 10)
            cfg = replace(config, n_embd=d, max_iters=T, warmup_iters=T // 10, eval_interval=T)
            with one_torch_thread():
                result = cached_pretrain(text, cfg)
            N = parameter_count(result.model.config).total
            runs.append(
                LadderRun(
                    d, T, N, T * cfg.tokens_per_iter, result.val_loss, result.log[-1]["elapsed_s"]
                )
            )
    return runs


def ladder_choice(law: ChinchillaLaw, sizes, C: float, *, min_tokens: float = 1.0) -> Allocation:
    """The best of the model sizes ``sizes`` (parameters) for a budget of C FLOPs by ``law``:
    each size N gets D = C / (6N) tokens, and sizes with fewer than ``min_tokens`` are out.

    Raises ValueError naming ``C`` when the budget buys ``min_tokens`` for no size.
    """
    if not isinstance(law, ChinchillaLaw):
        raise TypeError(f"law must be a ChinchillaLaw, got {type(law).__name__}")
    sizes = _positive("sizes", sizes).ravel()
    C = check_real("C", C, 0.0, low_open=True)
    min_tokens = check_real("min_tokens", min_tokens, 0.0, low_open=True)
    D = C / (6 * sizes)
    ok = D >= min_tokens
    if not ok.any():
        need = 6 * sizes.min() * min_tokens
        raise ValueError(
            f"C must be at least 6 · N · min_tokens = {need:.4g} FLOPs for the smallest size "
            f"N = {sizes.min():.4g} to see {min_tokens:g} tokens, got {C:.4g}"
        )
    losses = np.where(ok, law.loss(sizes, np.where(ok, D, 1.0)), np.inf)
    i = int(np.argmin(losses))
    return Allocation(C, float(sizes[i]), float(D[i]), float(losses[i]))
