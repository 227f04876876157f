"""Claims the chapters make in prose about what a cell or a demo outputs, checked by running
the package code at exactly the settings the prose names. Numbers the chapters glue from a
cell are not repeated here; these are the ones stated in words ("diverges", "about 0.2")."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# ---------------------------------------------------------------- optimization/sgd.md


@pytest.fixture(scope="module")
def lr_demo():
    from llmtrain.demos.optimization.sgd import learning_rate_demo

    return learning_rate_demo()


def final(run):
    return np.inf if run.diverged else run.train_losses[-1]


def test_sgd_variance_falls_by_four_then_five_and_reaches_zero():
    from llmtrain.optim import linear_regression_data, measure_gradient_variance

    problem = linear_regression_data(256, 5, seed=0)
    result = measure_gradient_variance(problem, problem.solve(), [1, 4, 16, 64, 256], samples=4000)
    m = result.measured
    assert 3.8 < m[0] / m[1] < 4.3 and 3.8 < m[1] / m[2] < 4.3  # "about a factor of 4"
    assert 4.8 < m[2] / m[3] < 5.5  # "a factor of 5 from 16 to 64"
    assert m[4] < 1e-20  # "reaches 0 at B = N"


def test_sgd_sweep_bottoms_out_near_01_and_diverges_beyond_02():
    from llmtrain.demos.optimization.sgd import learning_rate_sweep

    fig, ax = plt.subplots()
    lrs, losses = learning_rate_sweep(ax)
    plt.close(fig)
    assert lrs[np.argmin(losses)] == pytest.approx(0.1, rel=0.05)
    assert np.all(np.isfinite(losses[lrs < 0.2])) and np.all(np.isinf(losses[lrs > 0.2]))
    assert np.all(np.diff(losses[lrs <= 0.1]) < 0)  # "the loss falls as α grows"


def test_sgd_things_to_try_without_momentum(lr_demo):
    floor = lr_demo.fixed["problem"].loss(lr_demo.fixed["problem"].solve())
    # From 1e-3 (slow) to about 0.1 (good); past about 0.2 the run diverges.
    assert final(lr_demo.compute(lr=1e-3)) > 10 * floor
    assert final(lr_demo.compute(lr=0.1)) < 1.15 * floor
    start = lr_demo.fixed["problem"].loss(np.zeros(lr_demo.fixed["problem"].dim))
    assert final(lr_demo.compute(lr=0.2)) < 1.25 * floor
    assert final(lr_demo.compute(lr=0.22)) > start and lr_demo.compute(lr=0.23).diverged
    # Batch size 1 at α = 0.1 diverges; near 0.008 it trains well, as well as B = 16 at 0.1.
    assert lr_demo.compute(lr=0.1, batch_size=1).diverged
    good = final(lr_demo.compute(lr=0.008, batch_size=1))
    assert good < 1.1 * floor
    best = min(final(lr_demo.compute(lr=a, batch_size=1)) for a in np.geomspace(1e-3, 0.1, 17))
    assert good < 1.01 * best
    # B = 128: 10 epochs are 10 steps, and even the best rate is far from the floor.
    full = [lr_demo.compute(lr=a, batch_size=128) for a in np.geomspace(1e-3, 0.2, 12)]
    assert all(len(run.step_losses) == 10 for run in full)
    assert min(final(run) for run in full) > 2 * floor


def test_sgd_things_to_try_with_momentum(lr_demo):
    floor = lr_demo.fixed["problem"].loss(lr_demo.fixed["problem"].solve())
    # "between about 0.01 and 0.03" the runs end near the floor ...
    for a in (0.01, 0.015, 0.02, 0.025, 0.03):
        assert final(lr_demo.compute(lr=a, momentum=0.9)) < 1.15 * floor
    # ... "and from about 0.12 on it blows up" (the loss ends far above where it started).
    start = lr_demo.fixed["problem"].loss(np.zeros(lr_demo.fixed["problem"].dim))
    for a in (0.12, 0.15, 0.2, 0.3):
        assert final(lr_demo.compute(lr=a, momentum=0.9)) > start


# ---------------------------------------------------------------- optimization/momentum.md


def test_momentum_measured_rate_at_the_optimum_is_within_half_a_percent():
    from llmtrain.optim import Quadratic, minimize, optimal_heavy_ball, sgd_step

    problem = Quadratic(curvatures=(1.0, 100.0), angle=0.6, start=(1.0, -0.7))
    α, μ, rate = optimal_heavy_ball(1.0, 100.0)
    error = np.linalg.norm(minimize(sgd_step, problem, steps=400, lr=α, momentum=μ).thetas, axis=1)
    assert abs((error[400] / error[200]) ** (1 / 200) / rate - 1) < 0.005


def test_momentum_valley_things_to_try():
    from llmtrain.demos.optimization.momentum import valley_demo
    from llmtrain.optim import optimal_heavy_ball

    demo = valley_demo()
    α, μ, _ = optimal_heavy_ball(1 / 200, 1.0)  # Polyak's optimum for κ = 200
    assert round(α, 1) == 3.5 and round(μ, 2) == 0.75
    stalled = demo.compute(momentum=0.0, kappa=200.0)
    assert stalled.rates[0] > 0.99  # "progress along the valley floor all but stops"
    fast = demo.compute(lr=α, momentum=μ, kappa=200.0)
    assert fast.momentum.losses[-1] < 1e-4 * stalled.gd.losses[-1]
    runs = demo.compute(lr=3.0, momentum=0.8)  # GD diverges, heavy ball does not
    assert runs.gd.diverged and not runs.momentum.diverged
    assert demo.compute(lr=4.0, momentum=0.5).momentum.diverged


def test_momentum_gradient_descent_crawls_on_rosenbrock():
    from llmtrain.optim import Rosenbrock, minimize, sgd_step

    problem = Rosenbrock()
    gd = minimize(sgd_step, problem, steps=1000, lr=1e-3)
    assert gd.losses[-1] > 1 and np.linalg.norm(gd.thetas[-1] - 1) > 1
    for nesterov in (False, True):
        run = minimize(sgd_step, problem, steps=1000, lr=1e-3, momentum=0.9, nesterov=nesterov)
        assert run.losses[-1] < 1e-4 and np.linalg.norm(run.thetas[-1] - 1) < 0.02


# ---------------------------------------------------------------- optimization/adaptive.md


def test_adaptive_paths_sgd_diverges_past_008_adagrad_is_slowest():
    from llmtrain.demos.optimization.adaptive import adaptive_paths_demo

    demo = adaptive_paths_demo()
    start = demo.compute()["SGD"].losses[0]
    assert demo.compute(lr=0.078)["SGD"].losses[-1] < 0.1 * start
    assert demo.compute(lr=0.081)["SGD"].losses[-1] > start
    assert demo.compute(lr=0.085)["SGD"].diverged
    # At the default α, AdaGrad's shrinking steps leave it far behind the other rules.
    final = {name: run.losses[-1] for name, run in demo.compute().items()}
    assert final["AdaGrad"] > 100 * max(final["SGD"], final["RMSProp"], final["Adam"])


def test_adaptive_adamw_settles_slightly_above_its_stationary_point():
    from llmtrain.demos.optimization.adaptive import weight_decay_comparison

    θ = weight_decay_comparison(weight_decay=0.5, lr=0.01)["theta"]["AdamW"]
    assert 0.786 < θ.mean() < 0.786 + 0.03  # θ* ≈ 0.786 (the exercise's bisection)


# ---------------------------------------------------------------- optimization/learning-curves.md

NOISE_FLOOR = 0.5 * 0.3**2


def test_learning_curves_capacity_regimes():
    from llmtrain.demos.optimization.learning_curves import capacity_sweep

    fig, (left, right) = plt.subplots(1, 2)
    _, train, val = capacity_sweep(left, n=20)
    _, _, val_60 = capacity_sweep(right, n=60)
    plt.close(fig)
    # Underfitting at D <= 2: the training loss far above the floor, validation about as high.
    assert np.all(train[:3] > 2 * NOISE_FLOOR) and np.all(val[:3] < 1.5 * train[:3])
    # A good fit at D = 3 or 4: both losses near the floor and close to each other.
    assert np.all(np.abs(np.r_[train[3:5], val[3:5]] / NOISE_FLOOR - 1) < 0.5)
    # Overfitting: training below the floor; validation up by more than 10x from D = 11 on.
    assert np.all(train[5:] < NOISE_FLOOR)
    assert np.all(val[11:] > 10 * val.min()) and np.all(val[3:11] < 10 * val.min())
    assert val_60[3:].max() < 0.1 < val[11:].min()  # three times the data: far less overfitting


@pytest.fixture(scope="module")
def stopping_demo():
    from llmtrain.demos.optimization.learning_curves import early_stopping_demo

    return early_stopping_demo()


def test_learning_curves_things_to_try(stopping_demo):
    default = stopping_demo.compute()
    val = default.run.val_losses
    # Degree 3: no overfitting, and early stopping loses nothing.
    d3 = stopping_demo.compute(degree=3).run.val_losses
    kept = d3[stopping_demo.compute(degree=3).best]
    assert d3[-1] < 1.05 * d3.min() and kept < 1.05 * d3.min()
    # Degree 1: both curves stay high (underfitting).
    d1 = stopping_demo.compute(degree=1).run
    assert d1.train_losses[-1] > 2 * NOISE_FLOOR and d1.val_losses.min() > 2 * NOISE_FLOOR
    # 60 points: the validation curve rises much less after its minimum, and the minimum is lower.
    v60 = stopping_demo.compute(n=60).run.val_losses
    assert v60.min() < val.min()
    assert v60[-1] / v60.min() - 1 < 0.5 * (val[-1] / val.min() - 1)
    # Patience 0 stops one epoch after the minimum and keeps it.
    p0 = stopping_demo.compute(patience=0)
    assert p0.best == int(np.argmin(val)) and p0.stop == p0.best + 1
    # α = 0.02: the minimum is not reached within 150 epochs.
    slow = stopping_demo.compute(lr=0.02).run.val_losses
    assert len(slow) == 151 and int(np.argmin(slow)) == 150


# ---------------------------------------------------------------- objectives/losses.md


def test_losses_naive_formula_overflows_where_log_sum_exp_is_exact():
    import torch

    from llmtrain.objectives import cross_entropy

    z = torch.tensor([[1e4, 0.0, -1e4]], dtype=torch.float64)
    assert torch.isinf(-(z[0, 0] - torch.log(torch.exp(z).sum())))
    assert cross_entropy(z, torch.tensor([0])).item() == 0.0
    assert cross_entropy(z, torch.tensor([1])).item() == 1e4


# ---------------------------------------------------------------- overview.md


def test_overview_things_to_try():
    from llmtrain.demos.overview import momentum_demo

    demo = momentum_demo()
    orders = lambda run: np.log10(run.losses[0] / run.losses[-1])  # noqa: E731
    default = orders(demo.compute())
    assert default > 10  # glued in the chapter as "more than 10 orders of magnitude"
    assert orders(demo.compute(momentum=0.0)) < default - 3  # μ = 0: much more slowly
    assert orders(demo.compute(momentum=0.99)) < 1  # μ near 0.99: slow as well
    # Past α = 2/20 = 0.1 with μ = 0 the run blows up; from 0.11 the figure reports it.
    assert demo.compute(lr=0.099, momentum=0.0).diverged_at is None
    assert orders(demo.compute(lr=0.099, momentum=0.0)) > 0
    assert orders(demo.compute(lr=0.101, momentum=0.0)) < 0
    assert demo.compute(lr=0.11, momentum=0.0).diverged_at is not None
