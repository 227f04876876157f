"""Early stopping with patience: end training when the validation loss stops improving.

The rule watches one number per evaluation (usually the validation loss after each epoch),
remembers the best value and the parameters that gave it, and says "stop" once ``patience``
evaluations in a row have failed to improve on the best by more than ``min_delta``. The
parameters to keep are then the remembered ones, from the minimum of the validation curve,
not the last ones.
"""

from __future__ import annotations

import copy
import math
from numbers import Real

from .._checks import check_int, check_real

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Early stopping with patience, and the parameters of the best evaluation.

    Implements :prf:ref:`alg-early-stopping`.

    Parameters
    ----------
    patience : int
        P ≥ 0: how many evaluations in a row may fail to improve before the rule stops
        (0 stops at the first evaluation that does not improve).
    min_delta : float
        Δ ≥ 0: an evaluation improves only if it beats the best so far by more than Δ.
    mode : str
        ``"min"`` for a loss (lower is better), ``"max"`` for a score such as accuracy.

    Attributes
    ----------
    best : float
        L_best: the best value seen so far (inf, or -inf in ``"max"`` mode, before the first).
    best_step : int or None
        j_best: the index (evaluations j = 0, 1, 2, ...) of the evaluation that gave
        :attr:`best`.
    best_params : object
        A deep copy of the ``params`` passed with the best evaluation: what to restore.
    wait : int
        n_wait: evaluations since the best one.
    stopped_step : int or None
        The index of the evaluation at which the rule said stop, or None.

    Notes
    -----
    A value that is not finite (a diverged run) never counts as an improvement.
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0, mode: str = "min"):
        self.patience = check_int("patience", patience, 0)
        self.min_delta = check_real("min_delta", min_delta, 0.0)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        """Forget everything seen, to watch a new run."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_step: int | None = None
        self.best_params = None
        self.wait = 0
        self.steps = 0
        self.stopped_step: int | None = None

    def improves(self, value: float) -> bool:
        """Whether ``value`` would count as an improvement on the best so far."""
        if not math.isfinite(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value: float, params=None) -> bool:
        """Record one evaluation; return True when training should stop.

        Parameters
        ----------
        value : float
            The monitored quantity at this evaluation, e.g. the validation loss.
        params : object, optional
            The parameters that gave ``value``; a copy is kept if it is the best so far.
        """
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"value must be a real number, got {value!r}")
        value = float(value)
        if self.improves(value):
            self.best, self.best_step, self.wait = value, self.steps, 0
            self.best_params = copy.deepcopy(params)
        else:
            self.wait += 1
        self.steps += 1
        if self.wait >= self.patience and self.stopped_step is None and self.wait > 0:
            self.stopped_step = self.steps - 1
        return self.stopped_step is not None

    @property
    def stopped(self) -> bool:
        return self.stopped_step is not None

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
            f"mode={self.mode!r})"
        )
