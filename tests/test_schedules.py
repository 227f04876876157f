"""Learning-rate schedules against torch.optim.lr_scheduler, step for step, and closed forms."""

import functools
import math

import numpy as np
import pytest
import torch
from demo_checks import differing_fraction, pixels
from torch.optim import lr_scheduler as tls

from chapters import run_solution
from llmtrain.demos.optimization.schedules import BOWL, FAMILIES, expected_losses, schedule_demo
from llmtrain.optim import (
    SGD,
    ScheduledLR,
    linear_warmup,
    minimize,
    noam,
    one_cycle,
    sgd_step,
    sgdr,
    step_decay,
    warmup_cosine,
)

TOL = dict(rtol=1e-12, atol=1e-15)


def torch_lrs(make_scheduler, lr, steps):
    """The lr that update t = 1..steps uses under a torch scheduler: its value after t − 1
    calls to ``scheduler.step()``."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


def ours_lrs(schedule, lr, steps):
    """The same, with our schedule driving torch.optim.SGD through ScheduledLR."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = ScheduledLR(opt, schedule)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


def check_both(schedule, lr, make_scheduler, steps):
    expected = torch_lrs(make_scheduler, lr, steps)
    t = np.arange(1, steps + 1)
    np.testing.assert_allclose(schedule(t), expected, **TOL)  # the pure function, vectorised
    np.testing.assert_allclose(
        [schedule(int(k)) for k in t[:: max(1, steps // 17)]],
        expected[:: max(1, steps // 17)],
        **TOL,
    )  # scalar calls
    np.testing.assert_allclose(ours_lrs(schedule, lr, steps), expected, **TOL)  # the adapter
    assert np.ptp(expected) > 0  # the schedule really changes the rate


@pytest.mark.algorithm("alg-step-decay")
@pytest.mark.parametrize("seed", range(6))
def test_step_decay_matches_StepLR(seed):
    rng = np.random.default_rng(seed)
    lr, S, γ = (
        float(10 ** rng.uniform(-4, 0)),
        int(rng.integers(1, 30)),
        float(rng.uniform(0.1, 0.9)),
    )
    schedule = functools.partial(step_decay, lr=lr, step_size=S, gamma=γ)
    check_both(schedule, lr, lambda o: tls.StepLR(o, step_size=S, gamma=γ), 150)


@pytest.mark.algorithm("alg-linear-warmup")
@pytest.mark.parametrize("seed", range(6))
def test_linear_warmup_matches_LinearLR(seed):
    # Update t uses α_max t / T_w: LinearLR starting at 1/T_w and ending after T_w − 1 steps.
    rng = np.random.default_rng(seed)
    lr, T_w = float(10 ** rng.uniform(-4, 0)), int(rng.integers(2, 60))
    schedule = functools.partial(linear_warmup, lr=lr, warmup=T_w)
    make = lambda o: tls.LinearLR(o, start_factor=1 / T_w, total_iters=T_w - 1)  # noqa: E731
    check_both(schedule, lr, make, 2 * T_w + 5)
    assert linear_warmup(T_w, lr=lr, warmup=T_w) == lr
    assert linear_warmup(7, lr=lr, warmup=0) == lr


@pytest.mark.algorithm("alg-warmup-cosine")
@pytest.mark.parametrize("seed", range(8))
def test_warmup_cosine_matches_SequentialLR_of_LinearLR_and_CosineAnnealingLR(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(20, 300))
    T_w = int(rng.integers(2, T // 3))
    lr = float(10 ** rng.uniform(-4, -1))
    α_min = float(rng.choice([0.0, 0.1 * lr, rng.uniform(0, lr)]))

    def make(o):
        warm = tls.LinearLR(o, start_factor=1 / T_w, total_iters=T_w - 1)
        cos = tls.CosineAnnealingLR(o, T_max=T - T_w, eta_min=α_min)
        return tls.SequentialLR(o, [warm, cos], milestones=[T_w - 1])

    schedule = functools.partial(warmup_cosine, lr=lr, total=T, warmup=T_w, min_lr=α_min)
    check_both(schedule, lr, make, T)  # the whole schedule, up to and including step T


@pytest.mark.algorithm("alg-warmup-cosine")
@pytest.mark.parametrize("eta_min", [0.0, 0.003, 0.05])
def test_cosine_matches_CosineAnnealingLR_then_holds_the_floor_where_torch_rises(eta_min):
    # Without warmup in torch's sense (the first update at the peak): T_w = 1, T = T_max + 1.
    lr, T_max = 0.1, 40
    schedule = functools.partial(warmup_cosine, lr=lr, total=T_max + 1, warmup=1, min_lr=eta_min)
    check_both(schedule, lr, lambda o: tls.CosineAnnealingLR(o, T_max, eta_min), T_max + 1)
    # Past T_max, CosineAnnealingLR has no "end phase": it follows the periodic closed form
    # and climbs back to the peak at 2 T_max (ERRATA #35). Our schedule holds the floor.
    steps = 3 * T_max + 1
    theirs = torch_lrs(lambda o: tls.CosineAnnealingLR(o, T_max, eta_min), lr, steps)
    k = np.arange(steps)
    periodic = eta_min + 0.5 * (lr - eta_min) * (1 + np.cos(math.pi * k / T_max))
    np.testing.assert_allclose(theirs, periodic, rtol=1e-10, atol=1e-13)
    assert theirs[2 * T_max] == pytest.approx(lr, rel=1e-10)
    ours = schedule(np.arange(1, steps + 1))
    np.testing.assert_array_equal(ours[T_max:], eta_min)


@pytest.mark.algorithm("alg-warmup-cosine")
def test_gpt3_recipe_warms_up_over_375M_tokens_and_ends_at_a_tenth():
    # 3.2M-token batches: 375M tokens of warmup is 117 updates (rounded down).
    lr, T_w = 6e-4, 375_000_000 // 3_200_000
    T = T_w + 80_000
    α = functools.partial(warmup_cosine, lr=lr, total=T, warmup=T_w, min_lr=0.1 * lr)
    assert T_w == 117
    assert α(1) == pytest.approx(lr / 117, rel=1e-14) and α(T_w) == lr
    # Halfway through the decay the cosine term is 1: the mean of peak and floor.
    assert α(T_w + 40_000) == pytest.approx(0.55 * lr, rel=1e-14)
    assert α(T) == pytest.approx(0.1 * lr, rel=1e-14)
    assert α(T + 10_000) == pytest.approx(0.1 * lr, rel=1e-14)
    values = α(np.arange(1, T + 1))
    assert np.all(np.diff(values[T_w - 1 :]) <= 0) and np.all(np.diff(values[:T_w]) > 0)


@pytest.mark.algorithm("alg-one-cycle")
@pytest.mark.parametrize("seed", range(8))
def test_one_cycle_matches_OneCycleLR(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(30, 400))
    kwargs = dict(
        pct_start=float(rng.uniform(0.1, 0.45)),
        div_factor=float(rng.uniform(5, 50)),
        final_div_factor=float(10 ** rng.uniform(1, 4)),
    )
    anneal = "cos" if seed < 4 else "linear"
    three_phase = bool(seed % 2)
    max_lr = float(10 ** rng.uniform(-3, 0))
    schedule = functools.partial(
        one_cycle, max_lr=max_lr, total=T, anneal=anneal, three_phase=three_phase, **kwargs
    )
    make = lambda o: tls.OneCycleLR(  # noqa: E731
        o,
        max_lr,
        total_steps=T,
        anneal_strategy=anneal,
        three_phase=three_phase,
        cycle_momentum=False,
        **kwargs,
    )
    check_both(schedule, max_lr, make, T)


@pytest.mark.algorithm("alg-one-cycle")
def test_one_cycle_defaults_are_torchs_defaults():
    # cos annealing, two phases, pct_start 0.3, div 25, final div 1e4; momentum cycling on.
    T, max_lr = 100, 0.5
    make = lambda o: tls.OneCycleLR(o, max_lr, total_steps=T)  # noqa: E731
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched, lrs = make(opt), []
    for _ in range(T):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(one_cycle(np.arange(1, T + 1), max_lr=max_lr, total=T), lrs, **TOL)
    assert one_cycle(1, max_lr=max_lr, total=T) == pytest.approx(max_lr / 25)
    assert one_cycle(T, max_lr=max_lr, total=T) == pytest.approx(max_lr / 25 / 1e4)


@pytest.mark.algorithm("alg-one-cycle")
@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_holds_its_final_rate_where_OneCycleLR_extrapolates_then_raises(three_phase):
    """What the chapter says past the end: torch agrees for t ≤ T only."""
    T, max_lr = 10, 1.0
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched, lrs = tls.OneCycleLR(opt, max_lr, total_steps=T, three_phase=three_phase), []
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        for _ in range(T + 2):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    assert len(lrs) == T + 1  # update T + 1 still gets a rate, the next step raises
    ours = one_cycle(np.arange(1, T + 4), max_lr=max_lr, total=T, three_phase=three_phase)
    np.testing.assert_allclose(ours[:T], lrs[:T], **TOL)
    # Past T, torch's cosine turns back up to the rate of update T − 1; ours stays at α_T.
    assert lrs[T] == pytest.approx(lrs[T - 2], rel=1e-12) and lrs[T] > 100 * lrs[T - 1]
    np.testing.assert_array_equal(ours[T:], ours[T - 1])
    assert ours[T - 1] == pytest.approx(max_lr / 25 / 1e4)


@pytest.mark.algorithm("alg-noam")
@pytest.mark.parametrize(
    ("d_model", "T_w", "scale"), [(512, 4000, 1.0), (64, 100, 2.0), (8, 1, 0.5)]
)
def test_noam_matches_its_closed_form(d_model, T_w, scale):
    t = np.arange(1, 5 * T_w + 50)
    ours = noam(t, d_model=d_model, warmup=T_w, scale=scale)
    # Piecewise: linear growth up to T_w, then inverse square root; they meet at T_w.
    expected = np.where(
        t <= T_w, scale * t / (math.sqrt(d_model) * T_w**1.5), scale / np.sqrt(d_model * t)
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-13)
    assert np.argmax(ours) == T_w - 1
    assert ours.max() == pytest.approx(scale / math.sqrt(d_model * T_w), rel=1e-14)
    # The Transformer base model's peak: 512^-0.5 4000^-0.5 = 7.0e-4.
    if (d_model, T_w, scale) == (512, 4000, 1.0):
        assert ours.max() == pytest.approx(6.9877e-4, rel=1e-4)
    # Driving torch.optim through the adapter gives the same numbers.
    schedule = functools.partial(noam, d_model=d_model, warmup=T_w, scale=scale)
    n = min(300, len(t))
    np.testing.assert_allclose(ours_lrs(schedule, 1.0, n), ours[:n], **TOL)


@pytest.mark.algorithm("alg-sgdr")
@pytest.mark.parametrize(("T_0", "T_mult", "eta_min"), [(10, 1, 0.0), (7, 2, 0.01), (3, 3, 0.002)])
def test_sgdr_matches_CosineAnnealingWarmRestarts(T_0, T_mult, eta_min):
    lr = 0.1
    schedule = functools.partial(sgdr, lr=lr, T_0=T_0, T_mult=T_mult, min_lr=eta_min)
    make = lambda o: tls.CosineAnnealingWarmRestarts(o, T_0, T_mult, eta_min)  # noqa: E731
    check_both(schedule, lr, make, 250)
    # Restarts: the rate is back at the peak at the start of each cycle.
    starts = np.cumsum([T_0 * T_mult**i for i in range(4)])
    np.testing.assert_allclose(schedule(starts + 1), lr, rtol=1e-15)


@pytest.mark.algorithm("alg-warmup-cosine")
def test_schedules_drive_our_SGD_and_torch_Adam_and_give_torchs_numbers():
    T, T_w = 30, 5
    schedule = functools.partial(warmup_cosine, lr=0.05, total=T, warmup=T_w, min_lr=0.005)

    def make_torch(o):
        warm = tls.LinearLR(o, start_factor=1 / T_w, total_iters=T_w - 1)
        cos = tls.CosineAnnealingLR(o, T_max=T - T_w, eta_min=0.005)
        return tls.SequentialLR(o, [warm, cos], milestones=[T_w - 1])

    for ours_cls, theirs_cls, kw in [
        (SGD, torch.optim.SGD, dict(momentum=0.9)),
        (torch.optim.SGD, torch.optim.SGD, dict(momentum=0.9)),
        (torch.optim.Adam, torch.optim.Adam, dict()),
    ]:
        g = torch.Generator().manual_seed(0)
        start = torch.randn(6, generator=g, dtype=torch.float64)
        a, b = start.clone().requires_grad_(), start.clone().requires_grad_()
        opt_a, opt_b = ours_cls([a], lr=0.05, **kw), theirs_cls([b], lr=0.05, **kw)
        sched_a, sched_b = ScheduledLR(opt_a, schedule), make_torch(opt_b)
        for _ in range(T):
            for p, opt, sched in ((a, opt_a, sched_a), (b, opt_b, sched_b)):
                opt.zero_grad()
                ((p - 1) ** 2 + 0.1 * p**4).sum().backward()
                opt.step()
                sched.step()
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert (a - start).abs().max() > 1e-2


def test_ScheduledLR_takes_one_schedule_per_group_and_saves_its_state():
    p, q = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([{"params": [p]}, {"params": [q]}], lr=1.0)
    sched = ScheduledLR(opt, [lambda t: 1.0 / t, lambda t: 2.0 * t])
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.5, 4.0]
    assert "schedules" not in sched.state_dict() and sched.state_dict()["last_epoch"] == 1
    with pytest.raises(ValueError, match="one per parameter group"):
        ScheduledLR(opt, [lambda t: 1.0])
    with pytest.raises(TypeError, match="callable"):
        ScheduledLR(torch.optim.SGD([p], lr=1.0), 0.1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: warmup_cosine(1, lr=0.1, total=10, warmup=-1),
            r"warmup must be an integer in \[0, 9\]",
        ),
        (
            lambda: warmup_cosine(1, lr=0.1, total=10, warmup=10),
            r"warmup must be an integer in \[0, 9\]",
        ),
        (lambda: warmup_cosine(1, lr=0.1, total=10, min_lr=0.2), r"min_lr must be in \[0, lr\]"),
        (lambda: warmup_cosine(1, lr=0.1, total=0), r"total must be an integer in \[1, inf\]"),
        (lambda: warmup_cosine(0, lr=0.1, total=10), r"t must be an integer in \[1, inf\]"),
        (lambda: warmup_cosine(np.arange(3), lr=0.1, total=10), r"t must be an integer in \[1"),
        (lambda: warmup_cosine(1.5, lr=0.1, total=10), "t must be an integer"),
        (lambda: warmup_cosine(1, lr=-0.1, total=10), r"lr must be in \[0, inf\)"),
        (lambda: linear_warmup(1, lr=0.1, warmup=-3), r"warmup must be an integer in \[0, inf\]"),
        (lambda: step_decay(1, lr=0.1, step_size=0), r"step_size must be an integer in \[1, inf\]"),
        (lambda: step_decay(1, lr=0.1, step_size=3, gamma=1.5), r"gamma must be in \(0, 1\]"),
        (lambda: noam(1, d_model=0, warmup=10), r"d_model must be an integer in \[1, inf\]"),
        (lambda: noam(1, d_model=8, warmup=0), r"warmup must be an integer in \[1, inf\]"),
        (lambda: sgdr(1, lr=0.1, T_0=0), r"T_0 must be an integer in \[1, inf\]"),
        (lambda: sgdr(1, lr=0.1, T_0=5, T_mult=0), r"T_mult must be an integer in \[1, inf\]"),
        (lambda: sgdr(1, lr=0.1, T_0=5, min_lr=1.0), r"min_lr must be in \[0, lr\]"),
        (lambda: one_cycle(1, max_lr=0.1, total=10, pct_start=0.05), "pct_start=0.05"),
        (lambda: one_cycle(1, max_lr=0.1, total=10, pct_start=1.0), "pct_start=1.0"),
        (lambda: one_cycle(1, max_lr=0.1, total=10, pct_start=0.6, three_phase=True), "phase"),
        (lambda: one_cycle(1, max_lr=0.1, total=10, anneal="exp"), "anneal must be"),
        (lambda: one_cycle(1, max_lr=0.1, total=10, div_factor=0.5), r"div_factor must be in \[1"),
    ],
)
def test_bad_arguments_name_the_argument_and_range(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_scalar_in_scalar_out_and_arrays_keep_their_shape():
    assert isinstance(warmup_cosine(3, lr=1.0, total=10, warmup=2), float)
    assert isinstance(sgdr(np.int64(3), lr=1.0, T_0=4), float)
    out = noam(np.arange(1, 13).reshape(3, 4), d_model=16, warmup=4)
    assert out.shape == (3, 4)


# -- the chapter's exercises and demo ----------------------------------------------------------


def test_exercise_warmup_cosine_rates():
    ns = run_solution("optimization/schedules.md", "ex-schedules-warmup-cosine")
    expected = [3e-4, 6e-5 + 0.5 * 5.4e-4 * (1 + math.sqrt(2) / 2), 3.3e-4, 6e-5, 6e-5]
    np.testing.assert_allclose(ns["rates"], expected, rtol=1e-12)


def test_exercise_noam_peak_and_half():
    ns = run_solution("optimization/schedules.md", "ex-schedules-noam")
    assert ns["peak"] == pytest.approx((512 * 4000) ** -0.5, rel=1e-14)
    assert (ns["peak_step"], ns["half_step"]) == (4000, 16000)


def test_exercise_sgdr_restarts():
    ns = run_solution("optimization/schedules.md", "ex-schedules-restarts")
    assert ns["starts"] == [1, 11, 31, 71, 151]


def test_schedule_demo_runs_the_package_and_updates_in_place():
    demo = schedule_demo()
    first = demo.png()
    line = demo.figure.axes[0].lines[0]
    run = demo.result
    expected = warmup_cosine(run.steps, lr=0.2, total=400, warmup=40, min_lr=0.02)
    np.testing.assert_allclose(run.rates, expected, rtol=1e-15)
    assert len(run.losses) == 401 and run.diverged_at is None
    # The decayed run ends far below the constant-rate floor of family 1.
    decayed = run.losses[-50:].mean()
    for family in range(len(FAMILIES)):
        demo.set(family=family)
        np.testing.assert_array_equal(line.get_ydata(), demo.result.rates)  # same artist moved
        assert np.all(demo.result.rates > 0)
    assert demo.png() != first
    demo.set(family=1)
    assert demo.result.losses[-50:].mean() > 3 * decayed
    demo.set(family=4, warmup=0, total=50)  # the sliders' corners stay valid
    demo.set(family=3, warmup=300, total=50)
    assert demo.result.rates.shape == (50,)


def test_schedule_demo_after_moves_draws_what_a_fresh_demo_draws(monkeypatch):
    # The moves freeze the background, change both axes' limits (new frozen images), and come
    # back to limits seen before (a stored image): the figure must still be what a new demo
    # draws at those values.
    from llmtrain.demos.optimization import schedules

    captures = []
    capture = schedules.FrozenBackground.capture
    monkeypatch.setattr(
        schedules.FrozenBackground, "capture", lambda *a: captures.append(1) or capture(*a)
    )
    moved = schedule_demo()
    moved.png()
    final = dict(family=5, lr=0.2, total=600, warmup=80, cycle=30)
    for move in [
        dict(family=4),
        dict(lr=0.3),
        dict(total=600, warmup=80),
        dict(family=5, cycle=30),
        dict(lr=0.2),
        dict(lr=0.01),
    ]:
        moved.set(**move)
        moved.png()
    before = pixels(moved)
    n_captures = len(captures)
    assert n_captures >= 4
    moved.set(lr=0.2)  # limits seen two moves ago: their stored image, no new capture
    assert len(captures) == n_captures
    assert moved.values == {**schedule_demo().values, **final}
    fresh = schedule_demo().set(**final)  # a new demo, set straight to the final values
    a, b = pixels(moved), pixels(fresh)
    assert differing_fraction(a, b) < 0.001  # anti-aliasing at edges only
    # ... and not by accident: the figure before the last move is far from it.
    assert differing_fraction(before, b) > 0.01


def test_expected_loss_curve_is_exact():
    # Without noise it is the loss of the run itself; with a constant rate it settles on the
    # floor Σ_h α σ² / (2 (2 − α h)) derived in the chapter.
    rates = warmup_cosine(np.arange(1, 201), lr=0.3, total=200, warmup=20, min_lr=0.03)
    run = minimize(sgd_step, BOWL, steps=200, lr=lambda t: rates[t - 1])
    np.testing.assert_allclose(expected_losses(rates, BOWL, 0.0), run.losses, rtol=1e-10)
    α, σ = 0.2, 1.5
    floor = sum(α * σ**2 / (2 * (2 - α * h)) for h in BOWL.curvatures)
    assert expected_losses(np.full(2000, α), BOWL, σ)[-1] == pytest.approx(floor, rel=1e-12)
