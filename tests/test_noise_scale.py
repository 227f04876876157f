"""The gradient noise scale, the steps/examples trade-off and batch-size warmup."""

import itertools

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad, vmap

from llmtrain.optim import (
    NoiseScale,
    batch_size_warmup,
    fit_steps_examples_tradeoff,
    measure_noise_scale,
    minibatch_gradient_variance,
    noise_scale_during_training,
    noise_scale_from_two_batches,
    simple_noise_scale,
    steps_examples_tradeoff,
    two_class_data,
)
from llmtrain.pretraining import GPT, GPTConfig, TrainConfig


@pytest.fixture(autouse=True)
def _one_thread():
    """The models here are tiny: one thread is many times faster than two on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _logistic_grads():
    problem = two_class_data(200, separation=1.0, seed=3)
    θ = np.array([0.3, 0.2, -0.4])  # not the minimum: the mean gradient is far from 0
    return problem.per_example_grads(θ)


def _exact(G_i):
    """‖G‖² and tr Σ (population covariance) by an independent route: numpy's covariance."""
    G = G_i.mean(axis=0)
    return float(G @ G), float(np.trace(np.atleast_2d(np.cov(G_i.T, bias=True))))


@pytest.mark.algorithm("alg-noise-scale")
def test_simple_noise_scale_is_covariance_trace_over_mean_gradient_norm():
    G_i = _logistic_grads()
    G2, trace = _exact(G_i)
    assert simple_noise_scale(G_i) == pytest.approx(trace / G2, rel=1e-12)
    # tr Σ is the variance of a one-example batch drawn with replacement (Part I's closed form).
    B1 = minibatch_gradient_variance(G_i, 1, replacement=True)
    assert simple_noise_scale(G_i) == pytest.approx(B1 / G2, rel=1e-12)
    assert 1.0 < simple_noise_scale(G_i) < 1e3


@pytest.mark.algorithm("alg-noise-scale")
def test_two_batch_estimator_is_exact_on_the_expected_norms():
    """E‖g_B‖² = ‖G‖² + tr Σ / B; the estimators are linear, so they are unbiased exactly when
    they return ‖G‖² and tr Σ from these expectations."""
    G2, trace = 0.37, 5.2
    for B_small, B_big in [(1, 2), (8, 128), (3, 1000)]:
        est = noise_scale_from_two_batches(G2 + trace / B_small, G2 + trace / B_big, B_small, B_big)
        assert est.grad_sq_norm == pytest.approx(G2, rel=1e-12)
        assert est.trace == pytest.approx(trace, rel=1e-12)
        assert est.b_simple == pytest.approx(trace / G2, rel=1e-12)


def _within(samples_G2, samples_tr, G2, trace, k=4.0):
    for samples, exact in ((samples_G2, G2), (samples_tr, trace)):
        se = np.std(samples, ddof=1) / np.sqrt(len(samples))
        assert abs(np.mean(samples) - exact) < k * se, (np.mean(samples), exact, se)


@pytest.mark.algorithm("alg-noise-scale")
def test_two_batch_estimator_is_unbiased_on_logistic_regression():
    G_i = _logistic_grads()
    G2, trace = _exact(G_i)
    rng = np.random.default_rng(0)
    B_small, B_big, draws = 4, 32, 4000
    idx = rng.integers(0, len(G_i), size=(draws, B_big))  # with replacement
    batches = G_i[idx]  # (draws, B_big, d)
    small = np.sum(batches[:, :B_small].mean(axis=1) ** 2, axis=1)
    big = np.sum(batches.mean(axis=1) ** 2, axis=1)
    per_draw = [
        noise_scale_from_two_batches(s, b, B_small, B_big) for s, b in zip(small, big, strict=True)
    ]
    _within([e.grad_sq_norm for e in per_draw], [e.trace for e in per_draw], G2, trace)
    pooled = noise_scale_from_two_batches(small, big, B_small, B_big)
    assert pooled.grad_sq_norm == pytest.approx(np.mean([e.grad_sq_norm for e in per_draw]))
    assert pooled.b_simple == pytest.approx(trace / G2, rel=0.15)


def _tiny_gpt():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=2, n_embd=16)
    return GPT(config)


def _per_example_grads(model, X, Y):
    """Every sequence's gradient, with torch.func (vmap of grad): the exact reference."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, x, y):
        return functional_call(model, p, (x[None], y[None]))[1]

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, X, Y)
    return torch.cat([g[k].reshape(len(X), -1) for k in params], dim=1).double().numpy()


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # vmap over SDPA on CPU
@pytest.mark.algorithm("alg-noise-scale")
def test_measure_noise_scale_on_a_tiny_gpt_is_unbiased_against_per_example_gradients():
    model = _tiny_gpt()
    g = torch.Generator().manual_seed(1)
    N, T = 48, 8
    X = torch.randint(0, 7, (N, T), generator=g)
    Y = torch.randint(0, 7, (N, T), generator=g)
    G_i = _per_example_grads(model, X, Y)
    G2, trace = _exact(G_i)
    # The per-example gradients are right: their mean is the gradient of the mean loss.
    full = torch.autograd.grad(model(X, Y)[1], list(model.parameters()))
    full = torch.cat([f.reshape(-1) for f in full]).double().numpy()
    np.testing.assert_allclose(G_i.mean(axis=0), full, rtol=1e-4, atol=1e-7)

    B_small, B_big, draws = 2, 8, 150
    idx = torch.randint(0, N, (draws, B_big), generator=g)
    batches = [(X[i], Y[i]) for i in idx]
    model.train()
    per_draw = [measure_noise_scale(model, [b], B_small=B_small) for b in batches]
    _within([e.grad_sq_norm for e in per_draw], [e.trace for e in per_draw], G2, trace)
    pooled = measure_noise_scale(model, batches, B_small=B_small)
    assert pooled.trace == pytest.approx(np.mean([e.trace for e in per_draw]), rel=1e-9)
    assert model.training  # the mode is restored, and no .grad was written
    assert all(p.grad is None for p in model.parameters())


def test_measure_noise_scale_rejects_bad_batches():
    model = _tiny_gpt()
    x = torch.zeros(8, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="B_small"):
        measure_noise_scale(model, [(x, x)], B_small=0)
    with pytest.raises(ValueError, match="multiple of B_small=3"):
        measure_noise_scale(model, [(x, x)], B_small=3)
    with pytest.raises(ValueError, match="at least one batch"):
        measure_noise_scale(model, [], B_small=2)


def test_noise_scale_estimator_errors_name_the_argument():
    with pytest.raises(ValueError, match="B_big"):
        noise_scale_from_two_batches(1.0, 1.0, 8, 8)
    with pytest.raises(ValueError, match="same non-empty shape"):
        noise_scale_from_two_batches([1.0, 2.0], [1.0], 1, 2)
    with pytest.raises(ValueError, match="per_example_grads"):
        simple_noise_scale(np.ones(3))
    assert NoiseScale(-1.0, 2.0).b_simple == np.inf


@pytest.mark.algorithm("alg-noise-scale")
def test_noise_scale_during_training_measures_the_model_pretrain_builds():
    ids = torch.randint(0, 7, (3000,), generator=torch.Generator().manual_seed(0))
    config = TrainConfig(
        n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=4, max_iters=10,
        warmup_iters=2, eval_interval=5, eval_iters=1,
    )  # fmt: skip
    records = noise_scale_during_training(ids, config, at=[0, 10], B_small=2, B_big=8, draws=2)
    assert [r["iter"] for r in records] == [0, 10]
    # Iteration 0 is the initialisation pretrain draws from config.seed: rebuild it.
    torch.manual_seed(config.seed)
    model = GPT(config.model_config(7))
    train = ids[: int(len(ids) * (1 - config.val_fraction))]
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        starts = torch.randint(len(train) - 8, (8,), generator=g)
        w = train[starts[:, None] + torch.arange(9)]
        batches.append((w[:, :-1], w[:, 1:]))
    expected = measure_noise_scale(model, batches, B_small=2)
    assert records[0]["b_simple"] == pytest.approx(expected.b_simple, rel=1e-6)
    assert records[1]["train_loss"] < records[0]["train_loss"]
    with pytest.raises(ValueError, match="must divide"):
        noise_scale_during_training(ids, config, at=[0], B_small=3, B_big=8)


def test_steps_examples_tradeoff_lies_on_the_hyperbola():
    rng = np.random.default_rng(0)
    B = rng.uniform(1, 1e4, size=50)
    B_noise = 300.0
    s, e = steps_examples_tradeoff(B, B_noise)
    np.testing.assert_allclose((s - 1) * (e - 1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(e / s, B / B_noise, rtol=1e-12)  # E = B S, E_min = B_noise S_min
    assert steps_examples_tradeoff(B_noise, B_noise) == (2.0, 2.0)
    with pytest.raises(ValueError, match="B_noise"):
        steps_examples_tradeoff(1.0, 0.0)
    with pytest.raises(ValueError, match="B must be > 0"):
        steps_examples_tradeoff([1.0, -1.0], 3.0)


def test_fit_steps_examples_tradeoff_recovers_the_critical_batch_size():
    S_min, B_noise = 1200.0, 250.0
    B = np.array([16, 64, 256, 1024, 4096])
    S = S_min * (1 + B_noise / B)
    S_fit, E_fit, B_crit = fit_steps_examples_tradeoff(S, B * S)
    assert S_fit == pytest.approx(S_min, rel=1e-10)
    assert E_fit == pytest.approx(S_min * B_noise, rel=1e-10)
    assert B_crit == pytest.approx(B_noise, rel=1e-10)
    with pytest.raises(ValueError, match="length >= 2"):
        fit_steps_examples_tradeoff([1.0], [2.0])


@pytest.mark.algorithm("alg-batch-size-warmup")
def test_batch_size_warmup_values():
    values = [batch_size_warmup(n, start=4, end=20, warmup=100) for n in (0, 50, 60, 75, 99, 100)]
    # 4 + 16 n/100, rounded down to a multiple of 4: 4, 12, 13.6 -> 12, 16, 19.84 -> 16; then 20.
    assert values == [4, 12, 12, 16, 16, 20]
    assert batch_size_warmup(1e12, start=4, end=20, warmup=100) == 20
    assert batch_size_warmup(0, start=4, end=20, warmup=0) == 20
    ramp = [batch_size_warmup(n, start=32, end=3200, warmup=4e9) for n in np.linspace(0, 5e9, 51)]
    assert ramp[0] == 32 and ramp[-1] == 3200
    assert all(a <= b for a, b in itertools.pairwise(ramp)) and all(r % 32 == 0 for r in ramp)
    with pytest.raises(ValueError, match="end"):
        batch_size_warmup(0, start=8, end=4, warmup=10)
    with pytest.raises(ValueError, match="warmup"):
        batch_size_warmup(0, start=4, end=8, warmup=-1)


def test_tradeoff_demo_moves_its_marker():
    from demo_checks import differing_fraction, pixels

    from llmtrain.demos.optimization.batch_size import tradeoff_demo

    demo = tradeoff_demo()
    before = pixels(demo)
    demo.set(batch_size=5000)
    assert differing_fraction(before, pixels(demo)) > 0.001


def test_exercise_critical_batch_size_solution():
    from chapters import run_solution

    ns = run_solution("optimization/batch-size.md", "ex-batch-size-critical")
    assert ns["S_min"] == pytest.approx(1000, rel=1e-9)
    assert ns["E_min"] == pytest.approx(200_000, rel=1e-9)
    assert ns["B_crit"] == pytest.approx(200, rel=1e-9)
    assert ns["S_at_crit"] == pytest.approx(2000, rel=1e-9)
