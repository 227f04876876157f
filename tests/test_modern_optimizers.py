"""Muon against torch.optim.Muon and a closed form of its Newton-Schulz iteration; Lion against
a line-by-line transcription of Algorithm 2 of Chen et al. (2023)."""

import functools
import math

import numpy as np
import pytest
import torch
import torch.optim._muon as torch_muon

from chapters import run_solution
from llmtrain.optim import Lion, Muon, lion_step, muon_lr_scale, muon_step, newton_schulz

SEEDS = range(6)
TOL = dict(rtol=1e-12, atol=1e-12)
QUINTIC = (3.4445, -4.7750, 2.0315)


@pytest.fixture
def no_bfloat16(monkeypatch):
    """Torch's Newton-Schulz casts its input to bfloat16 (``grad.bfloat16()``) whatever the
    dtype; with the cast made a copy, torch's own code runs in float64."""
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *a, **k: self.clone())


def _loss(ps):
    return sum(
        ((p - 0.5) ** 2).sum() + 0.1 * (p**4).sum() + 0.3 * (p.sum(0) ** 2).sum() for p in ps
    )


def _run(opt_cls, start, kwargs, group2, steps):
    ps = [p.clone().requires_grad_() for p in start]
    opt = opt_cls([{"params": ps[:1]}, {"params": ps[1:], **group2}], **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        _loss(ps).backward()
        opt.step()
    return ps, opt


def _random_muon_kwargs(rng):
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        weight_decay=float(rng.uniform(0, 0.2)),
        momentum=float(rng.uniform(0.5, 0.99)),
        nesterov=bool(rng.integers(2)),
        ns_steps=int(rng.integers(1, 7)),
        adjust_lr_fn=[None, "original", "match_rms_adamw"][int(rng.integers(3))],
    )


@pytest.mark.algorithm("alg-newton-schulz")
@pytest.mark.parametrize("shape", [(5, 5), (4, 9), (9, 4), (1, 6)])
def test_newton_schulz_is_torchs_iteration_in_float64(no_bfloat16, shape):
    G = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = newton_schulz(G)
    theirs = torch_muon._zeropower_via_newtonschulz(G, QUINTIC, 5, 1e-7)
    assert theirs.dtype == torch.float64
    torch.testing.assert_close(ours, theirs, **TOL)
    np.testing.assert_allclose(newton_schulz(G.numpy()), theirs.numpy(), **TOL)


@pytest.mark.algorithm("alg-newton-schulz")
def test_torch_rounds_newton_schulz_to_bfloat16_even_for_float64():
    """The one documented difference: torch's result is bfloat16, ours float64; they agree to
    bfloat16's precision (8 bits of mantissa) and no better."""
    G = torch.randn(6, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    theirs = torch_muon._zeropower_via_newtonschulz(G, QUINTIC, 5, 1e-7)
    assert theirs.dtype == torch.bfloat16
    gap = float((newton_schulz(G) - theirs.double()).abs().max())
    assert 1e-4 < gap < 0.05


@pytest.mark.algorithm("alg-newton-schulz")
@pytest.mark.parametrize("shape", [(5, 5), (4, 9), (9, 4), (1, 6)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_newton_schulz_in_bfloat16_is_torchs_bit_for_bit(shape, dtype):
    G = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    ours = newton_schulz(G, dtype=torch.bfloat16)
    theirs = torch_muon._zeropower_via_newtonschulz(G.clone(), QUINTIC, 5, 1e-7)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert not torch.equal(ours.double(), newton_schulz(G.double()))  # the rounding matters


def test_newton_schulz_takes_no_dtype_for_numpy():
    with pytest.raises(TypeError, match="dtype applies to torch tensors only"):
        newton_schulz(np.ones((2, 2)), dtype=torch.bfloat16)


@pytest.mark.algorithm("alg-newton-schulz")
@pytest.mark.parametrize("steps", [0, 1, 3, 5, 8])
def test_newton_schulz_maps_singular_values_by_the_quintic(steps):
    """Closed form: NS(G) = U p∘…∘p(Σ/‖G‖_F) Vᵀ with p(σ) = a₁σ + a₃σ³ + a₅σ⁵."""
    rng = np.random.default_rng(steps)
    G = rng.standard_normal((7, 4))
    U, S, Vt = np.linalg.svd(G, full_matrices=False)
    σ = S / np.linalg.norm(G)
    for _ in range(steps):
        σ = QUINTIC[0] * σ + QUINTIC[1] * σ**3 + QUINTIC[2] * σ**5
    np.testing.assert_allclose(newton_schulz(G, steps=steps), U @ np.diag(σ) @ Vt, **TOL)


def test_five_steps_bring_every_singular_value_near_one():
    G = np.random.default_rng(0).standard_normal((64, 32))
    s = np.linalg.svd(newton_schulz(G), compute_uv=False)
    assert s.min() > 0.6 and s.max() < 1.2  # U S' Vᵀ with S' near 1, not exactly U Vᵀ


@pytest.mark.algorithm("alg-muon")
@pytest.mark.parametrize("seed", SEEDS)
def test_Muon_matches_torch_in_float64(no_bfloat16, seed):
    rng = np.random.default_rng(seed)
    kwargs = _random_muon_kwargs(rng)
    group2 = {"lr": kwargs["lr"] / 2, "nesterov": not kwargs["nesterov"]}
    g = torch.Generator().manual_seed(seed)
    start = [torch.randn(s, generator=g, dtype=torch.float64) for s in [(6, 3), (3, 8), (5, 5)]]
    float64_muon = functools.partial(Muon, ns_dtype=None)  # our iteration in the param's dtype
    ours, opt = _run(float64_muon, start, kwargs, group2, steps=12)
    theirs, topt = _run(torch.optim.Muon, start, kwargs, group2, steps=12)
    for a, b in zip(
        [*ours, opt.state[ours[0]]["momentum_buffer"]],
        [*theirs, topt.state[theirs[0]]["momentum_buffer"]],
        strict=True,
    ):
        torch.testing.assert_close(a, b, **TOL)
    assert not torch.allclose(ours[0], start[0])


@pytest.mark.algorithm("alg-muon")
@pytest.mark.parametrize("adjust_lr_fn", [None, "original", "match_rms_adamw"])
def test_Muon_is_torchs_bit_for_bit_by_default(adjust_lr_fn):
    """Unpatched torch, float64 parameters: the default ns_dtype=torch.bfloat16 reproduces
    torch's bfloat16 Newton-Schulz, so every number is the same to the last bit."""
    g = torch.Generator().manual_seed(4)
    start = [torch.randn(s, generator=g, dtype=torch.float64) for s in [(6, 3), (3, 8), (5, 5)]]
    kwargs = {} if adjust_lr_fn is None else dict(adjust_lr_fn=adjust_lr_fn)
    group2 = {"lr": 0.02, "weight_decay": 0.05}
    ours, opt = _run(Muon, start, kwargs, group2, steps=6)
    theirs, topt = _run(torch.optim.Muon, start, kwargs, group2, steps=6)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        bufs = opt.state[a]["momentum_buffer"], topt.state[b]["momentum_buffer"]
        torch.testing.assert_close(*bufs, rtol=0, atol=0)
    assert all(p.dtype == torch.float64 for p in ours)
    assert not torch.equal(ours[1], start[1])


@pytest.mark.algorithm("alg-muon")
def test_Muon_in_float64_differs_from_torch_by_bfloat16_precision():
    start = [torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)]
    kwargs = dict(lr=0.02)
    (ours,), _ = _run(functools.partial(Muon, ns_dtype=None), start, kwargs, {}, steps=3)
    (theirs,), _ = _run(torch.optim.Muon, start, kwargs, {}, steps=3)
    gap = float((ours - theirs).detach().abs().max())
    assert 1e-6 < gap < 3 * 0.02 * 0.05  # three steps of α ρ times a bfloat16-sized error


@pytest.mark.algorithm("alg-muon")
def test_muon_step_is_the_same_on_numpy_and_torch():
    rng = np.random.default_rng(3)
    θ, state_np, state_t = rng.standard_normal((4, 7)), {}, {}
    θ_t = torch.tensor(θ)
    for _ in range(4):
        g = rng.standard_normal((4, 7))
        θ, state_np = muon_step(θ, g, state_np, lr=0.03, adjust_lr_fn="match_rms_adamw")
        θ_t, state_t = muon_step(
            θ_t, torch.tensor(g), state_t, lr=0.03, adjust_lr_fn="match_rms_adamw"
        )
    np.testing.assert_allclose(θ, θ_t.numpy(), **TOL)


def test_muon_lr_scale_follows_keller_and_moonshot():
    assert muon_lr_scale((1024, 256)) == 2.0 == muon_lr_scale((1024, 256), "original")
    assert muon_lr_scale((256, 1024)) == 1.0
    assert muon_lr_scale((256, 1024), "match_rms_adamw") == pytest.approx(0.2 * 32)


def test_moonshot_scale_gives_the_update_an_rms_of_about_0_2():
    """An orthogonal update of an n_row × n_col matrix has RMS 1/√max(n_row, n_col)."""
    G = np.random.default_rng(0).standard_normal((96, 48))
    O_t = newton_schulz(G, steps=30, coefficients=(1.5, -0.5, 0.0))  # the cubic converges to U Vᵀ
    rms = np.sqrt(np.mean(O_t**2))
    assert rms == pytest.approx(1 / math.sqrt(96), rel=1e-9)
    assert muon_lr_scale(G.shape, "match_rms_adamw") * rms == pytest.approx(0.2, rel=1e-9)


def test_muon_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Muon only optimizes 2-D"):
        Muon([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="adjust_lr_fn"):
        Muon([torch.zeros(3, 3, requires_grad=True)], adjust_lr_fn="sqrt")
    with pytest.raises(TypeError, match="ns_dtype must be a floating-point"):
        Muon([torch.zeros(3, 3, requires_grad=True)], ns_dtype="bfloat16")
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        muon_step(np.zeros((2, 2)), np.zeros((2, 2)), {}, momentum=1.5)
    with pytest.raises(ValueError, match="steps must be an integer in"):
        newton_schulz(np.ones((2, 2)), steps=100)
    with pytest.raises(ValueError, match="G must be a 2-D"):
        newton_schulz(np.ones(3))
    with pytest.raises(ValueError, match="θ and g must have the same shape"):
        muon_step(np.zeros((2, 2)), np.zeros((2, 3)), {})


def paper_lion(θ, gradients, *, η, β1, β2, λ):
    """Algorithm 2 of Chen et al. (2023), line by line, in plain Python floats."""
    θ = [float(x) for x in θ]
    m = [0.0] * len(θ)  # initialize θ_0, m_0 ← 0
    sign = lambda x: (x > 0) - (x < 0)  # noqa: E731
    for g in gradients:
        g = [float(x) for x in g]  # g_t ← ∇_θ f(θ_{t-1})
        c = [β1 * mi + (1 - β1) * gi for mi, gi in zip(m, g, strict=True)]  # c_t
        θ = [θi - η * (sign(ci) + λ * θi) for θi, ci in zip(θ, c, strict=True)]  # θ_t
        m = [β2 * mi + (1 - β2) * gi for mi, gi in zip(m, g, strict=True)]  # m_t
    return θ, m


@pytest.mark.algorithm("alg-lion")
@pytest.mark.parametrize("seed", SEEDS)
def test_lion_step_follows_the_papers_algorithm(seed):
    rng = np.random.default_rng(seed)
    η, λ = float(rng.uniform(1e-4, 1e-2)), float(rng.uniform(0, 1))
    β1, β2 = float(rng.uniform(0.5, 0.99)), float(rng.uniform(0.9, 0.999))
    θ0, grads = rng.standard_normal(9), rng.standard_normal((15, 9))
    grads[0, :2] = 0.0  # m_0 = 0, so c_1 = 0 there: sign(0) = 0 must not move θ
    expected, m_expected = paper_lion(θ0, grads, η=η, β1=β1, β2=β2, λ=λ)
    for to in (np.asarray, torch.tensor):
        θ, state = to(θ0), {}
        for g in grads:
            θ, state = lion_step(θ, to(g), state, lr=η, betas=(β1, β2), weight_decay=λ)
        np.testing.assert_allclose(np.asarray(θ), expected, **TOL)
        np.testing.assert_allclose(np.asarray(state["exp_avg"]), m_expected, **TOL)


@pytest.mark.algorithm("alg-lion")
def test_Lion_class_follows_the_paper_in_a_training_loop():
    start = [torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)]
    ps, opt = _run(Lion, start, dict(lr=3e-3, weight_decay=0.5), {}, steps=1)
    p = start[0].clone().requires_grad_()
    _loss([p]).backward()
    (expected, _) = paper_lion(
        start[0].flatten(), [p.grad.flatten()], η=3e-3, β1=0.9, β2=0.99, λ=0.5
    )
    np.testing.assert_allclose(ps[0].detach().flatten().numpy(), expected, **TOL)
    assert set(opt.state[ps[0]]) == {"exp_avg"}  # one state tensor (Adam keeps two)


def test_lion_leaves_its_inputs_alone_and_checks_arguments():
    θ, g = np.ones(3), np.array([1.0, -2.0, 0.0])
    lion_step(θ, g, {}, lr=0.1)
    assert θ.tolist() == [1.0, 1.0, 1.0] and g.tolist() == [1.0, -2.0, 0.0]
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\)"):
        Lion([torch.zeros(2, requires_grad=True)], betas=(0.9, 1.0))


def test_exercise_muon_rms_solution():
    rms = run_solution("optimization/modern-optimizers.md", "ex-muon-rms")["rms"]
    assert rms[(1024, 256), "original"] == pytest.approx(0.0625, rel=1e-9)
    assert rms[(256, 1024), "original"] == pytest.approx(0.03125, rel=1e-9)
    for shape in [(1024, 256), (256, 1024)]:
        assert rms[shape, "match_rms_adamw"] == pytest.approx(0.2, rel=1e-9)
