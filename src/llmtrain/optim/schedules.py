"""Learning-rate schedules: pure functions of the step, and an adapter for ``torch.optim``.

Every schedule is a function ``schedule(t, **hyperparameters) -> α_t`` of the update step
t = 1, 2, ... (the book's convention: update t uses α_t). It accepts a single integer or a
NumPy array of integers, so a whole curve is one call. :class:`ScheduledLR` lets any such
function drive any ``torch.optim`` optimizer.

PyTorch counts its scheduler steps from 0: the lr a ``torch.optim.lr_scheduler`` holds after
t − 1 calls to ``scheduler.step()`` is the one the t-th update uses, our α_t.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from numbers import Integral

import numpy as np
import torch

from .._checks import check_int, check_real

__all__ = [
    "ScheduledLR",
    "linear_warmup",
    "noam",
    "one_cycle",
    "sgdr",
    "step_decay",
    "warmup_cosine",
]


def _steps(t):
    """Validate the step(s) ``t``: an integer >= 1 or an integer array of them.

    Returns the steps as a float64 array and a flag saying whether ``t`` was a scalar."""
    if isinstance(t, Integral) and not isinstance(t, bool):
        check_int("t", t, 1)
        return np.array(float(t)), True
    a = np.asarray(t)
    if a.dtype.kind not in "iu":
        raise TypeError(f"t must be an integer or an integer array, got {t!r}")
    if a.size and a.min() < 1:
        raise ValueError(f"t must be an integer in [1, inf], got {int(a.min())}")
    return a.astype(np.float64), False


def _out(α: np.ndarray, scalar: bool):
    return float(α) if scalar else α


def _check_floor(min_lr, lr):
    α_min = check_real("min_lr", min_lr, 0.0)
    if α_min > lr:
        raise ValueError(f"min_lr must be in [0, lr] = [0, {lr:g}], got {min_lr!r}")
    return α_min


# -- step decay ------------------------------------------------------------------------------


def step_decay(t, *, lr: float, step_size: int, gamma: float = 0.1):
    """Step decay: multiply the learning rate by γ every ``step_size`` updates.

    Implements :prf:ref:`alg-step-decay`: α_t = α_max γ^⌊(t − 1)/S⌋, the schedule of
    ``torch.optim.lr_scheduler.StepLR``.

    Parameters
    ----------
    t : int or array of int
        Update step(s), t ≥ 1.
    lr : float
        Initial (and largest) learning rate α_max ≥ 0.
    step_size : int
        Period S ≥ 1, in updates.
    gamma : float
        Decay factor γ in (0, 1].
    """
    ts, scalar = _steps(t)
    α_max = check_real("lr", lr, 0.0)
    S = check_int("step_size", step_size, 1)
    γ = check_real("gamma", gamma, 0.0, 1.0, low_open=True)
    return _out(α_max * γ ** np.floor((ts - 1) / S), scalar)


# -- linear warmup and cosine decay -----------------------------------------------------------


def linear_warmup(t, *, lr: float, warmup: int):
    """Linear warmup to a constant: α_t = α_max min(1, t / T_w).

    Implements :prf:ref:`alg-linear-warmup`. The first update uses α_max / T_w and update
    T_w the full rate α_max; ``warmup=0`` gives the constant α_max.

    Parameters
    ----------
    t : int or array of int
        Update step(s), t ≥ 1.
    lr : float
        Peak learning rate α_max ≥ 0.
    warmup : int
        Warmup length T_w ≥ 0, in updates.
    """
    ts, scalar = _steps(t)
    α_max = check_real("lr", lr, 0.0)
    T_w = check_int("warmup", warmup, 0)
    if T_w == 0:
        return _out(np.full_like(ts, α_max), scalar)
    return _out(α_max * np.minimum(1.0, ts / T_w), scalar)


def warmup_cosine(t, *, lr: float, total: int, warmup: int = 0, min_lr: float = 0.0):
    """Linear warmup, then cosine decay to a floor, then the floor.

    Implements :prf:ref:`alg-warmup-cosine`:

    - α_t = α_max t / T_w for t ≤ T_w;
    - α_t = α_min + (α_max − α_min)(1 + cos(π (t − T_w) / (T − T_w))) / 2 for T_w < t ≤ T;
    - α_t = α_min for t > T (GPT-3 continues training at the floor).

    Parameters
    ----------
    t : int or array of int
        Update step(s), t ≥ 1.
    lr : float
        Peak learning rate α_max ≥ 0.
    total : int
        Step T ≥ 1 at which the decay reaches the floor.
    warmup : int
        Warmup length T_w in [0, T − 1].
    min_lr : float
        Floor α_min in [0, α_max] (GPT-3: α_max / 10).
    """
    ts, scalar = _steps(t)
    α_max = check_real("lr", lr, 0.0)
    T = check_int("total", total, 1)
    T_w = check_int("warmup", warmup, 0, T - 1)
    α_min = _check_floor(min_lr, α_max)
    progress = np.clip((ts - T_w) / (T - T_w), 0.0, 1.0)
    α = α_min + 0.5 * (α_max - α_min) * (1.0 + np.cos(math.pi * progress))
    if T_w:
        α = np.where(ts <= T_w, α_max * ts / T_w, α)
    return _out(α, scalar)


# -- one-cycle ---------------------------------------------------------------------------------


def one_cycle(
    t,
    *,
    max_lr: float,
    total: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
    three_phase: bool = False,
):
    """The one-cycle policy of Smith & Topin, as ``torch.optim.lr_scheduler.OneCycleLR`` for t ≤ T.

    Implements :prf:ref:`alg-one-cycle`. With the phase ends E_1 = p_rise T − 1 (and
    E_2 = 2 p_rise T − 2 in the three-phase form), the rate at step t is annealed, as a
    function of t − 1, from α_max / div to α_max on [0, E_1], then (two phases) from α_max
    down to α_max / (div · div_final) on [E_1, T − 1], or (three phases) back to
    α_max / div on [E_1, E_2] and down to α_max / (div · div_final) on [E_2, T − 1].

    Parameters
    ----------
    t : int or array of int
        Update step(s), t ≥ 1; after the cycle (t > T) the rate stays at
        α_max / (div · div_final). (``OneCycleLR`` differs there: it extrapolates the last
        phase for t = T + 1 and raises ``ValueError`` when stepped further.)
    max_lr : float
        Peak learning rate α_max ≥ 0.
    total : int
        Number of updates T in the cycle.
    pct_start : float
        Fraction p_rise of the cycle spent increasing; each phase must span at least one update.
    div_factor : float
        div ≥ 1: the cycle starts at α_max / div.
    final_div_factor : float
        div_final ≥ 1: the cycle ends at α_max / (div · div_final).
    anneal : {"cos", "linear"}
        Shape of each phase.
    three_phase : bool
        Use the symmetric three-phase form.
    """
    ts, scalar = _steps(t)
    α_max = check_real("max_lr", max_lr, 0.0)
    T = check_int("total", total, 2)
    p_rise = check_real("pct_start", pct_start, 0.0, 1.0)
    div = check_real("div_factor", div_factor, 1.0)
    div_final = check_real("final_div_factor", final_div_factor, 1.0)
    if anneal not in ("cos", "linear"):
        raise ValueError(f"anneal must be 'cos' or 'linear', got {anneal!r}")
    E1 = p_rise * T - 1
    ends = [E1, 2 * p_rise * T - 2, T - 1] if three_phase else [E1, T - 1]
    if not (E1 > 0 and all(b > a for a, b in itertools.pairwise(ends))):
        phases = "three phases" if three_phase else "two phases"
        raise ValueError(
            f"pct_start={pct_start!r} with total={T} leaves a phase of the cycle empty; "
            f"it needs 1 < pct_start * total and each of the {phases} at least one update"
        )
    α0, α_end = α_max / div, α_max / (div * div_final)
    levels = [α0, α_max, α0, α_end] if three_phase else [α0, α_max, α_end]

    def shape(α_from, α_to, prog):
        if anneal == "cos":
            return α_to + (α_from - α_to) / 2.0 * (np.cos(math.pi * prog) + 1.0)
        return (α_to - α_from) * prog + α_from

    before = np.minimum(ts, T) - 1  # t − 1; after the cycle, the rate stays at its final value
    α = np.empty_like(before)
    start = 0.0
    for i, end in enumerate(ends):
        last = i == len(ends) - 1
        # Each step belongs to the first phase whose end it does not pass (torch's rule).
        inside = (before <= end) | last
        if i:
            inside &= before > ends[i - 1]
        α[inside] = shape(levels[i], levels[i + 1], (before[inside] - start) / (end - start))
        start = end
    return _out(α, scalar)


# -- Noam ----------------------------------------------------------------------------------


def noam(t, *, d_model: int, warmup: int, scale: float = 1.0):
    """The Transformer's schedule: α_t = scale · d_model^(−1/2) min(t^(−1/2), t T_w^(−3/2)).

    Implements :prf:ref:`alg-noam`: linear growth for T_w steps, then decay as 1/√t, with
    the peak scale / √(d_model T_w) at t = T_w (Vaswani et al.: scale = 1, T_w = 4000).

    Parameters
    ----------
    t : int or array of int
        Update step(s), t ≥ 1.
    d_model : int
        Model width d_model ≥ 1.
    warmup : int
        Warmup length T_w ≥ 1.
    scale : float
        Overall factor scale > 0.
    """
    ts, scalar = _steps(t)
    d_model = check_int("d_model", d_model, 1)
    T_w = check_int("warmup", warmup, 1)
    scale = check_real("scale", scale, 0.0, low_open=True)
    return _out(scale * d_model**-0.5 * np.minimum(ts**-0.5, ts * T_w**-1.5), scalar)


# -- SGDR ----------------------------------------------------------------------------------


def sgdr(t, *, lr: float, T_0: int, T_mult: int = 1, min_lr: float = 0.0):
    """Cosine annealing with warm restarts (SGDR), as ``CosineAnnealingWarmRestarts``.

    Implements :prf:ref:`alg-sgdr`: α_t = α_min + (α_max − α_min)(1 + cos(π T_cur / T_i)) / 2,
    where cycle i lasts T_i = T_0 T_mult^i updates and T_cur counts the updates made since
    the last restart (T_cur = t − 1 in the first cycle).

    Parameters
    ----------
    t : int or array of int
        Update step(s), t ≥ 1.
    lr : float
        Rate α_max ≥ 0 at each restart.
    T_0 : int
        Length of the first cycle, ≥ 1.
    T_mult : int
        Growth factor of the cycle length, ≥ 1.
    min_lr : float
        Floor α_min in [0, α_max].
    """
    ts, scalar = _steps(t)
    α_max = check_real("lr", lr, 0.0)
    T_0 = check_int("T_0", T_0, 1)
    T_mult = check_int("T_mult", T_mult, 1)
    α_min = _check_floor(min_lr, α_max)
    before = ts - 1  # updates made before step t
    if T_mult == 1:
        T_i = np.full_like(before, T_0)
        T_cur = np.mod(before, T_0)
    else:
        # Cycle i starts after T_0 (T_mult^i − 1) / (T_mult − 1) updates; exact in integers.
        top = float(before.max()) if before.size else 0.0
        starts = [0]
        while starts[-1] <= top:
            starts.append(starts[-1] + T_0 * T_mult ** (len(starts) - 1))
        starts = np.array(starts, dtype=np.float64)
        i = np.searchsorted(starts, before, side="right") - 1
        T_i = T_0 * float(T_mult) ** i
        T_cur = before - starts[i]
    return _out(α_min + 0.5 * (α_max - α_min) * (1.0 + np.cos(math.pi * T_cur / T_i)), scalar)


# -- driving torch.optim -------------------------------------------------------------------


class ScheduledLR(torch.optim.lr_scheduler.LRScheduler):
    """Drive any ``torch.optim`` optimizer with schedules ``t -> α_t``.

    Call ``scheduler.step()`` after each ``optimizer.step()``, as with any PyTorch scheduler.
    Update t (t = 1, 2, ...) then runs with ``schedule(t)``: the constructor sets α_1, and
    the (t − 1)-th call to ``step()`` sets α_t. The optimizer's own ``lr`` is overwritten.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        The optimizer whose ``group["lr"]`` values to set.
    schedule : callable or sequence of callables
        One function ``t -> α_t`` for all parameter groups, or one per group, for example
        ``functools.partial(warmup_cosine, lr=3e-4, total=1000, warmup=50)``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: Callable[[int], float] | Sequence[Callable[[int], float]],
        last_epoch: int = -1,
    ):
        groups = len(optimizer.param_groups)
        schedules = list(schedule) if isinstance(schedule, Sequence) else [schedule] * groups
        if len(schedules) != groups:
            raise ValueError(
                f"schedule must be one callable or one per parameter group ({groups}), "
                f"got {len(schedules)}"
            )
        for s in schedules:
            if not callable(s):
                raise TypeError(f"schedule must be callable t -> lr, got {s!r}")
        self.schedules = schedules
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The rate of the next update, t = (scheduler steps taken) + 1, for each group."""
        t = self.last_epoch + 1
        return [float(s(t)) for s in self.schedules]

    _get_closed_form_lr = get_lr

    def state_dict(self) -> dict:
        """The scheduler's state, without the schedule functions (as ``LambdaLR`` does)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "schedules")}
