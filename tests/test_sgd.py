"""SGD with momentum against torch.optim.SGD, and the NumPy runner it shares."""

import numpy as np
import pytest
import torch

from llmtrain.optim import SGD, Quadratic, Rosenbrock, minimize, sgd_step


def _loss(p):
    # Not quadratic, so that every step sees a different gradient.
    return ((p - 1.0) ** 2).sum() + 0.1 * (p**4).sum()


def run_torch_pair(ours_cls, theirs_cls, kwargs, steps=30, seed=0, shapes=((7, 3), (5,))):
    """Train copies of the same parameters with both optimizers.

    Returns our parameters, torch's, and the starting point they share."""
    g = torch.Generator().manual_seed(seed)
    start = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    ours = [p.clone().requires_grad_() for p in start]
    theirs = [p.clone().requires_grad_() for p in start]
    opt_ours, opt_theirs = ours_cls(ours, **kwargs), theirs_cls(theirs, **kwargs)
    for _ in range(steps):
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            sum(_loss(p) for p in params).backward()
            opt.step()
    return ours, theirs, start


@pytest.mark.algorithm("alg-sgd")
@pytest.mark.parametrize("seed", range(12))
def test_SGD_matches_torch_for_random_hyperparameters(seed):
    rng = np.random.default_rng(seed)
    momentum = float(rng.choice([0.0, rng.uniform(0.1, 0.95)]))
    nesterov = bool(momentum > 0 and rng.random() < 0.5)
    kwargs = dict(
        lr=float(10 ** rng.uniform(-3, -1)),
        momentum=momentum,
        dampening=0.0 if nesterov else float(rng.choice([0.0, rng.uniform(0, 0.5)])),
        weight_decay=float(rng.choice([0.0, rng.uniform(0, 0.1)])),
        nesterov=nesterov,
    )
    ours, theirs, start = run_torch_pair(SGD, torch.optim.SGD, kwargs, steps=40, seed=seed)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # The run must have moved the parameters, or the comparison proves nothing.
    assert (ours[0] - start[0]).abs().max() > 1e-3


@pytest.mark.algorithm("alg-sgd")
def test_sgd_step_is_the_same_on_numpy_and_torch():
    θ = np.array([1.0, -2.0, 0.5])
    t = torch.tensor(θ)
    state_np, state_t = {}, {}
    for k in range(5):
        g = np.array([0.3, -0.1, 0.2]) * (k + 1)
        θ, state_np = sgd_step(θ, g, state_np, lr=0.1, momentum=0.9, nesterov=True)
        t, state_t = sgd_step(t, torch.tensor(g), state_t, lr=0.1, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(θ, t.numpy(), rtol=0, atol=1e-15)


@pytest.mark.algorithm("alg-sgd")
def test_heavy_ball_closed_form_on_a_constant_gradient():
    # With a constant gradient g, b_t = (1 - μ^t) / (1 - μ) g, so after T steps
    # θ_T = θ_0 - α g Σ_t (1 - μ^t) / (1 - μ).
    α, μ, g, T = 0.1, 0.5, np.array([2.0]), 6
    θ, state = np.zeros(1), {}
    for _ in range(T):
        θ, state = sgd_step(θ, g, state, lr=α, momentum=μ)
    expected = -α * g * sum((1 - μ**t) / (1 - μ) for t in range(1, T + 1))
    np.testing.assert_allclose(θ, expected, rtol=1e-14)


def test_the_momentum_buffer_does_not_alias_the_gradient():
    p = torch.zeros(3, requires_grad=True)
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.ones(3)
    opt.step()
    p.grad.zero_()  # what zero_grad(set_to_none=False) does
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], torch.ones(3))


def test_SGD_works_with_torch_schedulers():
    p = torch.ones(2, requires_grad=True)
    opt = SGD([p], lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = torch.ones(2)
        opt.step()
        scheduler.step()
    torch.testing.assert_close(p.detach(), torch.full((2,), 1.0 - 1.0 - 0.5 - 0.25))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(lr=-0.1), r"lr must be in \[0, inf\), got -0.1"),
        (dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
        (dict(momentum=-0.5), r"momentum must be in \[0, 1\)"),
        (dict(dampening=1.5), r"dampening must be in \[0, 1\]"),
        (dict(weight_decay=-1.0), r"weight_decay must be in \[0, inf\)"),
        (dict(nesterov=True), "nesterov=True needs momentum in"),
        (dict(lr=float("nan")), "lr must be in"),
    ],
)
def test_bad_hyperparameters_name_the_argument_and_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SGD([torch.zeros(1, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match=message):
        sgd_step(np.zeros(1), np.zeros(1), {}, **kwargs)


@pytest.mark.parametrize("problem", [Quadratic(curvatures=(0.5, 8.0), angle=0.7), Rosenbrock()])
def test_landscape_gradients_match_finite_differences(problem):
    rng = np.random.default_rng(1)
    for θ in rng.uniform(-1.5, 1.5, size=(5, 2)):
        h = 1e-6
        numeric = [(problem.loss(θ + h * e) - problem.loss(θ - h * e)) / (2 * h) for e in np.eye(2)]
        np.testing.assert_allclose(problem.grad(θ), numeric, rtol=1e-6, atol=1e-6)


def test_landscapes_evaluate_whole_grids():
    grid = np.zeros((4, 5, 2))
    assert Quadratic().loss(grid).shape == (4, 5)
    assert Rosenbrock().grad(grid).shape == (4, 5, 2)
    assert Rosenbrock().loss(Rosenbrock().minimum) == 0.0


def test_minimize_converges_at_the_rate_theory_gives():
    # Plain GD on a quadratic with curvature h contracts each coordinate by |1 - α h|.
    problem = Quadratic(curvatures=(1.0, 4.0))
    trajectory = minimize(sgd_step, problem, θ0=[1.0, 1.0], steps=10, lr=0.1)
    np.testing.assert_allclose(trajectory.thetas[-1], [0.9**10, 0.6**10], rtol=1e-12)
    assert trajectory.diverged_at is None and len(trajectory.losses) == 11


def test_minimize_reports_divergence_instead_of_returning_nan():
    # α h = 0.3 * 10 = 3 > 2: each step multiplies the steep coordinate by -2.
    trajectory = minimize(sgd_step, Quadratic(curvatures=(1.0, 10.0)), steps=100, lr=0.3)
    assert trajectory.diverged
    assert 5 < trajectory.diverged_at < 100
    assert (
        np.all(np.isfinite(trajectory.losses)) and len(trajectory.losses) == trajectory.diverged_at
    )


def test_minimize_noise_is_seeded():
    run = lambda seed: minimize(sgd_step, Quadratic(), steps=20, lr=0.05, noise=0.5, seed=seed)  # noqa: E731
    np.testing.assert_array_equal(run(3).thetas, run(3).thetas)
    assert not np.array_equal(run(3).thetas, run(4).thetas)


def test_minimize_accepts_a_schedule():
    trajectory = minimize(
        sgd_step, Quadratic(curvatures=(1.0, 1.0)), θ0=[1.0, 0.0], steps=2, lr=lambda t: 0.5 / t
    )
    np.testing.assert_allclose(trajectory.thetas[-1], [(1 - 0.5) * (1 - 0.25), 0.0])
