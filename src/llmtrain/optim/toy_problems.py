"""Small seeded models and data sets, and the minibatch training loop that runs them.

The demos of Part I train these models live, on every slider move, so everything here is
NumPy and small: a few hundred examples and a few dozen parameters train for hundreds of
steps in milliseconds.

- :class:`LeastSquares` and :class:`LogisticRegression` are linear models with a loss,
  its gradient on any minibatch, and the per-example gradients.
- :func:`linear_regression_data`, :func:`polynomial_regression_data` and
  :func:`two_class_data` make seeded data sets for them.
- :func:`train` runs minibatch SGD (:func:`sgd_step`) on one of them for some epochs and
  returns a :class:`TrainingRun`: the loss at every step, the training and validation loss
  after every epoch, and the step at which the run diverged, if it did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._checks import check_int, check_real, check_shape_match
from .minibatches import iterations_per_epoch, minibatches
from .minimize import DIVERGENCE_FACTOR
from .sgd import sgd_step

__all__ = [
    "LeastSquares",
    "LogisticRegression",
    "PolynomialTask",
    "TrainingRun",
    "linear_regression_data",
    "polynomial_regression_data",
    "train",
    "two_class_data",
]


class _LinearModel:
    """A linear model z = Xθ with a per-example loss ℓ(z, y); L is the mean over examples."""

    def __init__(self, X, y):
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D array (N, d), got shape {X.shape}")
        check_shape_match("y", y.shape, "X.shape[:1]", X.shape[:1])
        self.X, self.y = X, y

    @property
    def n(self) -> int:
        """Number of examples N."""
        return self.X.shape[0]

    @property
    def dim(self) -> int:
        """Number of parameters d."""
        return self.X.shape[1]

    def _rows(self, idx):
        return (self.X, self.y) if idx is None else (self.X[idx], self.y[idx])

    def loss(self, θ, idx=None) -> float:
        """The mean loss over the examples ``idx`` (all examples when None)."""
        X, y = self._rows(idx)
        return float(np.mean(self._loss(X @ θ, y)))

    def grad(self, θ, idx=None) -> np.ndarray:
        """The gradient of :meth:`loss` with respect to θ."""
        X, y = self._rows(idx)
        return X.T @ self._dloss(X @ θ, y) / X.shape[0]

    def loss_and_grad(self, θ, idx=None) -> tuple[float, np.ndarray]:
        """:meth:`loss` and :meth:`grad` together, selecting the examples once."""
        X, y = self._rows(idx)
        z = X @ θ
        return float(np.mean(self._loss(z, y))), X.T @ self._dloss(z, y) / X.shape[0]

    def per_example_grads(self, θ) -> np.ndarray:
        """The N per-example gradients ∇ℓ_i(θ), one per row, shape (N, d)."""
        return self.X * self._dloss(self.X @ θ, self.y)[:, None]


class LeastSquares(_LinearModel):
    """Linear regression with the squared error: ℓ_i(θ) = ½ (x_iᵀθ - y_i)².

    Parameters
    ----------
    X : array of shape (N, d)
        Features, one example per row.
    y : array of shape (N,)
        Targets.
    """

    @staticmethod
    def _loss(z, y):
        return 0.5 * (z - y) ** 2

    @staticmethod
    def _dloss(z, y):
        return z - y

    def solve(self) -> np.ndarray:
        """The least-squares minimiser of L (minimum-norm if it is not unique)."""
        return np.linalg.lstsq(self.X, self.y, rcond=None)[0]


class LogisticRegression(_LinearModel):
    """Two-class logistic regression: ℓ_i(θ) = log(1 + exp(z_i)) - y_i z_i, z_i = x_iᵀθ.

    This is the cross-entropy of the label y_i ∈ {0, 1} under the predicted probability
    σ(z_i) of class 1.
    """

    @staticmethod
    def _loss(z, y):
        return np.logaddexp(0.0, z) - y * z

    @staticmethod
    def _dloss(z, y):
        return 0.5 * (1.0 + np.tanh(0.5 * z)) - y  # σ(z) - y, without overflow

    def accuracy(self, θ) -> float:
        """The fraction of examples whose predicted class (z > 0) is the label."""
        return float(np.mean((self.X @ θ > 0) == (self.y > 0.5)))


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def linear_regression_data(
    n: int = 256,
    dim: int = 10,
    *,
    noise: float = 0.5,
    scales=None,
    seed: int = 0,
) -> LeastSquares:
    """A seeded linear-regression problem y = Xθ* + noise.

    Feature j is Gaussian with standard deviation ``scales[j]`` (spread log-evenly from 0.3 to
    3 when None, so that the curvatures of L differ by a factor 100 and the learning rate
    matters), θ* is standard normal and the noise is Gaussian with standard deviation
    ``noise``.
    """
    n = check_int("n", n, 1)
    dim = check_int("dim", dim, 1)
    noise = check_real("noise", noise, 0.0)
    rng = _rng(seed)
    scales = np.geomspace(0.3, 3.0, dim) if scales is None else np.asarray(scales, float)
    check_shape_match("scales", scales.shape, "(dim,)", (dim,))
    X = rng.standard_normal((n, dim)) * scales
    θ_star = rng.standard_normal(dim)
    return LeastSquares(X, X @ θ_star + noise * rng.standard_normal(n))


def _legendre_features(x, degree: int) -> np.ndarray:
    # Legendre polynomials are orthogonal on [-1, 1], so the features are far better
    # conditioned than the monomials 1, x, x², ... and plain SGD can fit them.
    return np.polynomial.legendre.legvander(np.asarray(x, float), degree)


@dataclass(frozen=True)
class PolynomialTask:
    """Noisy samples of a smooth curve, split into training and validation sets.

    The model is a polynomial of degree ``degree`` in the Legendre basis, fitted by least
    squares: ``train`` and ``val`` are the :class:`LeastSquares` problems on the two sets,
    and ``predict`` evaluates a fitted polynomial anywhere in [-1, 1].
    """

    degree: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    noise: float

    @staticmethod
    def target(x):
        """The true curve the data are sampled from: sin(πx) + ½x."""
        x = np.asarray(x, float)
        return np.sin(math.pi * x) + 0.5 * x

    def features(self, x) -> np.ndarray:
        """The Legendre features P_0(x), ..., P_degree(x), one row per point."""
        return _legendre_features(x, self.degree)

    @property
    def train(self) -> LeastSquares:
        """The least-squares problem on the training points."""
        return LeastSquares(self.features(self.x_train), self.y_train)

    @property
    def val(self) -> LeastSquares:
        """The least-squares problem on the validation points."""
        return LeastSquares(self.features(self.x_val), self.y_val)

    def predict(self, θ, x) -> np.ndarray:
        """The fitted polynomial with coefficients θ at the points x."""
        return self.features(x) @ θ


def polynomial_regression_data(
    n: int = 20,
    degree: int = 3,
    *,
    noise: float = 0.3,
    n_val: int = 200,
    seed: int = 0,
) -> PolynomialTask:
    """A seeded polynomial-regression task: ``n`` training and ``n_val`` validation points.

    The inputs are uniform on [-1, 1] and the targets are :meth:`PolynomialTask.target` plus
    Gaussian noise of standard deviation ``noise``. The same seed gives the same points for
    every ``degree`` (capacity) and the first ``n`` points do not depend on ``n``, so that a
    slider over the degree or the data size changes only that.
    """
    n = check_int("n", n, 1)
    degree = check_int("degree", degree, 0)
    noise = check_real("noise", noise, 0.0)
    n_val = check_int("n_val", n_val, 1)
    rng = _rng(seed)
    pool = 10_000
    x_pool = rng.uniform(-1.0, 1.0, pool)
    e_pool = rng.standard_normal(pool)
    n = min(n, pool // 2)
    x_val = rng.uniform(-1.0, 1.0, n_val)
    y_val = PolynomialTask.target(x_val) + noise * rng.standard_normal(n_val)
    x = x_pool[:n]
    return PolynomialTask(
        degree, x, PolynomialTask.target(x) + noise * e_pool[:n], x_val, y_val, noise
    )


def two_class_data(n: int = 200, *, separation: float = 2.0, seed: int = 0) -> LogisticRegression:
    """Two Gaussian clouds in the plane, labels 0 and 1, with a constant feature for the bias.

    The class means are ±``separation``/2 along the first axis, so larger separations are
    easier; the features are (1, x₁, x₂).
    """
    n = check_int("n", n, 2)
    separation = check_real("separation", separation, 0.0)
    rng = _rng(seed)
    y = (np.arange(n) % 2).astype(float)
    points = rng.standard_normal((n, 2))
    points[:, 0] += separation * (y - 0.5)
    X = np.column_stack([np.ones(n), points])
    return LogisticRegression(X, y)


@dataclass(frozen=True)
class TrainingRun:
    """The record of one run of :func:`train`.

    Attributes
    ----------
    theta : numpy.ndarray
        The final parameters (the best ones, if early stopping restored them).
    step_losses : numpy.ndarray
        The minibatch loss L_B(θ_{t-1}) of step t = 1, 2, ...: the noisy curve a training
        log shows.
    train_losses, val_losses : numpy.ndarray
        The loss on the whole training (validation) set after each epoch; entry 0 is before
        training. ``val_losses`` is empty without validation data.
    steps_per_epoch : int
        Iterations per epoch.
    thetas : numpy.ndarray
        The parameters after each epoch, shape (epochs + 1, d); row 0 is θ_0.
    diverged_at : int or None
        The first step t at which the loss was found not finite or above the divergence
        threshold (the minibatch loss before step t, or the training loss at the end of an
        epoch whose last step was t), as in :class:`Trajectory`; None if the run stayed
        finite. The recorded losses stop before it.
    stopped_epoch : int or None
        The epoch after which early stopping ended the run, or None.
    best_epoch : int or None
        The epoch with the best validation loss that early stopping saw, or None.
    """

    theta: np.ndarray
    step_losses: np.ndarray
    train_losses: np.ndarray
    val_losses: np.ndarray
    steps_per_epoch: int
    thetas: np.ndarray
    diverged_at: int | None = None
    stopped_epoch: int | None = None
    best_epoch: int | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.train_losses) - 1


def train(
    problem,
    θ0=None,
    *,
    lr: float = 0.05,
    batch_size: int = 32,
    epochs: int = 20,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    val=None,
    shuffle: bool = True,
    drop_last: bool = False,
    early_stopping=None,
    seed: int = 0,
) -> TrainingRun:
    """Train ``problem`` with minibatch SGD for ``epochs`` epochs.

    Implements :prf:ref:`alg-minibatch-epoch`: each epoch draws a fresh order of the
    examples (:func:`minibatches`), and each minibatch gives one step of :func:`sgd_step`
    with the gradient evaluated at the current parameters.

    Parameters
    ----------
    problem : LeastSquares or LogisticRegression
        Anything with ``n``, ``dim``, ``loss(θ, idx)`` and ``loss_and_grad(θ, idx)``.
    θ0 : array, optional
        Starting parameters; zeros when None.
    lr, momentum, weight_decay, nesterov
        Hyperparameters of :func:`sgd_step`.
    batch_size : int
        Batch size B in [1, N].
    epochs : int
        Number of epochs, ≥ 1.
    val : problem, optional
        Validation data, evaluated after every epoch.
    shuffle, drop_last
        As in :func:`minibatches`.
    early_stopping : EarlyStopping, optional
        Fed the validation loss after every epoch (needs ``val``); the run ends when it says
        so and returns the parameters of the best epoch. It is reset at the start.
    seed : int
        Seed of the shuffling: the same seed gives the same run.
    """
    epochs = check_int("epochs", epochs, 1)
    if early_stopping is not None and val is None:
        raise ValueError("early_stopping needs validation data: pass val=...")
    N = problem.n
    steps_per_epoch = iterations_per_epoch(N, batch_size, drop_last=drop_last)
    θ = np.zeros(problem.dim) if θ0 is None else np.array(θ0, dtype=float)
    check_shape_match("θ0", θ.shape, "(problem.dim,)", (problem.dim,))
    rng = np.random.default_rng(seed)
    hyper = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    sgd_step(θ, θ, {}, **hyper)  # validate the hyperparameters before the first step
    train_losses = [problem.loss(θ)]
    val_losses = [] if val is None else [val.loss(θ)]
    limit = DIVERGENCE_FACTOR * max(1.0, abs(train_losses[0]))
    if early_stopping is not None:
        early_stopping.reset()
        early_stopping.step(val_losses[0], θ)  # epoch 0 is step 0 of the stopping rule
    thetas, step_losses, state, t = [θ], [], {}, 0
    diverged_at = stopped_epoch = None
    for epoch in range(1, epochs + 1):
        for idx in minibatches(N, batch_size, shuffle=shuffle, drop_last=drop_last, seed=rng):
            t += 1
            loss, g = problem.loss_and_grad(θ, idx)
            if not (math.isfinite(loss) and loss <= limit):
                diverged_at = t
                break
            step_losses.append(loss)
            θ, state = sgd_step(θ, g, state, **hyper)
        if diverged_at is None:
            loss = problem.loss(θ)
            if not (math.isfinite(loss) and loss <= limit):
                diverged_at = t
        if diverged_at is not None:
            break
        train_losses.append(loss)
        thetas.append(θ)
        if val is not None:
            val_losses.append(val.loss(θ))
        if early_stopping is not None and early_stopping.step(val_losses[-1], θ):
            stopped_epoch = epoch
            break
    best_epoch = None
    if early_stopping is not None:
        best_epoch = early_stopping.best_step
        θ = early_stopping.best_params
    return TrainingRun(
        theta=θ,
        step_losses=np.array(step_losses),
        train_losses=np.array(train_losses),
        val_losses=np.array(val_losses),
        steps_per_epoch=steps_per_epoch,
        thetas=np.array(thetas),
        diverged_at=diverged_at,
        stopped_epoch=stopped_epoch,
        best_epoch=best_epoch,
    )
