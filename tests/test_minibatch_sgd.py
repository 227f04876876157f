"""Minibatches and epochs, the training loop, gradient noise and batch-size scaling rules.

References: torch.utils.data.DataLoader (batch composition), a torch.optim.SGD training loop
(the whole run), exact enumeration of all minibatches (the variance formulas), and
torch.optim.lr_scheduler.LinearLR (gradual warmup).
"""

import itertools
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from chapters import run_solution
from llmtrain.demos.optimization.sgd import (
    REGRESSION,
    gradient_noise_demo,
    learning_rate_demo,
    learning_rate_sweep,
)
from llmtrain.optim import (
    LeastSquares,
    LogisticRegression,
    iterations_per_epoch,
    linear_regression_data,
    linear_scaling_rule,
    linear_scaling_warmup,
    measure_gradient_variance,
    minibatch_gradient_variance,
    minibatches,
    polynomial_regression_data,
    square_root_scaling_rule,
    train,
    two_class_data,
)

# -- minibatches and epochs --------------------------------------------------------------------


def _loader_batches(order, batch_size, drop_last):
    loader = DataLoader(
        list(range(len(order))), batch_size, sampler=list(order), drop_last=drop_last
    )
    return [b.tolist() for b in loader]


@pytest.mark.algorithm("alg-minibatch-epoch")
@pytest.mark.parametrize("seed", range(20))
def test_minibatches_match_the_DataLoader(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    B = int(rng.integers(1, n + 1))
    drop_last = bool(rng.random() < 0.5)
    # In order: DataLoader's default SequentialSampler.
    ours = [b.tolist() for b in minibatches(n, B, shuffle=False, drop_last=drop_last)]
    theirs = [b.tolist() for b in DataLoader(list(range(n)), B, drop_last=drop_last)]
    assert ours == theirs
    # Shuffled: the same permutation fed to the DataLoader as its sampler.
    ours = [b.tolist() for b in minibatches(n, B, drop_last=drop_last, seed=seed)]
    order = np.random.default_rng(seed).permutation(n)
    assert ours == _loader_batches(order, B, drop_last)
    assert len(ours) == iterations_per_epoch(n, B, drop_last=drop_last)


@pytest.mark.algorithm("alg-minibatch-epoch")
def test_the_last_batch_is_smaller_unless_dropped():
    batches = minibatches(1000, 64, seed=1)
    assert len(batches) == 16 == math.ceil(1000 / 64)
    assert [len(b) for b in batches] == [64] * 15 + [40]
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))  # each example once
    dropped = minibatches(1000, 64, drop_last=True, seed=1)
    assert [len(b) for b in dropped] == [64] * 15
    assert (
        iterations_per_epoch(1000, 64) == 16
        and iterations_per_epoch(1000, 64, drop_last=True) == 15
    )
    assert iterations_per_epoch(1024, 64) == iterations_per_epoch(1024, 64, drop_last=True) == 16
    # A torch DataLoader over a real dataset agrees.
    sizes = [len(b) for b in DataLoader(torch.arange(1000), batch_size=64, shuffle=True)]
    assert sizes == [64] * 15 + [40]


def test_minibatches_are_seeded_and_a_generator_gives_new_epochs():
    np.testing.assert_array_equal(
        np.concatenate(minibatches(50, 8, seed=3)), np.concatenate(minibatches(50, 8, seed=3))
    )
    rng = np.random.default_rng(0)
    first, second = (np.concatenate(minibatches(50, 8, seed=rng)) for _ in range(2))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize(
    ("n", "B", "drop_last", "error", "message"),
    [
        (10, 0, False, ValueError, r"batch_size must be an integer in \[1, 10\], got 0"),
        (10, -3, False, ValueError, r"batch_size must be an integer in \[1, 10\], got -3"),
        (10, 11, False, ValueError, r"batch_size must be an integer in \[1, 10\], got 11"),
        (10, 11, True, ValueError, r"batch_size must be an integer in \[1, 10\], got 11"),
        (0, 1, False, ValueError, r"n must be an integer in \[1, inf\], got 0"),
        (10, 2.5, False, TypeError, "batch_size must be an integer"),
    ],
)
def test_bad_batch_sizes_name_the_argument_and_range(n, B, drop_last, error, message):
    with pytest.raises(error, match=message):
        minibatches(n, B, drop_last=drop_last)
    with pytest.raises(error, match=message):
        iterations_per_epoch(n, B, drop_last=drop_last)


# -- the training loop ---------------------------------------------------------------------------


def _torch_run(problem, lr, momentum, nesterov, weight_decay, B, epochs, seed, drop_last):
    """The same run, written as an ordinary PyTorch training loop with torch.optim.SGD."""
    X, y = torch.tensor(problem.X), torch.tensor(problem.y)
    model = torch.nn.Linear(problem.dim, 1, bias=False, dtype=torch.float64)
    torch.nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )
    rng = np.random.default_rng(seed)
    params = []
    for _ in range(epochs):
        order = rng.permutation(problem.n)
        loader = DataLoader(TensorDatasetLike(X, y), B, sampler=list(order), drop_last=drop_last)
        for xb, yb in loader:
            opt.zero_grad()
            loss = 0.5 * torch.nn.functional.mse_loss(model(xb).squeeze(1), yb)
            loss.backward()
            opt.step()
        params.append(model.weight.detach().squeeze(0).numpy().copy())
    return params


class TensorDatasetLike(torch.utils.data.TensorDataset):
    pass


@pytest.mark.algorithm("alg-minibatch-epoch")
@pytest.mark.parametrize("seed", range(8))
def test_train_matches_a_torch_training_loop(seed):
    rng = np.random.default_rng(100 + seed)
    problem = linear_regression_data(int(rng.integers(20, 80)), 4, seed=seed)
    momentum = float(rng.choice([0.0, rng.uniform(0.2, 0.9)]))
    kwargs = dict(
        lr=float(10 ** rng.uniform(-2.5, -1.3)),
        momentum=momentum,
        nesterov=bool(momentum > 0 and rng.random() < 0.5),
        weight_decay=float(rng.choice([0.0, 0.01])),
    )
    B = int(rng.integers(1, problem.n // 2))
    drop_last = bool(rng.random() < 0.5)
    epochs = 4
    theirs = _torch_run(problem, B=B, epochs=epochs, seed=seed, drop_last=drop_last, **kwargs)
    for e in range(1, epochs + 1):
        run = train(problem, batch_size=B, epochs=e, seed=seed, drop_last=drop_last, **kwargs)
        np.testing.assert_allclose(run.theta, theirs[e - 1], rtol=1e-10, atol=1e-12)
    assert np.abs(run.theta).max() > 1e-2  # it moved, so the comparison means something
    assert len(run.step_losses) == epochs * iterations_per_epoch(problem.n, B, drop_last=drop_last)
    np.testing.assert_allclose(run.train_losses[-1], problem.loss(run.theta), rtol=1e-14)


def test_train_reports_divergence_instead_of_returning_nan():
    problem = linear_regression_data(128, 10, seed=0)
    run = train(problem, lr=2.0, batch_size=16, epochs=50)
    assert run.diverged and 1 < run.diverged_at < 50 * 8
    assert np.all(np.isfinite(run.step_losses)) and len(run.step_losses) == run.diverged_at - 1
    assert not train(problem, lr=0.01, batch_size=16, epochs=5).diverged


def test_train_is_seeded_and_checks_its_arguments():
    problem = linear_regression_data(64, 3, seed=2)
    a, b = (train(problem, lr=0.05, batch_size=8, epochs=3, seed=7) for _ in range(2))
    np.testing.assert_array_equal(a.step_losses, b.step_losses)
    c = train(problem, lr=0.05, batch_size=8, epochs=3, seed=8)
    assert not np.array_equal(a.step_losses, c.step_losses)
    with pytest.raises(ValueError, match=r"lr must be in \[0, inf\)"):
        train(problem, lr=-1.0)
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, 64\]"):
        train(problem, batch_size=65)
    with pytest.raises(ValueError, match=r"epochs must be an integer in \[1, inf\]"):
        train(problem, epochs=0)
    with pytest.raises(ValueError, match="early_stopping needs validation data"):
        from llmtrain.optim import EarlyStopping

        train(problem, early_stopping=EarlyStopping())


@pytest.mark.parametrize(
    "problem",
    [linear_regression_data(30, 4, seed=1), two_class_data(40, seed=1)],
    ids=["least-squares", "logistic"],
)
def test_toy_gradients_match_torch_autograd(problem):
    θ = np.random.default_rng(0).standard_normal(problem.dim)
    idx = np.array([3, 7, 7, 11])
    θt = torch.tensor(θ, requires_grad=True)
    z = torch.tensor(problem.X[idx]) @ θt
    y = torch.tensor(problem.y[idx])
    if isinstance(problem, LeastSquares):
        loss = 0.5 * torch.nn.functional.mse_loss(z, y)
    else:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
    loss.backward()
    np.testing.assert_allclose(problem.loss(θ, idx), loss.item(), rtol=1e-13)
    np.testing.assert_allclose(problem.grad(θ, idx), θt.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        problem.per_example_grads(θ).mean(axis=0), problem.grad(θ), rtol=1e-12, atol=1e-14
    )


def test_toy_data_are_seeded_and_well_formed():
    a, b = polynomial_regression_data(20, 5, seed=4), polynomial_regression_data(20, 5, seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    more = polynomial_regression_data(30, 9, seed=4)
    np.testing.assert_array_equal(more.x_train[:20], a.x_train)  # data size only adds points
    np.testing.assert_array_equal(more.y_val, a.y_val)
    assert a.train.X.shape == (20, 6) and a.val.X.shape == (200, 6)
    fit = a.train.solve()
    np.testing.assert_allclose(a.predict(fit, a.x_train), a.train.X @ fit)
    data = two_class_data(100, separation=4.0, seed=0)
    assert isinstance(data, LogisticRegression) and data.y.mean() == 0.5
    run = train(data, lr=0.5, batch_size=10, epochs=30)
    assert data.accuracy(run.theta) > 0.95
    with pytest.raises(ValueError, match=r"degree must be an integer in \[0, inf\]"):
        polynomial_regression_data(10, -1)


# -- gradient noise ------------------------------------------------------------------------------


def _exact_variance(G, B, replacement):
    """E‖g - ∇L‖² by enumerating every possible batch (all equally likely)."""
    full = G.mean(axis=0)
    pick = itertools.product if replacement else itertools.combinations
    kwargs = dict(repeat=B) if replacement else dict(r=B)
    batches = list(pick(range(len(G)), **kwargs))
    return np.mean([np.sum((G[list(b)].mean(axis=0) - full) ** 2) for b in batches])


@pytest.mark.parametrize("replacement", [False, True])
def test_the_variance_formula_is_exact_by_enumeration(replacement):
    G = np.random.default_rng(5).standard_normal((7, 3))
    for B in range(1, 8 if not replacement else 5):
        np.testing.assert_allclose(
            minibatch_gradient_variance(G, B, replacement=replacement),
            _exact_variance(G, B, replacement),
            rtol=1e-12,
            atol=1e-15,
        )
    assert minibatch_gradient_variance(G, 7) == 0.0  # the whole data set: no noise at all


@pytest.mark.parametrize("replacement", [False, True])
def test_measured_variance_follows_the_closed_form_and_the_1_over_B_law(replacement):
    problem = linear_regression_data(200, 5, seed=3)
    θ = problem.solve()  # at the minimum, where ∇L = 0 and all that is left is noise
    sizes = [1, 2, 4, 8, 16, 32, 64, 128]
    result = measure_gradient_variance(
        problem, θ, sizes, samples=8000, replacement=replacement, seed=0
    )
    np.testing.assert_allclose(result.measured, result.predicted, rtol=0.06)
    σ2 = result.per_example_variance
    if replacement:
        np.testing.assert_allclose(result.predicted, σ2 / np.array(sizes), rtol=1e-12)
        slope = np.polyfit(np.log(sizes), np.log(result.measured), 1)[0]
        assert abs(slope + 1.0) < 0.03
    else:
        correction = (200 - np.array(sizes)) / 199
        np.testing.assert_allclose(result.predicted, σ2 / np.array(sizes) * correction, rtol=1e-12)
        assert result.measured[-1] < 0.6 * σ2 / 128  # the correction is visible at B = 128


def test_measuring_variance_is_seeded_and_checks_batch_sizes():
    problem = linear_regression_data(50, 2, seed=0)
    a = measure_gradient_variance(problem, np.zeros(2), [1, 5], samples=50, seed=1)
    b = measure_gradient_variance(problem, np.zeros(2), [1, 5], samples=50, seed=1)
    np.testing.assert_array_equal(a.measured, b.measured)
    with pytest.raises(ValueError, match=r"batch_sizes\[i\] must be an integer in \[1, 50\]"):
        measure_gradient_variance(problem, np.zeros(2), [51])
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, 4\]"):
        minibatch_gradient_variance(np.ones((4, 2)), 5)


# -- batch-size scaling rules --------------------------------------------------------------------


@pytest.mark.algorithm("alg-linear-scaling")
def test_linear_scaling_rule_reproduces_goyal_et_al():
    # ResNet-50 reference point: α = 0.1 at B = 256; B = 8192 (k = 32) gives 3.2.
    assert linear_scaling_rule(256) == pytest.approx(0.1, rel=1e-15)
    assert linear_scaling_rule(8192) == pytest.approx(3.2, rel=1e-15)
    assert linear_scaling_rule(64, base_lr=0.4, base_batch_size=32) == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, inf\], got 0"):
        linear_scaling_rule(0)
    with pytest.raises(ValueError, match=r"base_lr must be in \(0, inf\)"):
        linear_scaling_rule(8, base_lr=0.0)


@pytest.mark.algorithm("alg-linear-scaling")
@pytest.mark.parametrize("seed", range(6))
def test_gradual_warmup_matches_torch_LinearLR(seed):
    rng = np.random.default_rng(seed)
    B = int(rng.choice([512, 1024, 4096, 8192]))
    steps_per_epoch = int(rng.integers(1, 30))
    warmup_epochs = float(rng.choice([5.0, 2.0, 0.5]))
    schedule = linear_scaling_warmup(B, steps_per_epoch, warmup_epochs=warmup_epochs)
    k = B / 256
    T_w = round(warmup_epochs * steps_per_epoch)
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1 * k)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / k, total_iters=T_w)
    for t in range(1, T_w + 21):  # update t uses the rate torch gives its t-th opt.step()
        assert schedule(t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()
    assert schedule(1) == pytest.approx(0.1) and schedule(T_w + 1) == pytest.approx(0.1 * k)
    if T_w:
        assert schedule(T_w) < 0.1 * k


def test_square_root_scaling_rule_for_adam():
    new = square_root_scaling_rule(1024, 256, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    assert new["lr"] == pytest.approx(2e-3, rel=1e-14)  # √4 = 2, not 4
    assert new["betas"] == pytest.approx((0.6, 0.996), rel=1e-14)
    assert new["eps"] == pytest.approx(5e-9, rel=1e-14)
    back = square_root_scaling_rule(256, 1024, **new)  # scaling back undoes it
    assert back["lr"] == pytest.approx(1e-3) and back["betas"] == pytest.approx((0.9, 0.999))
    with pytest.raises(ValueError, match=r"betas\[0\]=0.9 cannot be scaled by k = 16"):
        square_root_scaling_rule(4096, 256, lr=1e-3)
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\)"):
        square_root_scaling_rule(512, 256, lr=1e-3, betas=(0.9, 1.0))


# -- the chapter's exercises and demos -----------------------------------------------------------


def test_exercise_iterations_per_epoch():
    ns = run_solution("optimization/sgd.md", "ex-sgd-iterations")
    assert (ns["iterations"], ns["last"], ns["iterations_dropped"], ns["left_out"]) == (
        16,
        40,
        15,
        40,
    )


def test_exercise_variance_ratio():
    ns = run_solution("optimization/sgd.md", "ex-sgd-variance-ratio")
    assert ns["ratio_with"] == pytest.approx(0.25, rel=1e-12)
    assert ns["ratio_without"] == pytest.approx(936 / (4 * 984), rel=1e-12)


def test_exercise_warmup():
    ns = run_solution("optimization/sgd.md", "ex-sgd-warmup")
    assert (ns["steps"], ns["warmup_steps"]) == (157, 785)
    assert ns["α"](100) == pytest.approx(0.1 + 3.1 * 99 / 785, rel=1e-12)
    assert round(ns["α"](100), 3) == 0.491  # the value the solution's prose states
    assert ns["adam"]["lr"] == pytest.approx(2e-3, rel=1e-12)


def test_learning_rate_demo_trains_with_the_package_and_reports_divergence():
    demo = learning_rate_demo()
    first = demo.png()
    steps_line = demo.figure.axes[0].lines[1]
    demo.set(batch_size=32)
    assert demo.png() != first
    assert demo.result.steps_per_epoch == 4 and len(demo.result.step_losses) == 40
    np.testing.assert_array_equal(steps_line.get_ydata(), demo.result.step_losses)  # moved
    expected = train(REGRESSION, lr=0.03, batch_size=32, epochs=10, seed=0)
    np.testing.assert_array_equal(demo.result.theta, expected.theta)
    demo.set(lr=1.0)
    assert demo.result.diverged
    assert any("diverged" in t.get_text() for t in demo.figure.texts)
    demo.set(lr=0.1, momentum=0.9)
    assert not demo.result.diverged


def test_batch_size_one_is_limited_by_a_single_examples_loss_hessian():
    """The chapter's 'things to try': one example's loss ½(xᵀθ − y)² has Hessian x xᵀ, with
    top curvature ‖x‖², far above the averaged loss's h_max, so B = 1 needs smaller steps."""
    X, i = REGRESSION.X, 5
    θ, v = np.zeros(X.shape[1]), np.random.default_rng(0).standard_normal(X.shape[1])
    hessian_v = REGRESSION.grad(θ + v, idx=[i]) - REGRESSION.grad(θ, idx=[i])  # exact: quadratic
    np.testing.assert_allclose(hessian_v, np.outer(X[i], X[i]) @ v, rtol=1e-12)
    assert np.linalg.eigvalsh(np.outer(X[i], X[i]))[-1] == pytest.approx(X[i] @ X[i])
    per_example = (X**2).sum(axis=1)
    h_max = np.linalg.eigvalsh(X.T @ X / len(X))[-1]
    assert h_max == pytest.approx(10.09, abs=0.01)  # 2 / h_max ≈ 0.198: "past about 0.2"
    assert per_example.mean() == pytest.approx(23.0, abs=0.05)
    assert per_example.max() == pytest.approx(101.6, abs=0.05)
    assert 0.1 * per_example.max() > 2 > 0.008 * per_example.max()
    assert train(REGRESSION, lr=0.1, batch_size=1, epochs=10, seed=0).diverged
    assert not train(REGRESSION, lr=0.1, batch_size=16, epochs=10, seed=0).diverged
    assert not train(REGRESSION, lr=0.008, batch_size=1, epochs=10, seed=0).diverged


def test_gradient_noise_demo_measures_with_the_package():
    demo = gradient_noise_demo()
    first = demo.png()
    demo.set(n=64)
    assert demo.png() != first
    without, with_ = demo.result
    assert without.batch_sizes.tolist() == [1, 2, 4, 8, 16, 32, 64]
    assert without.measured[-1] == pytest.approx(0.0, abs=1e-20)  # B = N: the exact gradient
    np.testing.assert_allclose(with_.measured, with_.predicted, rtol=0.3)
    points = demo.figure.axes[0].lines[0]
    np.testing.assert_array_equal(points.get_ydata(), with_.measured)


def test_learning_rate_sweep_finds_the_four_regimes():
    from matplotlib.figure import Figure

    lrs, losses = learning_rate_sweep(Figure().subplots())
    best = int(np.argmin(losses))
    assert 0.05 < lrs[best] < 0.2
    assert losses[0] > 10 * losses[best]  # too small: slow
    assert np.isinf(losses[-1]) and np.all(np.isfinite(losses[: best + 1]))  # too large


def test_warmup_edge_cases_and_errors():
    constant = linear_scaling_warmup(1024, 10, warmup_epochs=0)
    assert constant(1) == constant(50) == pytest.approx(0.4)
    α = linear_scaling_warmup(512, 4, base_lr=0.2, base_batch_size=128, warmup_epochs=1)
    assert [α(t) for t in range(1, 7)] == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8, 0.8])
    with pytest.raises(ValueError, match=r"steps_per_epoch must be an integer in \[1, inf\]"):
        linear_scaling_warmup(512, 0)
    with pytest.raises(ValueError, match=r"warmup_epochs must be in \[0, inf\)"):
        linear_scaling_warmup(512, 3, warmup_epochs=-1.0)
    with pytest.raises(ValueError, match=r"t must be an integer in \[1, inf\]"):
        α(0)  # updates are counted from t = 1
