"""WSD against torch's chained schedulers and a direct formula; weight averaging against
torch.optim.swa_utils.AveragedModel."""

import functools
import math

import numpy as np
import pytest
import torch
from test_schedules import torch_lrs
from torch.optim import lr_scheduler as tls
from torch.optim import swa_utils

from chapters import run_solution
from llmtrain.demos.optimization.schedules_modern import VALLEY, wsd_branches, wsd_demo
from llmtrain.optim import (
    ParameterEMA,
    ScheduledLR,
    ScheduleFreeAdamW,
    ema_update,
    schedule_free_adamw_step,
    uniform_average_update,
    warmup_cosine,
    warmup_stable_decay,
)

TOL = dict(rtol=1e-12, atol=1e-15)
WSD_400 = dict(lr=0.3, total=400, decay=80, warmup=20)


def direct_wsd(t, lr, total, decay, warmup, min_lr, shape):
    """The piecewise definition, one step at a time."""
    if t <= warmup:
        return lr * t / warmup
    if t <= total - decay:
        return lr
    if t > total:
        return min_lr
    p = (t - (total - decay)) / decay
    f = p if shape == "linear" else math.sqrt(p)
    return lr - (lr - min_lr) * f


def random_wsd(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(30, 300))
    T_w = int(rng.integers(2, T // 4))
    T_d = int(rng.integers(2, T - T_w))
    lr = float(10 ** rng.uniform(-4, -1))
    α_min = float(rng.choice([0.0, 0.1 * lr, rng.uniform(0, lr)]))
    return lr, T, T_w, T_d, α_min


@pytest.mark.algorithm("alg-wsd")
@pytest.mark.parametrize("seed", range(8))
def test_wsd_linear_matches_SequentialLR_of_LinearLR_ConstantLR_LinearLR(seed):
    lr, T, T_w, T_d, α_min = random_wsd(seed)
    r = α_min / lr

    def make(o):
        warm = tls.LinearLR(o, start_factor=1 / T_w, total_iters=T_w - 1)
        stable = tls.ConstantLR(o, factor=1.0, total_iters=1)
        # Update T − T_d + k (k = 1..T_d) uses α_max (1 − (1 − r) k / T_d).
        cool = tls.LinearLR(o, start_factor=1 - (1 - r) / T_d, end_factor=r, total_iters=T_d - 1)
        return tls.SequentialLR(o, [warm, stable, cool], milestones=[T_w - 1, T - T_d])

    steps = T + 20  # past T, LinearLR stays at its end factor and WSD at its floor
    expected = torch_lrs(make, lr, steps)
    t = np.arange(1, steps + 1)
    ours = warmup_stable_decay(t, lr=lr, total=T, decay=T_d, warmup=T_w, min_lr=α_min)
    # torch's chained products leave a floor of 0 at about ±1e-20: compare relative to α_max.
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12 * lr)
    assert ours[T_w - 1] == pytest.approx(lr, rel=1e-15) and ours[T - T_d - 1] == lr
    assert ours[T - 1] == pytest.approx(α_min, abs=1e-15)
    # Through the torch adapter, too.
    schedule = functools.partial(
        warmup_stable_decay, lr=lr, total=T, decay=T_d, warmup=T_w, min_lr=α_min
    )
    np.testing.assert_allclose(
        torch_lrs(lambda o: ScheduledLR(o, schedule), lr, steps), ours, rtol=1e-15
    )


@pytest.mark.algorithm("alg-wsd")
@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
@pytest.mark.parametrize("seed", range(4))
def test_wsd_matches_the_direct_piecewise_formula(shape, seed):
    lr, T, T_w, T_d, α_min = random_wsd(100 + seed)
    T_w = T_w * (seed % 2)  # also without warmup
    t = np.arange(1, T + 30)
    ours = warmup_stable_decay(t, lr=lr, total=T, decay=T_d, warmup=T_w, min_lr=α_min, shape=shape)
    expected = [direct_wsd(int(k), lr, T, T_d, T_w, α_min, shape) for k in t]
    np.testing.assert_allclose(ours, expected, **TOL)
    k = T - T_d + T_d // 2  # a scalar call in the cooldown
    assert warmup_stable_decay(
        k, lr=lr, total=T, decay=T_d, warmup=T_w, min_lr=α_min, shape=shape
    ) == pytest.approx(expected[k - 1], rel=1e-14)


@pytest.mark.algorithm("alg-wsd")
def test_wsd_runs_of_different_lengths_share_their_stable_phase_cosine_runs_do_not():
    t = np.arange(1, 1001)
    short = warmup_stable_decay(t, lr=1.0, total=500, decay=100, warmup=50)
    long = warmup_stable_decay(t, lr=1.0, total=1000, decay=200, warmup=50)
    np.testing.assert_array_equal(short[:400], long[:400])
    assert short[449] == pytest.approx(0.5) and long[449] == 1.0  # then they part
    cos_short = warmup_cosine(t, lr=1.0, total=500, warmup=50)
    cos_long = warmup_cosine(t, lr=1.0, total=1000, warmup=50)
    assert np.abs(cos_short[50:400] - cos_long[50:400]).max() > 0.3
    # 1 − sqrt drops faster at the start of the cooldown than linear.
    sq = warmup_stable_decay(t, lr=1.0, total=500, decay=100, warmup=50, shape="1-sqrt")
    assert sq[424] == pytest.approx(0.5) and short[424] == pytest.approx(0.75)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(decay=0), "decay"),
        (dict(decay=95), "decay"),  # more than T − T_w = 90
        (dict(warmup=100), "warmup"),
        (dict(min_lr=2.0), "min_lr"),
        (dict(shape="cosine"), "shape"),
    ],
)
def test_wsd_rejects_bad_arguments(kwargs, match):
    args = dict(lr=1.0, total=100, decay=10, warmup=10) | kwargs
    with pytest.raises(ValueError, match=match):
        warmup_stable_decay(5, **args)
    with pytest.raises(ValueError, match="t must be"):
        warmup_stable_decay(0, lr=1.0, total=100, decay=10)


# -- weight averaging --------------------------------------------------------------------------


def train_a_little(model, steps, on_step, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(64, 5, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        on_step(model)


@pytest.mark.algorithm("alg-ema-weights")
@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999])
def test_ParameterEMA_matches_AveragedModel_with_get_ema_multi_avg_fn(decay):
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    ).double()
    theirs = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(decay))
    theirs.update_parameters(model)  # its first call copies θ_0, as our constructor does
    ours = ParameterEMA(model, decay=decay)

    def both(m):
        theirs.update_parameters(m)
        ours.update(m)

    train_a_little(model, 30, both)
    for a, b in zip(ours.average, theirs.module.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)
    twin = ours.averaged_module(model)
    x = torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(twin(x), theirs(x), rtol=1e-12, atol=1e-14)
    moved = max(
        (a - p).abs().max().item() for a, p in zip(ours.average, model.parameters(), strict=True)
    )
    assert (moved == 0.0) == (decay == 0.0)  # β = 0 is the model itself; β > 0 lags behind


@pytest.mark.algorithm("alg-ema-weights")
def test_ema_update_is_the_closed_form_weighted_sum_on_numpy():
    # θ̄_n = β^n θ̄_0 + (1 − β) Σ_k β^(n−k) θ_k, checked against the sum itself.
    rng = np.random.default_rng(0)
    θs = rng.normal(size=(20, 4))
    β = 0.8
    θ_bar = θs[0].copy()
    for θ in θs[1:]:
        new = ema_update(θ_bar, θ, decay=β)
        assert new is not θ_bar
        θ_bar = new
    n = len(θs) - 1
    expected = β**n * θs[0] + (1 - β) * sum(β ** (n - k) * θs[k] for k in range(1, n + 1))
    np.testing.assert_allclose(θ_bar, expected, rtol=1e-13)
    buf = θs[0].copy()
    assert ema_update(buf, θs[1], decay=β, out=buf) is buf  # in place
    with pytest.raises(ValueError, match="decay"):
        ema_update(buf, θs[1], decay=1.5)


@pytest.mark.algorithm("alg-ema-weights")
def test_uniform_average_update_matches_AveragedModel_default_and_the_mean():
    torch.manual_seed(2)
    model = torch.nn.Linear(5, 2).double()
    theirs = swa_utils.AveragedModel(model)  # default: the uniform running average (SWA)
    ours = [p.detach().clone() for p in model.parameters()]
    history = []
    n = 0

    def both(m):
        nonlocal n
        n += 1
        theirs.update_parameters(m)
        for θ_bar, θ in zip(ours, m.parameters(), strict=True):
            uniform_average_update(θ_bar, θ.detach(), n=n, out=θ_bar)
        history.append([p.detach().clone() for p in m.parameters()])

    train_a_little(model, 25, both, seed=3)
    for i, (a, b) in enumerate(zip(ours, theirs.module.parameters(), strict=True)):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)
        mean = torch.stack([h[i] for h in history]).mean(0)
        torch.testing.assert_close(a, mean, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="n must be"):
        uniform_average_update(ours[0], ours[0], n=0)


# -- the chapter's claims, exercise and demo ---------------------------------------------------


@pytest.mark.algorithm("alg-wsd")
def test_chapter_claims_about_wsd_branches_on_the_valley():
    kw = dict(total=1000, lr=0.3, warmup=20, noise=1.0, problem=VALLEY)
    linear, sqrt_shape = wsd_branches(0.2, 400, 0, **kw), wsd_branches(0.2, 400, 1, **kw)
    np.testing.assert_allclose(  # the branch is the long run until its cooldown starts
        linear.losses["WSD to T_b"][:321], linear.losses["WSD to T"][:321], rtol=0
    )
    np.testing.assert_array_equal(
        linear.rates["WSD to T_b"], warmup_stable_decay(np.arange(1, 401), **WSD_400)
    )
    stable = linear.losses["WSD to T"][400]
    branch = linear.losses["WSD to T_b"][-1]
    assert branch < 0.6 * stable  # the cooldown removes most of the excess
    assert sqrt_shape.losses["WSD to T_b"][-1] < branch  # 1 − sqrt beats linear here
    assert linear.losses["cosine to T_b"][-1] < branch  # cosine keeps an edge on this toy
    assert linear.losses["cosine to T"][-1] < linear.losses["WSD to T"][-1]
    longer = wsd_branches(0.5, 400, 0, **kw).losses["WSD to T_b"][-1]
    assert longer < branch  # lengthening the cooldown closes the gap


@pytest.mark.algorithm("alg-ema-weights")
def test_chapter_claim_that_the_ema_sits_closer_to_the_minimum():
    # The chapter's cell, with the same seed: 200 noisy SGD runs at a constant rate.
    rng = np.random.default_rng(0)
    θ = np.tile(np.array(VALLEY.start, dtype=float), (200, 1))
    θ_bar = θ.copy()
    for _ in range(1000):
        g = θ @ VALLEY.hessian + rng.standard_normal(θ.shape)
        θ = θ - 0.3 * g
        θ_bar = ema_update(θ_bar, θ, decay=0.99)
    assert VALLEY.loss(θ_bar).mean() < 0.5 * VALLEY.loss(θ).mean()


def test_exercise_wsd_cooldown():
    ns = run_solution("optimization/schedules.md", "ex-schedules-wsd-cooldown")
    assert ns["half_step"] == {"linear": 9000, "1-sqrt": 8500}
    assert ns["recent_weight"] == pytest.approx(1 - math.exp(1000 * math.log(0.999)), rel=1e-14)
    assert ns["recent_weight"] == pytest.approx(0.6323, abs=1e-4)


def test_wsd_demo_moves_and_draws_the_package_runs():
    demo = wsd_demo()
    first = demo.png()
    assert demo.result.branch == 400 and demo.result.decay == 80
    demo.set(branch=700, cooldown=0.4, shape=1)
    assert demo.result.decay == 280
    np.testing.assert_array_equal(
        demo.result.rates["WSD to T_b"],
        warmup_stable_decay(
            np.arange(1, 701), lr=0.3, total=700, decay=280, warmup=20, shape="1-sqrt"
        ),
    )
    moved = demo.png()
    assert moved != first
    fresh = wsd_demo()
    fresh.set(branch=700, cooldown=0.4, shape=1)
    assert fresh.values == demo.values


# -- schedule-free AdamW -----------------------------------------------------------------------


def algorithm_1(grad, x1, steps, *, lr, β1, β2, eps, λ, T_warmup):
    """Algorithm 1 of Defazio et al. (2024), line by line, in float64; returns every y_t and
    the final x."""
    z, x, v = x1.copy(), x1.copy(), np.zeros_like(x1)
    γ_squares, ys = [], []
    for t in range(1, steps + 1):
        y = (1 - β1) * z + β1 * x
        ys.append(y)
        g = grad(y, t)
        v = β2 * v + (1 - β2) * g * g
        γ = lr * math.sqrt(1 - β2**t) * min(1.0, t / T_warmup)
        z = z - γ * g / (np.sqrt(v) + eps) - γ * λ * y
        γ_squares.append(γ * γ)
        c = γ * γ / sum(γ_squares)
        x = (1 - c) * x + c * z
    return ys, x


def noisy_quadratic_grad(seed, n):
    rng = np.random.default_rng(seed)
    h = rng.uniform(0.1, 3.0, n)
    noise = rng.normal(size=(400, n))
    return lambda θ, t: h * θ + 0.3 * noise[t - 1]


@pytest.mark.algorithm("alg-schedule-free-adamw")
@pytest.mark.parametrize("seed", range(4))
def test_schedule_free_adamw_step_matches_algorithm_1(seed):
    rng = np.random.default_rng(seed)
    n, steps = 6, 120
    grad = noisy_quadratic_grad(seed, n)
    hp = dict(
        lr=float(10 ** rng.uniform(-3, -1)),
        β1=float(rng.uniform(0.5, 0.95)),
        β2=float(rng.uniform(0.9, 0.999)),
        eps=1e-8,
        λ=float(rng.choice([0.0, 0.05])),
        T_warmup=int(rng.integers(1, 30)),
    )
    x1 = rng.normal(size=n)
    ys, x_final = algorithm_1(grad, x1, steps, **hp)
    θ, state = x1.copy(), {}
    for t in range(1, steps + 1):
        np.testing.assert_allclose(θ, ys[t - 1], rtol=1e-12, atol=1e-14)
        θ, state = schedule_free_adamw_step(
            θ,
            grad(θ, t),
            state,
            lr=hp["lr"],
            betas=(hp["β1"], hp["β2"]),
            eps=hp["eps"],
            weight_decay=hp["λ"],
            warmup=hp["T_warmup"],
        )
    np.testing.assert_allclose(state["x"], x_final, rtol=1e-12, atol=1e-14)
    assert np.abs(state["x"] - x1).max() > 1e-3  # it moved


@pytest.mark.algorithm("alg-schedule-free-adamw")
def test_ScheduleFreeAdamW_matches_the_rule_and_algorithm_1_on_torch():
    n, steps = 5, 60
    grad = noisy_quadratic_grad(7, n)
    x1 = np.linspace(-1, 1, n)
    ys, x_final = algorithm_1(
        grad, x1, steps, lr=0.05, β1=0.9, β2=0.99, eps=1e-8, λ=0.01, T_warmup=10
    )
    p = torch.nn.Parameter(torch.tensor(x1))
    opt = ScheduleFreeAdamW([p], lr=0.05, betas=(0.9, 0.99), weight_decay=0.01, warmup=10)
    for t in range(1, steps + 1):
        np.testing.assert_allclose(p.detach().numpy(), ys[t - 1], rtol=1e-12, atol=1e-14)
        p.grad = torch.from_numpy(grad(p.detach().numpy(), t))
        opt.step()
    (x,) = opt.averaged_parameters()
    np.testing.assert_allclose(x.numpy(), x_final, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="warmup"):
        ScheduleFreeAdamW([p], warmup=-1)


@pytest.mark.algorithm("alg-schedule-free-adamw")
def test_chapter_claim_schedule_free_average_is_far_below_the_base_iterates():
    rng = np.random.default_rng(0)
    θ = np.tile(np.array(VALLEY.start, dtype=float), (200, 1))
    state = {}
    for _ in range(1000):
        g = θ @ VALLEY.hessian + rng.standard_normal(θ.shape)
        θ, state = schedule_free_adamw_step(θ, g, state, lr=0.05, warmup=20)
    base, average = VALLEY.loss(state["z"]).mean(), VALLEY.loss(state["x"]).mean()
    assert average < 0.25 * base
    assert abs(VALLEY.loss(θ).mean() - average) < 0.2 * average  # the training point is close
