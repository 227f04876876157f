"""Global-norm clipping against torch.nn.utils.clip_grad_norm_, and gradient accumulation
against one large batch (and why batch normalisation breaks that equality)."""

import inspect
import itertools
import math

import numpy as np
import pytest
import torch
from demo_checks import differing_fraction, pixels

from chapters import run_solution
from llmtrain.demos.optimization.stability import (
    BOWL,
    accumulation_demo,
    clipping_demo,
    train_with_spikes,
)
from llmtrain.optim import (
    SGD,
    accumulate_gradients,
    accumulation_step,
    clip_by_global_norm,
    clip_grad_norm_,
    global_norm,
)

# -- clipping ----------------------------------------------------------------------------------


def random_grads(seed, shapes=((7, 3), (5,), (2, 2, 4))):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(s, generator=g, dtype=torch.float64) * (1 + 3 * i) for i, s in enumerate(shapes)
    ]


@pytest.mark.algorithm("alg-clip-global-norm")
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_matches_torch(seed, norm_type):
    grads = random_grads(seed)
    norm = float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]), norm_type))
    for c in (0.1 * norm, 0.9 * norm, 2.0 * norm):  # below and above the norm
        ours = [g.clone().requires_grad_() for g in grads]
        theirs = [g.clone().requires_grad_() for g in grads]
        for p, g in zip(ours + theirs, grads + grads, strict=True):
            p.grad = g.clone()
        n_ours = clip_grad_norm_(ours, c, norm_type)
        n_theirs = torch.nn.utils.clip_grad_norm_(theirs, c, norm_type)
        torch.testing.assert_close(n_ours, n_theirs, rtol=1e-12, atol=0)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-15)
        clipped = float(
            torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours]), norm_type)
        )
        # Clipped to c when the norm exceeds it (up to torch's 1e-6), untouched otherwise.
        expected = min(norm, c * norm / (norm + 1e-6))
        assert clipped == pytest.approx(expected, rel=1e-12)


@pytest.mark.algorithm("alg-clip-global-norm")
def test_clip_by_global_norm_on_numpy_keeps_the_direction_and_is_pure():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((4, 3)), 10 * rng.standard_normal(6)]
    before = [g.copy() for g in grads]
    flat = np.concatenate([g.ravel() for g in grads])
    clipped, norm = clip_by_global_norm(grads, 1.0)
    assert norm == pytest.approx(np.linalg.norm(flat), rel=1e-15)
    out = np.concatenate([g.ravel() for g in clipped])
    # g · min(1, c / ‖g‖): the same factor for every tensor, so the direction is unchanged.
    np.testing.assert_allclose(out, flat * (1.0 / (norm + 1e-6)), rtol=1e-15)
    assert np.linalg.norm(out) == pytest.approx(1.0, abs=1e-6)
    for a, b in zip(grads, before, strict=True):
        np.testing.assert_array_equal(a, b)
    # Per-tensor clipping, by contrast, changes the direction.
    per_tensor = np.concatenate([(g * min(1.0, 1.0 / np.linalg.norm(g))).ravel() for g in grads])
    cosine = per_tensor @ flat / (np.linalg.norm(per_tensor) * np.linalg.norm(flat))
    assert cosine < 0.9
    # NumPy and torch inputs give the same numbers.
    t_clipped, t_norm = clip_by_global_norm([torch.tensor(g) for g in grads], 1.0)
    assert t_norm == pytest.approx(norm, rel=1e-15)
    np.testing.assert_allclose(t_clipped[1].numpy(), clipped[1], rtol=1e-15)


@pytest.mark.algorithm("alg-clip-global-norm")
def test_the_seeds_formula_is_not_clipping():
    # g / min(1, ‖g‖) (ERRATA #25) leaves large gradients unchanged and *enlarges* small ones.
    g = np.array([3.0, 4.0])  # norm 5
    clipped, _ = clip_by_global_norm([g], 1.0, eps=0.0)
    np.testing.assert_allclose(clipped[0], [0.6, 0.8], rtol=1e-15)
    np.testing.assert_allclose(g / min(1.0, np.linalg.norm(g)), g)  # the wrong one: no change
    small = np.array([0.03, 0.04])
    np.testing.assert_allclose(clip_by_global_norm([small], 1.0, eps=0.0)[0][0], small)
    assert np.linalg.norm(small / min(1.0, np.linalg.norm(small))) == pytest.approx(1.0)


@pytest.mark.algorithm("alg-clip-global-norm")
def test_nonfinite_norms_raise_by_default_or_behave_like_torch():
    # The block's step 2: the pure function raises by default, the drop-in (like torch) not.
    default = {
        f: inspect.signature(f).parameters["error_if_nonfinite"].default
        for f in (clip_by_global_norm, clip_grad_norm_, torch.nn.utils.clip_grad_norm_)
    }
    assert list(default.values()) == [True, False, False]
    for bad in (math.inf, math.nan):
        grads = [np.array([1.0, bad]), np.array([2.0])]
        with pytest.raises(RuntimeError, match="cannot be clipped"):
            clip_by_global_norm(grads, 1.0)
        clipped, norm = clip_by_global_norm(grads, 1.0, error_if_nonfinite=False)
        assert not math.isfinite(norm)
        ours = [torch.tensor(g, requires_grad=True) for g in grads]
        theirs = [torch.tensor(g, requires_grad=True) for g in grads]
        for p in ours + theirs:
            p.grad = p.detach().clone()
        clip_grad_norm_(ours, 1.0)  # torch's default: no error
        torch.nn.utils.clip_grad_norm_(theirs, 1.0)
        for a, b, c in zip(ours, theirs, clipped, strict=True):
            torch.testing.assert_close(a.grad, b.grad, equal_nan=True)
            np.testing.assert_array_equal(c, b.grad.numpy())
        with pytest.raises(RuntimeError):
            clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)


def test_clipping_arguments_are_checked():
    with pytest.raises(ValueError, match=r"max_norm must be in \(0, inf\), got 0"):
        clip_by_global_norm([np.ones(2)], 0)
    with pytest.raises(ValueError, match=r"max_norm must be in \(0, inf\)"):
        clip_grad_norm_([torch.ones(1, requires_grad=True)], -1.0)
    with pytest.raises(ValueError, match=r"norm_type must be in \(0, inf\]"):
        global_norm([np.ones(2)], 0)
    with pytest.raises(ValueError, match=r"eps must be in \[0, inf\)"):
        clip_by_global_norm([np.ones(2)], 1.0, eps=-1e-6)
    assert global_norm([]) == 0.0
    assert global_norm([np.array([3.0]), np.array([[4.0]])]) == 5.0


# -- accumulation --------------------------------------------------------------------------------


def make_data(B=23, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (B,), generator=g)
    return x, y


def make_model(norm=None, d=5, seed=0):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(d, 8)]
    if norm == "batch":
        layers.append(torch.nn.BatchNorm1d(8))
    elif norm == "layer":
        layers.append(torch.nn.LayerNorm(8))
    layers += [torch.nn.Tanh(), torch.nn.Linear(8, 3)]
    return torch.nn.Sequential(*layers).double()


def split(x, y, sizes):
    bounds = np.cumsum([0, *sizes])
    return [(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)]


def grads_of(model):
    return [p.grad.clone() for p in model.parameters()]


def big_batch_grads(model, x, y):
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return grads_of(model)


def accumulated_grads(model, batches, weighting="size"):
    model.zero_grad()
    loss_fn = lambda b: torch.nn.functional.cross_entropy(model(b[0]), b[1])  # noqa: E731
    accumulate_gradients(loss_fn, batches, weighting=weighting)
    return grads_of(model)


@pytest.mark.algorithm("alg-gradient-accumulation")
@pytest.mark.parametrize("sizes", [(6, 6, 6, 5), (8, 8, 7), (20, 3), (1, 22), (23,)])
def test_accumulated_gradient_equals_the_large_batch_gradient(sizes):
    x, y = make_data()
    model = make_model()
    full = big_batch_grads(model, x, y)
    acc = accumulated_grads(model, split(x, y, sizes))
    for a, b in zip(acc, full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.algorithm("alg-gradient-accumulation")
def test_equal_weights_are_right_for_equal_micro_batches_and_sum_gives_K_times():
    x, y = make_data(B=24)
    model = make_model()
    full = big_batch_grads(model, x, y)
    batches = split(x, y, (6, 6, 6, 6))
    for a, b in zip(accumulated_grads(model, batches, "equal"), full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    for a, b in zip(accumulated_grads(model, batches, "sum"), full, strict=True):
        torch.testing.assert_close(a, 4 * b, rtol=1e-12, atol=1e-15)
    # With an uneven last micro-batch the plain mean of means is wrong.
    uneven = split(*make_data(B=23), (8, 8, 7))
    full = big_batch_grads(model, *make_data(B=23))
    wrong = accumulated_grads(model, uneven, "equal")
    assert max(float((a - b).abs().max()) for a, b in zip(wrong, full, strict=True)) > 1e-4


@pytest.mark.algorithm("alg-gradient-accumulation")
@pytest.mark.parametrize("opt_cls", [SGD, torch.optim.SGD, torch.optim.Adam])
def test_accumulation_step_gives_the_large_batch_parameters(opt_cls):
    x, y = make_data()
    big, acc = make_model(), make_model()
    kw = dict(lr=0.1, momentum=0.9) if opt_cls is not torch.optim.Adam else dict(lr=0.01)
    opt_big, opt_acc = opt_cls(big.parameters(), **kw), opt_cls(acc.parameters(), **kw)
    loss_fn = lambda b: torch.nn.functional.cross_entropy(acc(b[0]), b[1])  # noqa: E731
    for _ in range(3):
        opt_big.zero_grad()
        big_loss = torch.nn.functional.cross_entropy(big(x), y)
        big_loss.backward()
        torch.nn.utils.clip_grad_norm_(big.parameters(), 0.5)
        opt_big.step()
        loss = accumulation_step(opt_acc, loss_fn, split(x, y, (7, 7, 7, 2)), max_norm=0.5)
        assert loss == pytest.approx(big_loss.item(), rel=1e-12)
    for a, b in zip(acc.parameters(), big.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert any(
        float((a - b).detach().abs().max()) > 1e-3
        for a, b in zip(acc.parameters(), make_model().parameters(), strict=True)
    )


@pytest.mark.algorithm("alg-gradient-accumulation")
def test_token_level_loss_is_normalised_by_all_non_padding_tokens():
    # Sequences of different lengths, padded with -100; the loss is the mean over real tokens.
    g = torch.Generator().manual_seed(1)
    V, n = 6, 9
    logits_param = torch.randn(8, n, V, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, V, (8, n), generator=g)
    lengths = [9, 2, 5, 9, 1, 7, 3, 8]
    for i, length in enumerate(lengths):
        targets[i, length:] = -100

    def token_mean(rows):
        z = logits_param[rows].reshape(-1, V)
        return torch.nn.functional.cross_entropy(z, targets[rows].reshape(-1), ignore_index=-100)

    token_mean(list(range(8))).backward()
    full = logits_param.grad.clone()
    micro = [[0, 1], [2, 3], [4, 5], [6, 7]]
    count = lambda rows: int((targets[rows] != -100).sum())  # noqa: E731
    for weighting, should_match in (("size", True), ("equal", False)):
        logits_param.grad = None
        accumulate_gradients(token_mean, micro, sizes=count, weighting=weighting)
        close = torch.allclose(logits_param.grad, full, rtol=1e-12, atol=1e-15)
        assert close is should_match
    assert sum(count(m) for m in micro) == sum(lengths)


def test_batch_norm_breaks_the_equivalence_and_layer_norm_does_not():
    x, y = make_data(B=24)
    batches = split(x, y, (6, 6, 6, 6))
    # LayerNorm normalises each example on its own: accumulation is exact.
    model = make_model("layer")
    for a, b in zip(accumulated_grads(model, batches), big_batch_grads(model, x, y), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    # BatchNorm normalises with each micro-batch's own mean and variance: not the same.
    bn_acc, bn_big = make_model("batch"), make_model("batch")
    acc, full = accumulated_grads(bn_acc, batches), big_batch_grads(bn_big, x, y)
    assert max(float((a - b).abs().max()) for a, b in zip(acc, full, strict=True)) > 1e-3
    # And its running statistics were updated K = 4 times instead of once.
    norm_acc, norm_big = bn_acc[1], bn_big[1]
    assert int(norm_acc.num_batches_tracked) == 4 and int(norm_big.num_batches_tracked) == 1
    assert float((norm_acc.running_mean - norm_big.running_mean).abs().max()) > 1e-3


def test_accumulation_arguments_are_checked():
    loss_fn = lambda b: b.sum()  # noqa: E731
    with pytest.raises(ValueError, match="weighting must be one of"):
        accumulate_gradients(loss_fn, [torch.ones(2)], weighting="mean")
    with pytest.raises(ValueError, match="at least one micro-batch"):
        accumulate_gradients(loss_fn, [])
    with pytest.raises(ValueError, match=r"one size per micro-batch \(2\)"):
        accumulate_gradients(loss_fn, [torch.ones(2), torch.ones(2)], sizes=[1])
    with pytest.raises(ValueError, match=r"sizes\[0\] must be in \[0, inf\)"):
        accumulate_gradients(loss_fn, [torch.ones(2)], sizes=[-1])


# -- the chapter's exercises and demos -----------------------------------------------------------


def test_exercise_clipping_two_tensors():
    ns = run_solution("optimization/stability.md", "ex-stability-clip")
    assert ns["norm"] == 13.0
    assert ns["factor"] == pytest.approx(1 / 13, rel=1e-15)
    assert ns["clipped_norm"] == pytest.approx(1.0, rel=1e-15)


def test_exercise_uneven_micro_batches():
    ns = run_solution("optimization/stability.md", "ex-stability-uneven")
    assert ns["results"] == pytest.approx({"size": 1.4, "equal": 2.0, "sum": 4.0}, rel=1e-6)


@pytest.mark.algorithm("alg-clip-global-norm")
def test_clipping_demo_clips_the_spikes():
    demo = clipping_demo()
    first = demo.png()
    runs = demo.result
    spikes = runs.spikes
    # Each spike throws the unclipped run far up the surface; the clipped run takes a step of
    # length at most α c = 0.1 and stays near the bottom.
    assert runs.losses_plain[spikes].max() > 10
    assert runs.losses_clipped[spikes].max() < 0.5
    assert runs.losses_clipped[75:].mean() < 0.05 * runs.losses_plain[75:].mean()
    _, norms, _ = train_with_spikes(None, lr=0.1, spike=200.0, problem=BOWL)
    np.testing.assert_array_equal(norms, runs.norms)  # the same noise: seeded
    losses, norms, _ = train_with_spikes(1.0, lr=0.1, spike=200.0, problem=BOWL)
    np.testing.assert_array_equal(losses, runs.losses_clipped)
    assert np.all(norms[spikes - 1] > 1.0)  # the spikes were there, and were clipped
    demo.set(max_norm=100.0)
    assert demo.png() != first
    assert demo.figure.axes[1].lines[-1].get_ydata()[0] == 100.0


@pytest.mark.algorithm("alg-gradient-accumulation")
def test_clipping_demo_after_moves_draws_what_a_fresh_demo_draws():

    moved = clipping_demo()
    moved.png()
    final = dict(max_norm=10.0, spike=1000.0, lr=0.5)
    for move in [dict(max_norm=0.05), dict(spike=1000.0), dict(lr=0.02), final]:
        moved.set(**move)  # the first move freezes the background
    fresh = clipping_demo().set(**final)  # a new demo, set straight to the final values
    a, b = pixels(moved), pixels(fresh)
    assert differing_fraction(a, b) < 0.001  # anti-aliasing at edges only
    # ... and not by accident: the default figure is far from it.
    default = pixels(clipping_demo())
    assert differing_fraction(default, b) > 0.01


def test_accumulation_demo_shows_rounding_error_against_real_errors():
    demo = accumulation_demo()
    first = demo.png()
    size, equal, total = demo.result.errors
    assert demo.result.sizes == (8, 8, 7, 7)
    assert size < 1e-14 and equal > 1e-5 and total > 1e-2
    demo.set(K=8, batch_size=64)
    size, equal, total = demo.result.errors
    assert size < 1e-14 and equal < 1e-14 and total > 1e-2  # K divides B: 1/K is exact
    assert demo.png() != first
    demo.set(K=16, batch_size=3)  # K > B: one example per micro-batch
    assert demo.result.sizes == (1, 1, 1)
