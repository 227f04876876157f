"""Momentum in its two forms, Nesterov's look-ahead, and the quadratic convergence theory.

References: torch.optim.SGD (with and without torch.optim.lr_scheduler), closed-form sums,
NumPy eigenvalues, and measured convergence of ``minimize(sgd_step, Quadratic(...))``.
"""

import math

import numpy as np
import pytest
import torch
from demo_checks import differing_fraction, pixels

from llmtrain.optim import (
    Quadratic,
    Rosenbrock,
    gd_rate,
    heavy_ball_converges,
    heavy_ball_velocity_step,
    iteration_matrix,
    minimize,
    momentum_rate,
    nesterov_velocity_step,
    optimal_gd,
    optimal_heavy_ball,
    sgd_step,
    steps_to_reduce,
)


def _grad(θ):
    """Gradient of a non-quadratic loss Σ (θ - 1)² + 0.1 θ⁴, so each step sees a new gradient."""
    return 2.0 * (θ - 1.0) + 0.4 * θ**3


def _random_hyperparameters(seed):
    rng = np.random.default_rng(seed)
    return float(10 ** rng.uniform(-3, -1)), float(rng.uniform(0.05, 0.95)), rng


# -- heavy ball: the velocity form against PyTorch's buffer form --------------------------------


@pytest.mark.algorithm("alg-heavy-ball-velocity")
@pytest.mark.parametrize("seed", range(10))
def test_velocity_form_equals_pytorch_form_for_a_constant_learning_rate(seed):
    α, μ, rng = _random_hyperparameters(seed)
    θ_u = θ_b = rng.standard_normal(6)
    start = θ_u.copy()
    state_u, state_b = {}, {}
    for _ in range(200):
        θ_u, state_u = heavy_ball_velocity_step(θ_u, _grad(θ_u), state_u, lr=α, momentum=μ)
        θ_b, state_b = sgd_step(θ_b, _grad(θ_b), state_b, lr=α, momentum=μ)
        # u_t = -α b_t at every step, hence the same parameters.
        np.testing.assert_allclose(
            state_u["velocity"], -α * state_b["momentum_buffer"], rtol=1e-12, atol=1e-15
        )
    np.testing.assert_allclose(θ_u, θ_b, rtol=1e-12, atol=1e-14)
    assert np.abs(θ_u - start).max() > 0.1  # the runs went somewhere


@pytest.mark.algorithm("alg-heavy-ball-velocity")
@pytest.mark.parametrize("seed", range(4))
def test_velocity_form_on_tensors_matches_torch_optim_SGD(seed):
    α, μ, _ = _random_hyperparameters(seed)
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    θ = p.detach().clone()
    opt = torch.optim.SGD([p], lr=α, momentum=μ)
    state = {}
    for _ in range(60):
        opt.zero_grad()
        ((p - 1.0) ** 2 + 0.1 * p**4).sum().backward()
        opt.step()
        θ, state = heavy_ball_velocity_step(θ, _grad(θ), state, lr=α, momentum=μ)
    torch.testing.assert_close(θ, p.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.algorithm("alg-heavy-ball-velocity")
def test_unrolled_velocity_is_a_weighted_sum_of_past_gradients():
    # u_t = -Σ_{i=0}^{t-1} α_{t-i} μ^i g_{t-i}  (u_0 = 0): with constant α, -α times a sum
    # whose weights add up to (1 - μ^t) / (1 - μ), not to 1.
    rng = np.random.default_rng(0)
    μ, T = 0.8, 25
    gs = rng.standard_normal((T + 1, 3))  # gs[t] is g_t; gs[0] unused
    αs = rng.uniform(0.01, 0.2, T + 1)
    θ, state = np.zeros(3), {}
    for t in range(1, T + 1):
        θ, state = heavy_ball_velocity_step(θ, gs[t], state, lr=αs[t], momentum=μ)
        expected = -sum(αs[t - i] * μ**i * gs[t - i] for i in range(t))
        np.testing.assert_allclose(state["velocity"], expected, rtol=1e-13, atol=1e-15)
    # A constant gradient: the step tends to α g / (1 - μ), five times α g for μ = 0.8.
    θ, state = np.zeros(1), {}
    for _ in range(200):
        θ, state = heavy_ball_velocity_step(θ, np.ones(1), state, lr=0.1, momentum=μ)
    np.testing.assert_allclose(state["velocity"], [-0.1 / (1 - μ)], rtol=1e-14)


@pytest.mark.algorithm("alg-heavy-ball-velocity")
def test_the_two_forms_differ_when_the_learning_rate_changes():
    # torch.optim.SGD with StepLR is the reference for PyTorch's form; the velocity form
    # must match the closed form -Σ α_{t-i} μ^i g_{t-i} and therefore not torch.
    μ, α0, γ = 0.9, 0.05, 0.1
    p = torch.tensor([2.0, -1.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=α0, momentum=μ)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=γ)
    θ, state, torch_path, ours_path = p.detach().numpy().copy(), {}, [], []
    for t in range(1, 31):
        α_t = opt.param_groups[0]["lr"]
        assert α_t == pytest.approx(α0 * γ ** ((t - 1) // 10), rel=1e-12)
        opt.zero_grad()
        ((p - 1.0) ** 2 + 0.1 * p**4).sum().backward()
        opt.step()
        sched.step()
        θ, state = heavy_ball_velocity_step(θ, _grad(θ), state, lr=α_t, momentum=μ)
        torch_path.append(p.detach().numpy().copy())
        ours_path.append(θ.copy())
    torch_path, ours_path = np.array(torch_path), np.array(ours_path)
    # Identical while α is constant (steps 1..10), apart from step 11 on.
    np.testing.assert_allclose(ours_path[:10], torch_path[:10], rtol=1e-12)
    assert np.abs(ours_path[10] - torch_path[10]).max() > 1e-3
    # At the drop, torch's step shrinks tenfold at once; the velocity form's only by the
    # new gradient's share: u_11 = μ u_10 - α_11 g_11.
    torch_steps = np.diff(torch_path, axis=0)
    ours_steps = np.diff(ours_path, axis=0)
    assert np.linalg.norm(torch_steps[9]) < 0.2 * np.linalg.norm(torch_steps[8])
    assert np.linalg.norm(ours_steps[9]) > 0.6 * np.linalg.norm(ours_steps[8])


@pytest.mark.algorithm("alg-heavy-ball-velocity")
def test_velocity_form_schedule_through_minimize_matches_the_closed_form():
    problem = Quadratic(curvatures=(0.5, 3.0), angle=0.3)
    μ, schedule = 0.7, (lambda t: 0.2 / math.sqrt(t))
    run = minimize(heavy_ball_velocity_step, problem, steps=40, lr=schedule, momentum=μ)
    gs = [problem.grad(θ) for θ in run.thetas[:-1]]  # g_t is evaluated at θ_{t-1}
    T = len(gs)
    u_T = -sum(schedule(T - i) * μ**i * gs[T - 1 - i] for i in range(T))
    np.testing.assert_allclose(run.thetas[-1] - run.thetas[-2], u_T, rtol=1e-12, atol=1e-15)
    other = minimize(sgd_step, problem, steps=40, lr=schedule, momentum=μ)
    assert np.abs(run.thetas[-1] - other.thetas[-1]).max() > 1e-4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(lr=-1.0), r"lr must be in \[0, inf\), got -1.0"),
        (dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
        (dict(momentum=float("nan")), r"momentum must be in \[0, 1\)"),
    ],
)
def test_bad_hyperparameters_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        heavy_ball_velocity_step(np.zeros(2), np.zeros(2), {}, **kwargs)
    with pytest.raises(ValueError, match=message):
        nesterov_velocity_step(np.zeros(2), _grad, {}, **kwargs)


# -- Nesterov: the look-ahead form against PyTorch's g + μ b form --------------------------------


@pytest.mark.algorithm("alg-nesterov-velocity")
@pytest.mark.parametrize("seed", range(10))
def test_lookahead_form_is_pytorch_nesterov_after_a_change_of_variables(seed):
    # PyTorch's parameters are the look-ahead points φ_t = θ_t + μ u_t, and u_t = -α b_t.
    α, μ, rng = _random_hyperparameters(seed)
    θ = start = rng.standard_normal(4)
    p = torch.tensor(θ, requires_grad=True)
    opt = torch.optim.SGD([p], lr=α, momentum=μ, nesterov=True)
    φ, state_b, state = θ.copy(), {}, {}
    for _ in range(150):
        θ, state = nesterov_velocity_step(θ, _grad, state, lr=α, momentum=μ)
        φ, state_b = sgd_step(φ, _grad(φ), state_b, lr=α, momentum=μ, nesterov=True)
        opt.zero_grad()
        ((p - 1.0) ** 2 + 0.1 * p**4).sum().backward()
        opt.step()
        u = state["velocity"]
        np.testing.assert_allclose(θ + μ * u, φ, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(u, -α * state_b["momentum_buffer"], rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(θ + μ * state["velocity"], p.detach().numpy(), rtol=1e-12)
    assert np.abs(φ - start).max() > 0.1  # the run moved, so the comparison means something


@pytest.mark.algorithm("alg-nesterov-velocity")
def test_lookahead_step_evaluates_the_gradient_ahead_of_the_parameters():
    # Closed form on a quadratic with ∇²L = h: one step from (θ, u) with the gradient at θ + μ u.
    h, α, μ = 3.0, 0.1, 0.9
    θ, u = np.array([1.0]), np.array([-0.4])
    seen = []

    def grad(φ):
        seen.append(φ.copy())
        return h * φ

    θ1, state = nesterov_velocity_step(θ, grad, {"velocity": u}, lr=α, momentum=μ)
    np.testing.assert_allclose(seen, [θ + μ * u], rtol=1e-15)
    expected_u = μ * u - α * h * (θ + μ * u)
    np.testing.assert_allclose(state["velocity"], expected_u, rtol=1e-15)
    np.testing.assert_allclose(θ1, θ + expected_u, rtol=1e-15)
    with pytest.raises(TypeError, match="grad must be a function"):
        nesterov_velocity_step(θ, np.ones(1), {}, lr=α, momentum=μ)


@pytest.mark.algorithm("alg-nesterov-velocity")
def test_lookahead_form_on_rosenbrock_tracks_torch_nesterov():
    problem = Rosenbrock()
    α, μ = 5e-4, 0.9
    θ, state = np.array(problem.start), {}
    reference = minimize(sgd_step, problem, steps=300, lr=α, momentum=μ, nesterov=True)
    for t in range(1, 301):
        θ, state = nesterov_velocity_step(θ, problem.grad, state, lr=α, momentum=μ)
        if t % 50 == 0:
            np.testing.assert_allclose(
                θ + μ * state["velocity"], reference.thetas[t], rtol=1e-10, atol=1e-12
            )
    assert problem.loss(reference.thetas[-1]) < 0.1 * problem.loss(reference.thetas[0])


# -- the quadratic theory -----------------------------------------------------------------------


@pytest.mark.parametrize("nesterov", [False, True])
def test_rate_formula_matches_numpy_eigenvalues(nesterov):
    rng = np.random.default_rng(7)
    for _ in range(300):
        α, μ, h = rng.uniform(0, 3), rng.uniform(0, 0.99), rng.uniform(0.01, 2)
        eig = np.abs(np.linalg.eigvals(iteration_matrix(α, μ, h, nesterov=nesterov))).max()
        assert momentum_rate(α, μ, h, nesterov=nesterov) == pytest.approx(eig, rel=1e-9)


@pytest.mark.parametrize("nesterov", [False, True])
def test_iteration_matrix_is_one_step_of_sgd_step(nesterov):
    α, μ, h = 0.3, 0.7, 2.5
    e, state = np.array([1.3]), {}
    e, state = sgd_step(e, h * e, state, lr=α, momentum=μ, nesterov=nesterov)
    R = iteration_matrix(α, μ, h, nesterov=nesterov)
    for _ in range(20):
        b_prev, e_prev = state["momentum_buffer"].copy(), e.copy()
        e, state = sgd_step(e, h * e, state, lr=α, momentum=μ, nesterov=nesterov)
        np.testing.assert_allclose(
            [state["momentum_buffer"][0], e[0]], R @ [b_prev[0], e_prev[0]], rtol=1e-13
        )


def test_rate_of_a_problem_is_the_rate_of_its_slowest_direction_and_grids_broadcast():
    α, μ = np.meshgrid(np.linspace(0.05, 4, 30), np.linspace(0, 0.95, 20))
    rates = momentum_rate(α, μ, [0.1, 1.0])
    assert rates.shape == (20, 30)
    np.testing.assert_allclose(
        rates, np.maximum(momentum_rate(α, μ, 0.1), momentum_rate(α, μ, 1.0)), rtol=1e-15
    )
    assert gd_rate(0.5, [1.0, 3.0]) == pytest.approx(0.5)


def test_convergence_region_is_where_the_spectral_radius_is_below_one():
    rng = np.random.default_rng(11)
    α, μ, h = rng.uniform(0, 5, 4000), rng.uniform(0, 0.999, 4000), 1.3
    inside = heavy_ball_converges(α, μ, h)
    margin = np.abs(α * h - 2 * (1 + μ)) > 1e-6
    np.testing.assert_array_equal(inside[margin], (momentum_rate(α, μ, h) < 1)[margin])
    assert 0.2 < inside.mean() < 0.8  # both sides were sampled
    # μ = 0.9 allows α h up to 3.8, almost twice gradient descent's limit of 2.
    assert heavy_ball_converges(3.79, 0.9, 1.0) and not heavy_ball_converges(3.81, 0.9, 1.0)
    assert heavy_ball_converges(1.99, 0.0, 1.0) and not heavy_ball_converges(2.01, 0.0, 1.0)


@pytest.mark.parametrize("κ", [4.0, 100.0, 1e4])
def test_optimal_parameters_have_the_closed_form_rates_and_nothing_beats_them(κ):
    h_min, h_max = 0.5, 0.5 * κ
    α_gd, rate_gd = optimal_gd(h_min, h_max)
    assert rate_gd == pytest.approx((κ - 1) / (κ + 1), rel=1e-14)
    assert gd_rate(α_gd, [h_min, h_max]) == pytest.approx(rate_gd, rel=1e-12)
    α, μ, rate = optimal_heavy_ball(h_min, h_max)
    assert rate == pytest.approx((math.sqrt(κ) - 1) / (math.sqrt(κ) + 1), rel=1e-14)
    assert μ == pytest.approx(rate**2, rel=1e-14)
    assert α == pytest.approx(4 / (math.sqrt(h_min) + math.sqrt(h_max)) ** 2, rel=1e-14)
    # At the optimum the extreme directions have a double root; momentum_rate equals rate to ~√eps.
    assert momentum_rate(α, μ, [h_min, h_max]) == pytest.approx(rate, rel=1e-7)
    # A dense grid around the optimum finds nothing faster.
    A, M = np.meshgrid(α * np.linspace(0.5, 1.5, 201), np.linspace(0, 0.9999, 201) * 1.0)
    assert momentum_rate(A, M, [h_min, h_max]).min() >= rate - 1e-7
    grid = np.linspace(0.01, 2 / h_max, 2001)
    assert gd_rate(grid, [h_min, h_max]).min() >= rate_gd - 1e-12


@pytest.mark.parametrize(
    ("α", "μ", "label"),
    [(None, None, "heavy ball, optimal"), (1.0 / 100, 0.5, "heavy ball"), (None, 0.0, "GD")],
)
def test_measured_convergence_of_sgd_step_matches_the_predicted_rate(α, μ, label):
    problem = Quadratic(curvatures=(1.0, 100.0), angle=0.6, start=(1.0, -0.7))
    if α is None and μ is None:
        α, μ, _ = optimal_heavy_ball(1.0, 100.0)
    elif α is None:
        α, _ = optimal_gd(1.0, 100.0)
    rate = momentum_rate(α, μ, problem.curvatures)
    T = 400
    run = minimize(sgd_step, problem, steps=T, lr=α, momentum=μ)
    assert not run.diverged
    error = np.linalg.norm(run.thetas, axis=1)
    measured = (error[T] / error[T // 2]) ** (2 / T)
    # A double root (the optimum) decays like t rate^t: allow its factor 2^(2/T) ≈ 1.0035.
    assert measured == pytest.approx(rate, rel=5e-3), label


def test_steps_to_reduce_the_error_a_thousandfold_for_kappa_100():
    _, rate_gd = optimal_gd(1.0, 100.0)
    _, _, rate_hb = optimal_heavy_ball(1.0, 100.0)
    assert (steps_to_reduce(rate_gd, 1000), steps_to_reduce(rate_hb, 1000)) == (346, 35)
    for rate in (rate_gd, rate_hb, 0.5):
        t = steps_to_reduce(rate, 1000)
        assert rate**t <= 1e-3 < rate ** (t - 1)


def test_diverging_parameters_are_predicted_and_reported():
    problem = Quadratic(curvatures=(1.0, 10.0))
    α, μ = 0.39, 0.9  # α h_max = 3.9 > 2 (1 + μ) = 3.8
    assert not heavy_ball_converges(α, μ, problem.curvatures)
    assert momentum_rate(α, μ, problem.curvatures) > 1
    assert minimize(sgd_step, problem, steps=2000, lr=α, momentum=μ).diverged


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: momentum_rate(-0.1, 0.5, 1.0), r"lr must be in \[0, inf\)"),
        (lambda: momentum_rate(0.1, np.array([0.5, 1.2]), 1.0), r"momentum must be in \[0, 1\)"),
        (lambda: momentum_rate(0.1, 0.5, [1.0, -2.0]), r"h must be in \[0, inf\), got -2.0"),
        (lambda: optimal_heavy_ball(0.0, 1.0), r"h_min must be in \(0, inf\)"),
        (lambda: optimal_gd(2.0, 1.0), r"h_max must be in \[2, inf\)"),
        (lambda: steps_to_reduce(1.0, 10), r"rate must be in \(0, 1\)"),
        (lambda: iteration_matrix(0.1, 1.0, 1.0), r"momentum must be in \[0, 1\)"),
    ],
)
def test_theory_functions_reject_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- the chapter's demos -----------------------------------------------------------------------


def test_valley_demo_runs_the_package_and_moves_its_artists():
    from llmtrain.demos.optimization.momentum import valley, valley_demo

    demo = valley_demo()
    first = demo.png()
    (path,) = [line for line in demo.figure.axes[0].lines if line.get_label() == "momentum"]
    demo.set(momentum=0.3)
    second = demo.png()
    assert second != first
    expected = minimize(sgd_step, valley(20.0), steps=100, lr=1.0, momentum=0.3)
    np.testing.assert_array_equal(demo.result.momentum.thetas, expected.thetas)
    np.testing.assert_array_equal(path.get_xydata(), expected.thetas)  # same artist, moved
    assert demo.result.rates[1] == pytest.approx(momentum_rate(1.0, 0.3, (1 / 20, 1.0)))
    # A new condition number rebuilds the problem (and its contours).
    demo.set(kappa=150.0)
    assert demo.result.problem.condition_number == pytest.approx(150.0)
    assert demo.png() != second
    # Beyond GD's limit α h_max < 2 but inside momentum's: only the comparison diverges.
    demo.set(lr=3.0, momentum=0.8)
    assert demo.result.gd.diverged and not demo.result.momentum.diverged
    assert "diverged" in demo.figure.axes[0].get_legend().get_texts()[0].get_text()
    assert not [t for t in demo.figure.texts if "diverged" in t.get_text()]
    # Beyond 2 (1 + μ): momentum diverges too, and the figure says so.
    demo.set(lr=3.9, momentum=0.5)
    assert demo.result.diverged_at is not None
    assert [t for t in demo.figure.texts if "diverged" in t.get_text()]


def test_rate_map_demo_shows_the_package_rates_and_the_optimum():
    from llmtrain.demos.optimization.momentum import rate_map_demo

    demo = rate_map_demo()
    first = demo.png()
    demo.set(kappa=10.0)
    assert demo.png() != first
    result = demo.result
    A, M = np.meshgrid(result.lr, result.momentum)
    np.testing.assert_allclose(result.rate, momentum_rate(A, M, (0.1, 1.0)), rtol=1e-15)
    star = demo.figure.axes[0].lines[1]
    α, μ, _ = optimal_heavy_ball(0.1, 1.0)
    np.testing.assert_allclose(star.get_xydata(), [[α, μ]])
    image = demo.figure.axes[0].images[0].get_array()
    assert image.mask.any() and not image.mask.all()  # the divergence region is masked
    np.testing.assert_array_equal(image.mask, result.rate >= 1.0)


def test_rosenbrock_demo_switches_between_heavy_ball_and_nesterov():
    from llmtrain.demos.optimization.momentum import rosenbrock_demo

    demo = rosenbrock_demo()
    first = demo.png()
    heavy = demo.result.momentum
    demo.set(nesterov=1)
    assert demo.png() != first
    expected = minimize(sgd_step, Rosenbrock(), steps=1000, lr=1e-3, momentum=0.9, nesterov=True)
    np.testing.assert_array_equal(demo.result.momentum.thetas, expected.thetas)
    assert not np.array_equal(heavy.thetas, expected.thetas)
    # Nesterov's stable range is narrower (α h < 2 (1 + μ) / (1 + 2 μ)): it blows up at a
    # step size where heavy ball survives, and the figure says so.
    demo.set(lr=2e-3)
    assert demo.result.diverged
    assert [t for t in demo.figure.texts if "diverged" in t.get_text()]
    demo.set(nesterov=0)
    assert not demo.result.diverged


def _rosenbrock_run(lr, momentum, nesterov):
    return minimize(sgd_step, Rosenbrock(), steps=1000, lr=lr, momentum=momentum, nesterov=nesterov)


def test_rosenbrock_numbers_the_chapter_quotes():
    """The observations under the Rosenbrock demo (the chapter glues the same runs)."""
    from llmtrain.demos.optimization.momentum import rosenbrock_demo

    default = rosenbrock_demo().values
    assert (default["lr"], default["momentum"], default["nesterov"]) == (1e-3, 0.9, 0)
    # Largest curvature at the start, from the closed-form Hessian of Rosenbrock.
    θ1, θ2 = Rosenbrock().start
    hessian = [[2 - 400 * θ2 + 1200 * θ1**2, -400 * θ1], [-400 * θ1, 200.0]]
    assert np.linalg.eigvalsh(hessian)[-1] == pytest.approx(2092, abs=1)
    # α = 2e-3, μ = 0.9: heavy ball reaches the minimum, Nesterov blows up at once.
    assert _rosenbrock_run(2e-3, 0.9, False).losses[-1] < 1e-8
    assert _rosenbrock_run(2e-3, 0.9, True).diverged_at == 4
    # Default α: μ = 0.9 converges either way.
    hb_090 = _rosenbrock_run(1e-3, 0.9, False)
    assert hb_090.losses[-1] < 1e-4 and _rosenbrock_run(1e-3, 0.9, True).losses[-1] < 1e-4
    # Default α, large μ: heavy ball only slows down, Nesterov diverges (not monotonically).
    hb_099 = _rosenbrock_run(1e-3, 0.99, False)
    assert not hb_099.diverged and hb_099.losses[-1] > 5 * hb_090.losses[-1]
    assert _rosenbrock_run(1e-3, 0.99, True).diverged_at == 49
    assert _rosenbrock_run(1e-3, 0.97, True).diverged_at == 102
    nag_098 = _rosenbrock_run(1e-3, 0.98, True)
    assert not nag_098.diverged and nag_098.losses[-1] < 1e-6


@pytest.mark.parametrize("μ", [0.5, 0.9, 0.99])
def test_nesterov_is_heavy_ball_with_momentum_shrinking_with_curvature(μ):
    """The chapter's reconciliation: Nesterov has the narrower stable range, but for
    αh ≤ 1 it is heavy ball with momentum μ(1 − αh), and damps steep directions."""
    αh = np.linspace(0.01, 1.0, 25)
    nesterov = momentum_rate(αh[:, None], μ, 1.0, nesterov=True)
    np.testing.assert_allclose(nesterov, momentum_rate(αh[:, None], μ * (1 - αh[:, None]), 1.0))
    heavy = momentum_rate(αh[:, None], μ, 1.0)
    complex_roots = αh > (1 - math.sqrt(μ)) ** 2
    np.testing.assert_allclose(heavy[complex_roots], math.sqrt(μ))
    # Where Nesterov's roots are complex too, their modulus √(μ(1 − αh)) is the smaller.
    both_complex = complex_roots & (1 - αh < 4 * μ / (1 + μ) ** 2)
    assert both_complex.sum() >= 20
    assert np.all(nesterov[both_complex] < heavy[both_complex])
    assert momentum_rate(0.5, 0.99, 1.0) == pytest.approx(0.995, abs=5e-4)
    assert momentum_rate(0.5, 0.99, 1.0, nesterov=True) == pytest.approx(0.704, abs=5e-4)
    # ... and yet its range is narrower: at αh = 2 heavy ball converges, Nesterov does not.
    assert momentum_rate(2.0, μ, 1.0) < 1 <= momentum_rate(2.0, μ, 1.0, nesterov=True)


# -- the chapter's exercises -------------------------------------------------------------------


def test_exercise_kappa_100_numbers():
    from chapters import run_solution

    ns = run_solution("optimization/momentum.md", "ex-momentum-kappa100")
    assert ns["α_gd"] == pytest.approx(2 / 101, rel=1e-12)
    assert ns["rate_gd"] == pytest.approx(optimal_gd(1.0, 100.0)[1], rel=1e-12)
    α, μ, rate = optimal_heavy_ball(1.0, 100.0)
    assert (ns["α_hb"], ns["μ_hb"], ns["rate_hb"]) == pytest.approx((α, μ, rate), rel=1e-12)
    assert (ns["μ_hb"], ns["rate_hb"]) == pytest.approx((81 / 121, 9 / 11), rel=1e-12)
    assert (ns["steps_gd"], ns["steps_hb"]) == (346, 35)
    assert (steps_to_reduce(rate, 1000), steps_to_reduce(ns["rate_gd"], 1000)) == (35, 346)


def test_exercise_effective_learning_rate():
    from chapters import run_solution

    ns = run_solution("optimization/momentum.md", "ex-momentum-effective-lr")
    assert ns["multiple"] == pytest.approx((1 - 0.9**50) / 0.1, rel=1e-12)
    assert 9.94 < ns["multiple"] < 9.96


def test_exercise_learning_rate_cut():
    from chapters import run_solution

    ns = run_solution("optimization/momentum.md", "ex-momentum-lr-drop")
    μ = 0.9
    assert ns["k"] == 43 == math.ceil(math.log(90) / math.log(1 / μ))
    assert 1 + 9 * μ ** ns["k"] <= 1.1 < 1 + 9 * μ ** (ns["k"] - 1)


def test_exercise_nesterov_stable_range():
    from chapters import run_solution

    ns = run_solution("optimization/momentum.md", "ex-momentum-nesterov")
    assert ns["bound"] == pytest.approx(3.8 / 2.8, rel=1e-14)
    assert ns["low"] == pytest.approx(ns["bound"], rel=1e-9)
    # Just inside and outside, against NumPy's eigenvalues of the Nesterov matrix.
    for αh, stable in [(ns["bound"] - 1e-6, True), (ns["bound"] + 1e-6, False)]:
        eig = np.abs(np.linalg.eigvals(iteration_matrix(αh, 0.9, 1.0, nesterov=True))).max()
        assert (eig < 1) == stable


@pytest.mark.parametrize("name", ["valley_demo", "rate_map_demo", "rosenbrock_demo"])
def test_frozen_background_draws_the_same_figure_as_a_full_redraw(name):

    import llmtrain.demos.optimization.momentum as demos

    frozen = getattr(demos, name)()
    frozen.png()
    move = {"kappa": 30.0} if name == "rate_map_demo" else {"momentum": 0.8}
    frozen.set(**move)  # the first move freezes the background
    full = getattr(demos, name)()
    full.set(**move)  # a new demo, set straight to the final values
    differ = differing_fraction(pixels(frozen), pixels(full))
    assert differ < 0.01  # only anti-aliasing at edges may differ
