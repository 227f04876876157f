"""Adaptive methods (AdaGrad, RMSProp, Adam, AdamW, Adafactor) against torch.optim, closed
forms and an independent transcription of the Adafactor paper."""

import math

import numpy as np
import pytest
import torch
from demo_checks import differing_fraction, pixels

from llmtrain.optim import (
    Adafactor,
    Adagrad,
    Adam,
    AdamW,
    RMSprop,
    adafactor_step,
    adagrad_step,
    adam_step,
    adamw_step,
    model_state_bytes,
    optimizer_state_size,
    rmsprop_step,
)

SEEDS = range(10)
TOL = dict(rtol=1e-12, atol=1e-12)


def _loss(p):
    # Not quadratic, so that every step sees a different gradient.
    return ((p - 1.0) ** 2).sum() + 0.1 * (p**4).sum() + 0.05 * p.sum() ** 2


def run_pair(
    ours_cls,
    theirs_cls,
    kwargs,
    *,
    steps=40,
    seed=0,
    shapes=((7, 3), (5,)),
    group2=None,
    scheduler=None,
):
    """Train copies of the same parameters with both optimizers, in two parameter groups
    (the second overriding ``group2``), optionally under a learning-rate scheduler.

    Returns our parameters, torch's, the starting point and both optimizers."""
    g = torch.Generator().manual_seed(seed)
    start = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    ours = [p.clone().requires_grad_() for p in start]
    theirs = [p.clone().requires_grad_() for p in start]

    def groups(params):
        return [{"params": params[:1]}, {"params": params[1:], **(group2 or {})}]

    opt_ours, opt_theirs = ours_cls(groups(ours), **kwargs), theirs_cls(groups(theirs), **kwargs)
    scheds = [scheduler(o) for o in (opt_ours, opt_theirs)] if scheduler else []
    for _ in range(steps):
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            sum(_loss(p) for p in params).backward()
            opt.step()
        for s in scheds:
            s.step()
    return ours, theirs, start, opt_ours, opt_theirs


def assert_same_run(ours, theirs, start, moved=1e-3):
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    # The run must have moved the parameters, or the comparison proves nothing.
    assert (
        max(float((a - s).detach().abs().max()) for a, s in zip(ours, start, strict=True)) > moved
    )


def random_lr(rng, low=-3.0, high=-1.0):
    return float(10 ** rng.uniform(low, high))


def maybe(rng, value, p=0.5):
    return value if rng.random() < p else 0.0


# -- AdaGrad --------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-adagrad")
@pytest.mark.parametrize("seed", SEEDS)
def test_Adagrad_matches_torch_for_random_hyperparameters(seed):
    rng = np.random.default_rng(seed)
    kwargs = dict(
        lr=random_lr(rng, -2, 0),
        lr_decay=maybe(rng, rng.uniform(0, 0.1)),
        weight_decay=maybe(rng, rng.uniform(0, 0.1)),
        initial_accumulator_value=maybe(rng, rng.uniform(0, 1)),
        eps=float(10 ** rng.uniform(-10, -6)),
    )
    group2 = dict(lr=random_lr(rng, -2, 0), weight_decay=maybe(rng, 0.05))
    ours, theirs, start, opt, _ = run_pair(
        Adagrad, torch.optim.Adagrad, kwargs, seed=seed, group2=group2
    )
    assert_same_run(ours, theirs, start)
    assert opt.state[ours[0]]["step"] == 40


@pytest.mark.algorithm("alg-adagrad")
def test_Adagrad_fills_the_sum_at_construction_as_torch_does():
    # torch fills every sum with the constructor's initial_accumulator_value, even for a group
    # that names its own; the numbers after a step must match that.
    kwargs = dict(lr=0.1, initial_accumulator_value=0.5)
    group2 = dict(initial_accumulator_value=3.0)
    ours, theirs, start, *_ = run_pair(Adagrad, torch.optim.Adagrad, kwargs, steps=3, group2=group2)
    assert_same_run(ours, theirs, start)
    fresh = Adagrad([torch.zeros(2, requires_grad=True)], initial_accumulator_value=0.25)
    (state,) = fresh.state.values()
    torch.testing.assert_close(state["sum"], torch.full((2,), 0.25))


@pytest.mark.algorithm("alg-adagrad")
def test_adagrad_closed_form_on_a_constant_gradient():
    # s_t = s_0 + t g², and step t moves θ by α / (1 + (t-1) η) · g / (√s_t + ε).
    α, η, s0, ε, g = 0.3, 0.2, 0.5, 1e-10, np.array([2.0, -0.5])
    θ, state = np.zeros(2), {}
    for _ in range(5):
        θ, state = adagrad_step(θ, g, state, lr=α, lr_decay=η, initial_accumulator_value=s0, eps=ε)
    expected = -sum(α / (1 + (t - 1) * η) * g / (np.sqrt(s0 + t * g * g) + ε) for t in range(1, 6))
    np.testing.assert_allclose(θ, expected, rtol=1e-14)
    np.testing.assert_allclose(state["sum"], s0 + 5 * g * g, rtol=1e-15)


# -- RMSProp --------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-rmsprop")
@pytest.mark.parametrize("seed", SEEDS)
def test_RMSprop_matches_torch_for_random_hyperparameters(seed):
    rng = np.random.default_rng(seed)
    kwargs = dict(
        lr=random_lr(rng, -3, -1.5),
        alpha=float(rng.uniform(0.5, 0.999)),
        eps=float(10 ** rng.uniform(-8, -4)),
        weight_decay=maybe(rng, rng.uniform(0, 0.1)),
        momentum=maybe(rng, rng.uniform(0.1, 0.95)),
        centered=bool(rng.random() < 0.5),
    )
    group2 = dict(alpha=float(rng.uniform(0.5, 0.99)), momentum=maybe(rng, 0.5))
    ours, theirs, start, *_ = run_pair(
        RMSprop, torch.optim.RMSprop, kwargs, seed=seed, group2=group2
    )
    assert_same_run(ours, theirs, start)


@pytest.mark.algorithm("alg-rmsprop")
def test_rmsprop_average_against_adagrad_sum_on_a_constant_gradient():
    # With g_t = g for all t: v_t = (1 - ρ^t) g ⊙ g but s_t = t g ⊙ g, a ratio (1 - ρ^t) / t.
    ρ, g = 0.9, np.array([3.0, -0.2])
    θ, rms_state, ada_state = np.zeros(2), {}, {}
    for t in range(1, 21):
        _, rms_state = rmsprop_step(θ, g, rms_state, alpha=ρ)
        _, ada_state = adagrad_step(θ, g, ada_state)
        np.testing.assert_allclose(rms_state["square_avg"], (1 - ρ**t) * g * g, rtol=1e-13)
        np.testing.assert_allclose(
            rms_state["square_avg"] / ada_state["sum"], (1 - ρ**t) / t, rtol=1e-13
        )


# -- Adam, AMSGrad, AdamW -------------------------------------------------------------------


def random_adam_kwargs(rng, weight_decay):
    return dict(
        lr=random_lr(rng, -3, -1),
        betas=(float(rng.uniform(0.0, 0.99)), float(rng.uniform(0.9, 0.9999))),
        eps=float(10 ** rng.uniform(-10, -4)),
        weight_decay=weight_decay,
        amsgrad=bool(rng.random() < 0.5),
    )


@pytest.mark.algorithm("alg-adam")
@pytest.mark.parametrize("seed", SEEDS)
def test_Adam_matches_torch_for_random_hyperparameters(seed):
    rng = np.random.default_rng(seed)
    kwargs = random_adam_kwargs(rng, maybe(rng, rng.uniform(0, 0.1)))
    group2 = dict(lr=random_lr(rng), betas=(0.5, 0.99))
    ours, theirs, start, *_ = run_pair(Adam, torch.optim.Adam, kwargs, seed=seed, group2=group2)
    assert_same_run(ours, theirs, start)


@pytest.mark.algorithm("alg-adamw")
@pytest.mark.parametrize("seed", SEEDS)
def test_AdamW_matches_torch_for_random_hyperparameters(seed):
    rng = np.random.default_rng(seed)
    kwargs = random_adam_kwargs(rng, float(rng.uniform(0, 0.5)))
    group2 = dict(weight_decay=float(rng.uniform(0, 0.1)), amsgrad=not kwargs["amsgrad"])
    ours, theirs, start, *_ = run_pair(AdamW, torch.optim.AdamW, kwargs, seed=seed, group2=group2)
    assert_same_run(ours, theirs, start)


@pytest.mark.algorithm("alg-adam")
@pytest.mark.algorithm("alg-adamw")
@pytest.mark.parametrize("seed", range(5))
def test_Adam_with_decoupled_weight_decay_matches_torch_and_is_AdamW(seed):
    rng = np.random.default_rng(100 + seed)
    kwargs = random_adam_kwargs(rng, float(rng.uniform(0.01, 0.5)))
    # The second group goes back to L2, so the flag must be read per group, as torch reads it.
    group2 = dict(decoupled_weight_decay=False, lr=random_lr(rng))
    ours, theirs, start, *_ = run_pair(
        Adam, torch.optim.Adam, {**kwargs, "decoupled_weight_decay": True}, seed=seed, group2=group2
    )
    assert_same_run(ours, theirs, start)
    # Without the second group, Adam(decoupled_weight_decay=True) is AdamW, number for number.
    adam, adamw, start, *_ = run_pair(
        lambda groups, **kw: Adam(groups, decoupled_weight_decay=True, **kw),
        AdamW,
        kwargs,
        seed=seed,
    )
    assert_same_run(adam, adamw, start)
    with_l2, *_ = run_pair(Adam, torch.optim.Adam, kwargs, seed=seed)
    assert (
        max(float((a - b).detach().abs().max()) for a, b in zip(adam, with_l2, strict=True)) > 1e-4
    )


@pytest.mark.algorithm("alg-adamw")
def test_adam_step_with_decoupled_weight_decay_is_adamw_step():
    rng = np.random.default_rng(3)
    θ, g = rng.normal(size=6), rng.normal(size=6)
    kwargs = dict(lr=0.03, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.2, amsgrad=True)
    a, state_a = adam_step(θ, g, {}, decoupled_weight_decay=True, **kwargs)
    b, state_b = adamw_step(θ, g, {}, **kwargs)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(state_a["exp_avg_sq"], state_b["exp_avg_sq"])
    # The decay is the decoupled one: θ shrinks by 1 - αλ before the Adam step.
    by_hand, _ = adam_step(θ * (1 - 0.03 * 0.2), g, {}, **{**kwargs, "weight_decay": 0.0})
    np.testing.assert_allclose(a, by_hand, rtol=1e-15)


@pytest.mark.algorithm("alg-adam")
@pytest.mark.algorithm("alg-adamw")
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    ("ours_cls", "theirs_cls"), [(Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW)]
)
def test_maximize_matches_torch_for_random_hyperparameters(ours_cls, theirs_cls, seed):
    rng = np.random.default_rng(200 + seed)
    kwargs = random_adam_kwargs(rng, maybe(rng, rng.uniform(0, 0.1), p=0.7))
    if ours_cls is Adam:
        kwargs["decoupled_weight_decay"] = bool(rng.random() < 0.5)
    # Only the first group ascends: maximize is per group, as in torch.
    group2 = dict(maximize=False, lr=random_lr(rng))
    ours, theirs, start, *_ = run_pair(
        ours_cls, theirs_cls, {**kwargs, "maximize": True}, seed=seed, group2=group2
    )
    assert_same_run(ours, theirs, start)
    # Ascending really differs from descending: the first group moved the other way.
    down, *_ = run_pair(ours_cls, theirs_cls, kwargs, seed=seed)
    assert (
        float((ours[0] - start[0]).detach().sum()) * float((down[0] - start[0]).detach().sum()) < 0
    )


@pytest.mark.algorithm("alg-adagrad")
@pytest.mark.algorithm("alg-rmsprop")
@pytest.mark.algorithm("alg-adafactor")
@pytest.mark.parametrize(
    ("ours", "theirs", "kwargs"),
    [
        (Adagrad, torch.optim.Adagrad, dict(lr=0.1, weight_decay=0.05)),
        (RMSprop, torch.optim.RMSprop, dict(lr=0.01, momentum=0.5, weight_decay=0.05)),
        (Adafactor, torch.optim.Adafactor, dict(lr=0.03, weight_decay=0.1)),
    ],
)
def test_a_maximizing_param_group_ascends_in_every_front_as_in_torch(ours, theirs, kwargs):
    # The front negates the gradient itself, so a group's maximize works whatever the rule.
    a, b, start, *_ = run_pair(ours, theirs, kwargs, group2=dict(maximize=True))
    assert_same_run(a, b, start)


@pytest.mark.algorithm("alg-adam")
@pytest.mark.parametrize("foreach", [None, False, True])
@pytest.mark.parametrize("fused", [None, False, True])
def test_foreach_and_fused_are_accepted_and_change_no_number(foreach, fused):
    if foreach and fused:
        for cls in (Adam, torch.optim.Adam):
            with pytest.raises((ValueError, RuntimeError), match=r"fused.*foreach.*True"):
                cls([torch.zeros(1, requires_grad=True)], foreach=foreach, fused=fused)
        return
    kwargs = dict(lr=0.05, weight_decay=0.01, foreach=foreach, fused=fused)
    ours, theirs, start, *_ = run_pair(Adam, torch.optim.Adam, kwargs, steps=10)
    assert_same_run(ours, theirs, start)


@pytest.mark.parametrize("cls", [Adam, AdamW])
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            dict(capturable=True),
            ValueError,
            r"capturable=True is not supported by llmtrain\.optim\.{0}; use torch\.optim\.{0}",
        ),
        (
            dict(differentiable=True),
            ValueError,
            r"differentiable=True is not supported by llmtrain\.optim\.{0}; use torch\.optim\.{0}",
        ),
        (dict(maximize="yes"), TypeError, r"maximize must be True or False, got 'yes'"),
        (dict(fused=1), TypeError, r"fused must be True or False or None, got 1"),
    ],
)
def test_unsupported_torch_options_are_rejected_by_name(cls, kwargs, error, message):
    with pytest.raises(error, match=message.format(cls.__name__)):
        cls([torch.zeros(1, requires_grad=True)], **kwargs)


@pytest.mark.parametrize(("ours", "theirs"), [(Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW)])
def test_the_signature_takes_every_argument_of_its_torch_namesake(ours, theirs):
    import inspect

    mine = inspect.signature(ours).parameters
    their = inspect.signature(theirs).parameters
    assert set(their) <= set(mine), set(their) - set(mine)
    # Same positional order, and each argument passed the same way with the same default.
    positional = [inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert [n for n, q in mine.items() if q.kind in positional] == [
        n for n, q in their.items() if q.kind in positional
    ]
    for name, q in their.items():
        assert mine[name].kind == q.kind, name
        assert mine[name].default == q.default, name


def one_cycle(opt):
    # OneCycleLR also cycles β₁ (torch's "momentum"), so both the rate and the betas move.
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=40)


def cosine(opt):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40, eta_min=1e-4)


@pytest.mark.algorithm("alg-adam")
@pytest.mark.algorithm("alg-adamw")
@pytest.mark.algorithm("alg-adagrad")
@pytest.mark.algorithm("alg-rmsprop")
@pytest.mark.algorithm("alg-adafactor")
@pytest.mark.parametrize(
    ("ours", "theirs", "scheduler", "kwargs"),
    [
        (Adam, torch.optim.Adam, one_cycle, dict(lr=0.01, weight_decay=0.05)),
        (AdamW, torch.optim.AdamW, one_cycle, dict(lr=0.01, weight_decay=0.05)),
        (Adagrad, torch.optim.Adagrad, cosine, dict(lr=0.3, lr_decay=0.01)),
        (RMSprop, torch.optim.RMSprop, cosine, dict(lr=0.01, momentum=0.5)),
        (Adafactor, torch.optim.Adafactor, cosine, dict(lr=0.03, weight_decay=0.1)),
    ],
)
def test_a_torch_scheduler_drives_each_optimizer_as_it_drives_torch(
    ours, theirs, scheduler, kwargs
):
    a, b, start, opt, opt_theirs = run_pair(ours, theirs, kwargs, steps=40, scheduler=scheduler)
    assert_same_run(a, b, start)
    assert opt.param_groups[0]["lr"] == opt_theirs.param_groups[0]["lr"] != kwargs["lr"]


@pytest.mark.algorithm("alg-adam")
def test_adams_first_step_moves_each_coordinate_by_about_lr():
    # m̂_1 = g_1 and v̂_1 = g_1², so the first step is α g / (|g| + ε) ≈ α sign(g), whatever
    # the size of g.
    g = np.array([1e-4, -3.0, 250.0, -0.02])
    θ, _ = adam_step(np.zeros(4), g, {}, lr=1e-3)
    np.testing.assert_allclose(θ, -1e-3 * np.sign(g), rtol=1e-3)
    np.testing.assert_allclose(θ, -1e-3 * g / (np.abs(g) + 1e-8), rtol=1e-14)


@pytest.mark.algorithm("alg-adam")
def test_adam_bias_correction_closed_form():
    # For a constant gradient g: m_t = (1 - β₁ᵗ) g and v_t = (1 - β₂ᵗ) g², so the corrected
    # m̂_t = g and v̂_t = g² exactly, and every step is α g / (|g| + ε).
    α, (β1, β2), ε = 0.01, (0.8, 0.99), 1e-8
    g = np.array([0.5, -2.0, 1e-3])
    θ, state = np.zeros(3), {}
    for t in range(1, 26):
        θ, state = adam_step(θ, g, state, lr=α, betas=(β1, β2), eps=ε)
        np.testing.assert_allclose(state["exp_avg"], (1 - β1**t) * g, rtol=1e-13)
        np.testing.assert_allclose(state["exp_avg_sq"], (1 - β2**t) * g * g, rtol=1e-13)
    np.testing.assert_allclose(θ, -25 * α * g / (np.abs(g) + ε), rtol=1e-13)
    assert state["step"] == 25


@pytest.mark.algorithm("alg-adam")
def test_amsgrad_keeps_the_maximum_of_v_and_bias_corrects_it():
    α, (β1, β2), ε = 0.1, (0.9, 0.9), 1e-8
    gradients = [np.array([4.0]), np.array([0.1]), np.array([0.1]), np.array([0.1])]
    θ, state, v, v_max, m = np.zeros(1), {}, 0.0, 0.0, 0.0
    for t, g in enumerate(gradients, start=1):
        before = θ
        θ, state = adam_step(θ, g, state, lr=α, betas=(β1, β2), eps=ε, amsgrad=True)
        m = β1 * m + (1 - β1) * g
        v = β2 * v + (1 - β2) * g * g
        v_max = np.maximum(v_max, v)
        expected = before - α * (m / (1 - β1**t)) / (np.sqrt(v_max / (1 - β2**t)) + ε)
        np.testing.assert_allclose(θ, expected, rtol=1e-14)
    # The gradients shrank, so v fell below its maximum: AMSGrad remembers the large one.
    assert v[0] < v_max[0]
    np.testing.assert_allclose(state["max_exp_avg_sq"], v_max, rtol=1e-14)


@pytest.mark.algorithm("alg-adamw")
def test_adamw_is_a_decay_then_an_adam_step_and_differs_from_l2():
    rng = np.random.default_rng(0)
    θ0, g = rng.normal(size=5), rng.normal(size=5) * np.array([1e-3, 1e-2, 1, 10, 100])
    α, λ = 0.01, 0.1
    decoupled, _ = adamw_step(θ0, g, {}, lr=α, weight_decay=λ)
    by_hand, _ = adam_step(θ0 * (1 - α * λ), g, {}, lr=α, weight_decay=0.0)
    np.testing.assert_allclose(decoupled, by_hand, rtol=1e-15)
    coupled, _ = adam_step(θ0, g, {}, lr=α, weight_decay=λ)
    assert np.abs(coupled - decoupled).max() > 1e-4


@pytest.mark.algorithm("alg-adam")
@pytest.mark.algorithm("alg-adamw")
@pytest.mark.algorithm("alg-adagrad")
@pytest.mark.algorithm("alg-rmsprop")
@pytest.mark.algorithm("alg-adafactor")
@pytest.mark.parametrize(
    ("rule", "kwargs"),
    [
        (adam_step, dict(lr=0.1, betas=(0.8, 0.95), weight_decay=0.1, amsgrad=True)),
        (adamw_step, dict(lr=0.1, weight_decay=0.1)),
        (adagrad_step, dict(lr=0.1, lr_decay=0.1, weight_decay=0.1)),
        (rmsprop_step, dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
        (adafactor_step, dict(lr=0.05, weight_decay=0.1)),
        (adafactor_step, dict(lr=0.05, paper_eps=True, eps=(1e-30, 1e-3))),
    ],
)
def test_each_rule_is_the_same_on_numpy_and_torch(rule, kwargs):
    rng = np.random.default_rng(1)
    for shape in [(3, 4), (6,)]:
        θ = rng.normal(size=shape)
        t = torch.tensor(θ)
        state_np, state_t = {}, {}
        for _ in range(8):
            g = rng.normal(size=shape)
            θ, state_np = rule(θ, g, state_np, **kwargs)
            t, state_t = rule(t, torch.tensor(g), state_t, **kwargs)
        assert isinstance(θ, np.ndarray) and isinstance(t, torch.Tensor)
        np.testing.assert_allclose(θ, t.numpy(), rtol=1e-13, atol=1e-14)


@pytest.mark.algorithm("alg-adam")
@pytest.mark.parametrize("backend", [np.asarray, torch.tensor])
def test_rules_never_modify_theta_or_g_and_pass_their_state_on(backend):
    θ, g = backend(np.ones(3)), backend(np.full(3, 0.5))
    θ1, state = adam_step(θ, g, {}, amsgrad=True)
    m1 = state["exp_avg"]
    θ2, state2 = adam_step(θ1, g, state, amsgrad=True)
    np.testing.assert_array_equal(np.asarray(θ), np.ones(3))
    np.testing.assert_array_equal(np.asarray(g), np.full(3, 0.5))
    assert θ2 is not θ1 and not np.array_equal(np.asarray(θ2), np.asarray(θ1))
    # The moments are updated in place: the state is handed on from step to step.
    assert state2["exp_avg"] is m1
    np.testing.assert_allclose(np.asarray(m1), (1 - 0.9**2) * 0.5, rtol=1e-15)


# -- Adafactor ------------------------------------------------------------------------------


def paper_adafactor(X0, gradient, steps, *, ρ_max, c, ε1, ε2, d, relative_step=True):
    """Algorithms 4 (matrices) and 5 (vectors) of Shazeer & Stern (2018), transcribed line
    by line with row and column *sums*, as the paper writes them."""
    X = np.array(X0, dtype=float)
    R = C = V = None
    for t in range(1, steps + 1):
        G = gradient(X)
        β2 = 1.0 - t**c
        ρ = min(ρ_max, 1.0 / math.sqrt(t))
        if X.ndim == 2:
            n, m = X.shape
            S = G**2 + ε1 * np.ones((n, 1)) @ np.ones((1, m))
            row, col = S @ np.ones(m), np.ones(n) @ S
            R = row if R is None else β2 * R + (1 - β2) * row  # β̂₂₁ = 0: R_1 = row
            C = col if C is None else β2 * C + (1 - β2) * col
            V̂ = np.outer(R, C) / (np.ones(n) @ R)
        else:
            S = G**2 + ε1
            V = S if V is None else β2 * V + (1 - β2) * S
            V̂ = V
        U = G / np.sqrt(V̂)
        Û = U / max(1.0, np.sqrt(np.mean(U**2)) / d)
        α = max(ε2, np.sqrt(np.mean(X**2))) * ρ if relative_step else ρ
        X = X - α * Û
    return X


@pytest.mark.algorithm("alg-adafactor")
@pytest.mark.parametrize("seed", SEEDS)
def test_adafactor_matches_a_transcription_of_the_paper(seed):
    rng = np.random.default_rng(seed)
    shape = [(int(rng.integers(2, 9)), int(rng.integers(2, 9))), (int(rng.integers(2, 9)),)][
        seed % 2
    ]
    target = rng.normal(size=shape)

    def gradient(X):
        return 2 * (X - target) + 0.4 * X**3

    hyper = dict(
        ρ_max=random_lr(rng, -3, 0),
        c=float(rng.uniform(-1.0, -0.5)),
        ε1=float(10 ** rng.uniform(-30, -20)),
        ε2=float(10 ** rng.uniform(-4, -2)),
        d=float(rng.uniform(1.0, 2.0)),
        relative_step=bool(rng.random() < 0.7),
    )
    X0 = rng.normal(size=shape) * 0.1
    expected = paper_adafactor(X0, gradient, 40, **hyper)
    θ, state = X0, {}
    for _ in range(40):
        θ, state = adafactor_step(
            θ,
            gradient(θ),
            state,
            lr=hyper["ρ_max"],
            beta2_decay=hyper["c"],
            eps=(hyper["ε1"], hyper["ε2"]),
            d=hyper["d"],
            relative_step=hyper["relative_step"],
            paper_eps=True,
        )
    np.testing.assert_allclose(θ, expected, **TOL)
    assert np.abs(θ - X0).max() > 1e-3


@pytest.mark.algorithm("alg-adafactor")
@pytest.mark.parametrize("seed", SEEDS)
def test_Adafactor_matches_torch_for_random_hyperparameters(seed):
    rng = np.random.default_rng(seed)
    # Relative steps above a few percent make the run chaotic once it reaches the minimum, and
    # chaos amplifies last-bit differences (torch's lerp uses a fused multiply-add).
    kwargs = dict(
        lr=random_lr(rng, -3, -1.5),
        beta2_decay=float(rng.uniform(-1.0, -0.5)),
        eps=(
            None if rng.random() < 0.5 else float(10 ** rng.uniform(-30, -10)),
            float(10 ** rng.uniform(-4, -2)),
        ),
        d=float(rng.uniform(1.0, 2.0)),
        weight_decay=maybe(rng, rng.uniform(0, 0.2)),
    )
    group2 = dict(d=1.0, lr=random_lr(rng, -3, -1.5))
    shapes = ((7, 3), (2, 3, 4), (5,), (4, 1))
    ours, theirs, start, opt, _ = run_pair(
        Adafactor, torch.optim.Adafactor, kwargs, seed=seed, shapes=shapes, group2=group2
    )
    assert_same_run(ours, theirs, start)
    assert opt.state[ours[0]]["row_var"].shape == (7, 1)
    assert opt.state[ours[0]]["col_var"].shape == (1, 3)


@pytest.mark.algorithm("alg-adafactor")
def test_adafactor_rank_one_estimate_is_exact_for_a_rank_one_squared_gradient():
    # If g ⊙ g = a bᵀ is rank one, the factored estimate recovers it exactly at step 1.
    a, b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 0.5])
    g = np.sqrt(np.outer(a, b))
    _, state = adafactor_step(np.ones((3, 2)), g, {}, eps=(1e-30, 1e-3))
    V̂ = state["row_var"] @ state["col_var"] / state["row_var"].mean()
    np.testing.assert_allclose(V̂, g * g, rtol=1e-14)


# -- arguments and memory -------------------------------------------------------------------

RULES = {
    "adagrad": (adagrad_step, Adagrad),
    "rmsprop": (rmsprop_step, RMSprop),
    "adam": (adam_step, Adam),
    "adamw": (adamw_step, AdamW),
    "adafactor": (adafactor_step, Adafactor),
}


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "message"),
    [
        ("adam", dict(lr=-0.1), ValueError, r"lr must be in \[0, inf\), got -0.1"),
        ("adam", dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be in \[0, 1\), got 1.0"),
        ("adamw", dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
        ("adam", dict(betas=0.9), TypeError, r"betas must be a pair"),
        ("adam", dict(eps=0.0), ValueError, r"eps must be in \(0, inf\), got 0.0"),
        ("adamw", dict(weight_decay=-0.01), ValueError, r"weight_decay must be in \[0, inf\)"),
        ("adagrad", dict(lr_decay=-1.0), ValueError, r"lr_decay must be in \[0, inf\)"),
        (
            "adagrad",
            dict(initial_accumulator_value=-1.0),
            ValueError,
            r"initial_accumulator_value must be in \[0, inf\)",
        ),
        ("adagrad", dict(eps=-1e-10), ValueError, r"eps must be in \(0, inf\)"),
        ("rmsprop", dict(alpha=1.0), ValueError, r"alpha must be in \[0, 1\), got 1.0"),
        ("rmsprop", dict(momentum=1.2), ValueError, r"momentum must be in \[0, 1\), got 1.2"),
        ("rmsprop", dict(lr=float("nan")), ValueError, r"lr must be in"),
        ("adafactor", dict(d=0.5), ValueError, r"d must be in \[1, inf\), got 0.5"),
        ("adafactor", dict(beta2_decay=0.5), ValueError, r"beta2_decay must be in \(-inf, 0\]"),
        ("adafactor", dict(eps=(0.0, 1e-3)), ValueError, r"eps\[0\] must be in \(0, inf\)"),
        ("adafactor", dict(eps=(None, -1.0)), ValueError, r"eps\[1\] must be in \[0, inf\)"),
        ("adafactor", dict(eps=1e-3), TypeError, r"eps must be a pair"),
    ],
)
def test_bad_hyperparameters_name_the_argument_and_range(name, kwargs, error, message):
    rule, cls = RULES[name]
    with pytest.raises(error, match=message):
        cls([torch.zeros(1, requires_grad=True)], **kwargs)
    with pytest.raises(error, match=message):
        rule(np.zeros(1), np.zeros(1), {}, **kwargs)


def test_torch_defaults_are_the_package_defaults():
    import inspect

    for name, (_rule, cls) in RULES.items():
        theirs = {
            "adagrad": torch.optim.Adagrad,
            "rmsprop": torch.optim.RMSprop,
            "adam": torch.optim.Adam,
            "adamw": torch.optim.AdamW,
            "adafactor": torch.optim.Adafactor,
        }[name]
        p = torch.zeros(1, requires_grad=True)
        ours_defaults, their_defaults = cls([p]).defaults, theirs([p]).defaults
        for key, value in ours_defaults.items():
            if key in ("relative_step", "paper_eps"):
                continue
            assert their_defaults[key] == value, (name, key)
        assert inspect.signature(cls).parameters["lr"].default == their_defaults["lr"]


def test_optimizer_state_sizes_and_bytes_per_parameter():
    assert optimizer_state_size("sgd", (10, 20)) == 0
    assert optimizer_state_size("sgd_momentum", (10, 20)) == 200
    assert optimizer_state_size("adagrad", (10, 20)) == 200
    assert optimizer_state_size("adam", (10, 20)) == 400
    assert optimizer_state_size("adam_amsgrad", (10, 20)) == 600
    assert optimizer_state_size("adafactor", (10, 20)) == 30
    assert optimizer_state_size("adafactor", (4, 10, 20)) == 120
    assert optimizer_state_size("adafactor", (7,)) == 7
    # ZeRO's numbers: mixed-precision Adam 2 + 2 + 4 + 8 = 16 bytes per parameter (K = 12),
    # SGD with momentum in fp32: 4 + 4 + 4 = 12 bytes.
    shapes = [(256, 512), (512,)]
    n = 256 * 512 + 512
    assert model_state_bytes("adam", shapes, mixed_precision=True) == 16 * n
    assert model_state_bytes("adamw", shapes, mixed_precision=True) - 4 * n == 12 * n
    assert model_state_bytes("sgd_momentum", shapes) == 12 * n
    assert model_state_bytes("sgd", shapes) == 8 * n
    with pytest.raises(ValueError, match="name must be one of"):
        optimizer_state_size("lion", (3,))


@pytest.mark.algorithm("alg-adafactor")
def test_adafactor_state_is_what_optimizer_state_size_counts():
    p = torch.zeros(6, 9, requires_grad=True)
    opt = Adafactor([p])
    p.grad = torch.ones(6, 9)
    opt.step()
    stored = sum(v.numel() for k, v in opt.state[p].items() if k != "step")
    assert stored == optimizer_state_size("adafactor", (6, 9)) == 15


# -- demos ----------------------------------------------------------------------------------


def test_the_paths_demo_runs_the_package_and_moves_its_artists():
    from llmtrain.demos.optimization.adaptive import adaptive_paths_demo

    demo = adaptive_paths_demo()
    first = demo.png()
    assert set(demo.result) == {"SGD", "AdaGrad", "RMSProp", "Adam"}
    lines = list(demo.figure.axes[1].lines)
    demo.set(beta1=0.5)
    assert demo.png() != first
    np.testing.assert_array_equal(lines[3].get_ydata(), demo.result["Adam"].losses)
    # The shared learning rate reaches every rule: SGD diverges past 2 / h_max = 0.08.
    demo.set(lr=0.3)
    assert demo.result["SGD"].diverged and not demo.result["Adam"].diverged
    assert "diverged" in demo.figure.axes[1].get_legend().get_texts()[0].get_text()


def test_the_weight_decay_demo_shows_l2_and_decoupled_decay_apart():
    from llmtrain.demos.optimization.adaptive import weight_decay_comparison, weight_decay_demo

    result = weight_decay_comparison(weight_decay=0.5, lr=0.01)
    adam_l2, adamw = result["theta"]["Adam + L2"], result["theta"]["AdamW"]
    # Adam + L2 settles near the L2 optimum a / (a + λ), which depends on the gradient scale;
    # AdamW shrinks every coordinate by about the same factor.
    np.testing.assert_allclose(adam_l2, result["l2_solution"], atol=0.08)
    assert adam_l2[0] < 0.1 and adam_l2[-1] > 0.9
    assert adamw.max() - adamw.min() < 0.15 and 0.7 < adamw.mean() < 0.85
    np.testing.assert_allclose(result["decay"]["AdamW"], 0.01 * 0.5)
    assert result["decay"]["Adam + L2"][0] > 10 * result["decay"]["Adam + L2"][-1]
    demo = weight_decay_demo()
    first = demo.png()
    line = demo.figure.axes[0].lines[1]
    demo.set(weight_decay=2.0)
    assert demo.png() != first
    np.testing.assert_array_equal(line.get_ydata(), demo.result["theta"]["Adam + L2"])


def test_the_accumulator_demo_follows_the_closed_forms():
    from llmtrain.demos.optimization.adaptive import accumulator_demo, accumulators

    ρ = 0.9
    result = accumulators(ρ, steps=150, switch=100)
    t = np.arange(1, 101)
    np.testing.assert_allclose(result["sum"][:100], t, rtol=1e-13)
    np.testing.assert_allclose(result["average"][:100], 1 - ρ**t, rtol=1e-13)
    demo = accumulator_demo()
    first = demo.png()
    demo.set(rho=0.99)
    assert demo.png() != first
    np.testing.assert_array_equal(demo.figure.axes[0].lines[1].get_ydata(), demo.result["average"])


@pytest.mark.parametrize(
    ("name", "moves"),
    [
        ("accumulator_demo", [dict(rho=0.99), dict(rho=0.5), dict(rho=0.95)]),
        ("weight_decay_demo", [dict(weight_decay=3.0, lr=0.05), dict(weight_decay=0.02)]),
        ("adaptive_paths_demo", [dict(beta1=0.5), dict(lr=0.3), dict(beta2=0.6, lr=0.01)]),
    ],
)
def test_frozen_background_draws_what_a_fresh_demo_draws(name, moves):

    import llmtrain.demos.optimization.adaptive as demos

    moved = getattr(demos, name)()
    first = pixels(moved)
    final = {}
    for move in moves:  # the first move freezes the background
        moved.set(**move)
        final.update(move)
        after = pixels(moved)
    fresh = getattr(demos, name)().set(**final)  # a new demo, set straight to the final values
    assert differing_fraction(after, first) > 0.001  # the moves show
    differ = differing_fraction(after, pixels(fresh))
    assert differ < 0.005  # only anti-aliasing at edges may differ
    # The frozen background and overlay keep the static figure: back at the defaults, the
    # moved demo draws what a new one draws before any move.
    moved.set(**{s.name: s.default for s in moved.sliders.values()})
    assert differing_fraction(pixels(moved), first) < 0.005


@pytest.mark.parametrize("name", ["accumulator_demo", "weight_decay_demo"])
def test_frozen_legends_stay_on_top_of_a_line_that_crosses_them(name):
    import llmtrain.demos.optimization.adaptive as demos

    demo = getattr(demos, name)()
    demo.png()
    demo.set(**{s.name: s.high for s in demo.sliders.values()})  # freezes the legends
    legends = [ax.get_legend() for ax in demo.figure.axes]
    assert not any(legend.get_visible() for legend in legends)  # painted from an image
    # Move a visible (moving) line straight through each legend, as no slider value does.
    renderer = demo.figure.canvas.get_renderer()
    for ax, legend in zip(demo.figure.axes, legends, strict=True):
        box = legend.get_window_extent(renderer)
        across = np.column_stack(
            [np.linspace(box.x0, box.x1, 5), np.full(5, (box.y0 + box.y1) / 2)]
        )
        line = next(line for line in ax.lines if line.get_visible())
        line.set_data(*ax.transData.inverted().transform(across).T)
        line.set_linewidth(8)  # wide enough that hiding the legend would show
    frozen = pixels(demo)
    image = demo.figure.artists[-1]  # the legends' image, added after the background's
    image.set_visible(False)
    for legend in legends:
        legend.set_visible(True)
    direct = pixels(demo)  # the legends drawn as artists, on top of the line
    # 0 with the image above the lines, about 0.01 with it below them.
    assert differing_fraction(frozen, direct) < 0.001


# -- exercises ------------------------------------------------------------------------------


def test_exercise_rmsprop_ratio():
    from chapters import run_solution

    ns = run_solution("optimization/adaptive.md", "ex-adaptive-rmsprop-ratio")
    assert ns["ratio_10"] == pytest.approx((1 - 0.9**10) / 10, rel=1e-12)
    assert ns["first_within"] == 44


def test_exercise_bias_correction():
    from chapters import run_solution

    ns = run_solution("optimization/adaptive.md", "ex-adaptive-bias-correction")
    assert ns["uncorrected"][1] == pytest.approx(0.1 / math.sqrt(0.001), rel=1e-6)
    assert ns["corrected"][10] == pytest.approx(1.0, rel=1e-9)
    assert ns["peak_t"] == 12 and 3900 <= ns["within_1pct"] <= 3950


def test_exercise_adamw_fixed_point():
    from chapters import run_solution

    ns = run_solution("optimization/adaptive.md", "ex-adaptive-adamw-fixed-point")
    θ = ns["fixed_point"]
    assert 0.5 * θ == pytest.approx((1 - θ) / math.sqrt((1 - θ) ** 2 + 0.25), rel=1e-12)
    assert θ == pytest.approx(0.786, abs=5e-4)
    assert abs(ns["measured"].mean() - θ) < 0.03


def test_exercise_memory():
    from chapters import run_solution

    ns = run_solution("optimization/adaptive.md", "ex-adaptive-memory")
    assert ns["adamw_gb"] == pytest.approx(112.0, rel=1e-12)
    assert ns["adafactor_gb"] == pytest.approx(56.0 + 4 * 8192 * 7e9 / 4096**2 / 1e9, rel=1e-12)
