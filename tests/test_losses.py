"""Loss functions against torch.nn.functional, closed forms and finite differences."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from demo_checks import pixels

from llmtrain.objectives import (
    binary_log_loss,
    cross_entropy,
    distribution_cross_entropy,
    entropy,
    hinge_loss,
    kl_divergence,
    log_softmax,
    logsumexp,
    ranking_hinge_loss,
    softmax,
    squared_error,
)

f64 = torch.float64


def random_problem(seed):
    """Random logits and targets of a random shape, with some targets ignored."""
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    N, C = int(rng.integers(1, 7)), int(rng.integers(2, 9))
    extra = tuple(int(d) for d in rng.integers(1, 4, size=rng.integers(0, 3)))
    logits = 3.0 * torch.randn((N, C, *extra), generator=g, dtype=f64)
    targets = torch.randint(0, C, (N, *extra), generator=g)
    ignore_index = int(rng.choice([-100, -1, C + 5]))
    # Ignore about a quarter of the targets, but keep at least one.
    drop = torch.rand(targets.shape, generator=g) < 0.25
    drop.view(-1)[0] = False
    targets[drop] = ignore_index
    label_smoothing = float(rng.choice([0.0, 1.0, rng.uniform(0, 1)]))
    return logits, targets, ignore_index, label_smoothing


@pytest.mark.algorithm("alg-log-softmax")
@pytest.mark.parametrize("seed", range(10))
def test_log_softmax_and_logsumexp_match_torch(seed):
    g = torch.Generator().manual_seed(seed)
    z = 10.0 * torch.randn(4, 6, 5, generator=g, dtype=f64)
    for dim in (0, 1, -1):
        torch.testing.assert_close(
            log_softmax(z, dim), torch.log_softmax(z, dim), rtol=0, atol=1e-13
        )
        torch.testing.assert_close(logsumexp(z, dim), torch.logsumexp(z, dim), rtol=0, atol=1e-13)
        torch.testing.assert_close(softmax(z, dim), torch.softmax(z, dim), rtol=0, atol=1e-14)


@pytest.mark.algorithm("alg-log-softmax")
def test_log_softmax_is_exact_for_huge_logits_where_the_naive_formula_overflows():
    z = torch.tensor([1e4, 1e4 - math.log(3.0), -1e4], dtype=f64)
    naive = z - torch.log(torch.exp(z).sum())
    assert not torch.isfinite(naive).any()  # exp(1e4) overflows: the shift is necessary
    # Closed form: p = (3/4, 1/4, 0), ln p_3 = -2e4 - ln(4/3).
    expected = torch.tensor([math.log(0.75), math.log(0.25), -2e4 - math.log(4 / 3)], dtype=f64)
    torch.testing.assert_close(log_softmax(z), expected, rtol=1e-15, atol=1e-12)
    # Tiny logits underflow the naive sum the same way.
    torch.testing.assert_close(logsumexp(-z), torch.logsumexp(-z, 0), rtol=1e-15, atol=0)
    # All -inf: no finite maximum; the sum of zeros is 0, ln 0 = -inf.
    assert logsumexp(torch.full((3,), -math.inf, dtype=f64)).item() == -math.inf


@pytest.mark.algorithm("alg-log-softmax")
def test_log_softmax_gradient_matches_finite_differences():
    z = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=f64)
    w = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=f64)
    assert torch.autograd.gradcheck(lambda z: (w * log_softmax(z)).sum(), (z.requires_grad_(),))


@pytest.mark.algorithm("alg-cross-entropy")
@pytest.mark.parametrize("seed", range(40))
def test_cross_entropy_matches_torch_on_random_shapes_and_options(seed):
    logits, targets, ignore_index, ε = random_problem(seed)
    for reduction in ("mean", "sum", "none"):
        ours = cross_entropy(logits, targets, ignore_index, ε, reduction)
        theirs = F.cross_entropy(
            logits, targets, ignore_index=ignore_index, label_smoothing=ε, reduction=reduction
        )
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert cross_entropy(logits, targets, ignore_index, ε, "sum").item() > 0


@pytest.mark.algorithm("alg-cross-entropy")
@pytest.mark.parametrize("seed", range(15))
def test_cross_entropy_gradient_matches_torch(seed):
    logits, targets, ignore_index, ε = random_problem(100 + seed)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    w = torch.randn(targets.shape, generator=torch.Generator().manual_seed(seed), dtype=f64)
    (w * cross_entropy(a, targets, ignore_index, ε, "none")).sum().backward()
    F_loss = F.cross_entropy(
        b, targets, ignore_index=ignore_index, label_smoothing=ε, reduction="none"
    )
    (w * F_loss).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)
    assert a.grad.abs().max() > 1e-3


@pytest.mark.algorithm("alg-cross-entropy")
def test_cross_entropy_gradient_is_p_minus_y_and_passes_gradcheck():
    # d/dz of the cross-entropy against the smoothed target y_ls is softmax(z) - y_ls.
    z = torch.tensor([[2.0, -1.0, 0.5, 0.0]], dtype=f64, requires_grad=True)
    ε, C = 0.2, 4
    cross_entropy(z, torch.tensor([2]), label_smoothing=ε).backward()
    y = torch.full((1, C), ε / C, dtype=f64)
    y[0, 2] += 1 - ε
    torch.testing.assert_close(z.grad, torch.softmax(z.detach(), -1) - y, rtol=0, atol=1e-15)
    x = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(3), dtype=f64)
    t = torch.tensor([[0, 3], [-100, 1], [2, 2]])
    for reduction in ("mean", "sum"):
        assert torch.autograd.gradcheck(
            lambda x, r=reduction: cross_entropy(x, t, label_smoothing=0.1, reduction=r),
            (x.requires_grad_(),),
        )


@pytest.mark.algorithm("alg-cross-entropy")
def test_cross_entropy_closed_forms():
    # Uniform logits over C classes: loss ln C for any target and any smoothing.
    for C in (2, 65, 1000):
        z = torch.zeros(3, C, dtype=f64)
        value = cross_entropy(z, torch.tensor([0, 1, C - 1]), label_smoothing=0.3)
        assert value.item() == pytest.approx(math.log(C), rel=1e-14)
    # One example, unbatched: -ln softmax([2, 1, 0])_0 = ln(1 + e^-1 + e^-2).
    value = cross_entropy(torch.tensor([2.0, 1.0, 0.0], dtype=f64), torch.tensor(0))
    assert value.item() == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-2)), rel=1e-15)
    # Ignored targets leave the mean's denominator.
    z = torch.tensor([[0.0, 0.0], [5.0, 0.0]], dtype=f64)
    assert cross_entropy(z, torch.tensor([0, -100])).item() == pytest.approx(math.log(2))


@pytest.mark.algorithm("alg-cross-entropy")
def test_cross_entropy_stays_finite_for_huge_logits():
    z = torch.tensor([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], dtype=torch.float32, requires_grad=True)
    value = cross_entropy(z, torch.tensor([1, 0]), label_smoothing=0.1)
    theirs = F.cross_entropy(z, torch.tensor([1, 0]), label_smoothing=0.1)
    assert torch.isfinite(value)
    torch.testing.assert_close(value, theirs)
    value.backward()
    assert torch.isfinite(z.grad).all()
    # Confidently right: loss exactly 0 in float64, not NaN.
    assert cross_entropy(torch.tensor([[1e4, 0.0]], dtype=f64), torch.tensor([0])).item() == 0.0


@pytest.mark.algorithm("alg-cross-entropy")
def test_label_smoothing_is_cross_entropy_against_the_smoothed_distribution():
    g = torch.Generator().manual_seed(7)
    z = torch.randn(6, 5, generator=g, dtype=f64)
    y = torch.randint(0, 5, (6,), generator=g)
    ε = 0.3
    q = (1 - ε) * F.one_hot(y, 5).to(f64) + ε / 5
    expected = distribution_cross_entropy(q, torch.softmax(z, -1))
    torch.testing.assert_close(
        cross_entropy(z, y, label_smoothing=ε, reduction="none"), expected, rtol=1e-13, atol=0
    )


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda z, y: cross_entropy(z, torch.tensor([0, 4])),
            ValueError,
            r"targets must be in \[0, 3\]",
        ),
        (lambda z, y: cross_entropy(z, torch.tensor([0, -1])), ValueError, "targets must be in"),
        (
            lambda z, y: cross_entropy(z, y, label_smoothing=1.5),
            ValueError,
            r"label_smoothing must be in \[0, 1\]",
        ),
        (lambda z, y: cross_entropy(z, y, label_smoothing=-0.1), ValueError, "label_smoothing"),
        (lambda z, y: cross_entropy(z, y, reduction="avg"), ValueError, "reduction must be one of"),
        (
            lambda z, y: cross_entropy(z, torch.tensor([0, 1, 2])),
            ValueError,
            r"targets must have shape \(2,\)",
        ),
        (lambda z, y: cross_entropy(z, y.to(f64)), TypeError, "targets must hold integer"),
        (lambda z, y: cross_entropy(z.long(), y), TypeError, "logits must be a floating-point"),
        (
            lambda z, y: cross_entropy(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)),
            ValueError,
            "logits must not be empty",
        ),
        (lambda z, y: cross_entropy(torch.zeros(2, 0), y), ValueError, "logits must not be empty"),
        (
            lambda z, y: cross_entropy(torch.tensor(1.0), torch.tensor(0)),
            ValueError,
            "logits must have at least 1",
        ),
        (lambda z, y: cross_entropy(z, [0, 1]), TypeError, "targets must be a torch tensor"),
    ],
)
def test_bad_arguments_are_named(call, error, message):
    z, y = torch.zeros(2, 4), torch.tensor([0, 1])
    with pytest.raises(error, match=message):
        call(z, y)


def test_targets_of_any_integer_dtype_work():
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=f64)
    y = torch.tensor([0, 2, 1, 2])
    for dtype in (torch.int32, torch.int16, torch.uint8):
        torch.testing.assert_close(cross_entropy(z, y.to(dtype)), F.cross_entropy(z, y))


def test_ignored_targets_may_be_out_of_range_and_all_ignored_gives_nan_like_torch():
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=f64)
    y = torch.tensor([1, 17, 2])
    ours = cross_entropy(z, y, ignore_index=17)
    torch.testing.assert_close(ours, F.cross_entropy(z, y, ignore_index=17), rtol=1e-14, atol=0)
    y = torch.full((3,), -100)
    assert torch.isnan(cross_entropy(z, y)) and torch.isnan(F.cross_entropy(z, y))


@pytest.mark.parametrize("seed", range(5))
def test_classical_losses_match_torch(seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 7, 3, generator=g, dtype=f64)
    y01 = torch.rand(7, 3, generator=g, dtype=f64)
    for reduction in ("mean", "sum", "none"):
        torch.testing.assert_close(
            squared_error(a, b, reduction),
            F.mse_loss(a, b, reduction=reduction),
            rtol=1e-14,
            atol=0,
        )
        torch.testing.assert_close(
            binary_log_loss(5 * a, y01, reduction),
            F.binary_cross_entropy_with_logits(5 * a, y01, reduction=reduction),
            rtol=1e-13,
            atol=1e-15,
        )
        torch.testing.assert_close(
            ranking_hinge_loss(a, b, 0.5, reduction),
            F.margin_ranking_loss(a, b, torch.ones_like(a), margin=0.5, reduction=reduction),
            rtol=1e-14,
            atol=0,
        )


def test_binary_log_loss_is_finite_for_huge_logits_and_matches_its_closed_form():
    z = torch.tensor([-800.0, -2.0, 0.0, 3.0, 800.0], dtype=f64)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=f64)
    sigmoid = torch.sigmoid
    expected = [800.0, -math.log(1 - sigmoid(z[1])), math.log(2), -math.log(sigmoid(z[3])), 800.0]
    np.testing.assert_allclose(binary_log_loss(z, y, "none").numpy(), expected, rtol=1e-14)


def test_hinge_loss_matches_torch_multi_margin_loss_on_two_classes():
    # With scores (0, ŷ) and classes 0 <-> y = -1, 1 <-> y = +1, multi_margin_loss is
    # max(0, 1 - y ŷ) / 2: half the binary hinge.
    ŷ = torch.linspace(-3, 3, 13, dtype=f64)
    for sign, cls in ((1, 1), (-1, 0)):
        y = torch.full_like(ŷ, sign)
        theirs = F.multi_margin_loss(
            torch.stack([torch.zeros_like(ŷ), ŷ], 1), torch.full((13,), cls), reduction="none"
        )
        torch.testing.assert_close(
            hinge_loss(ŷ, y, reduction="none"), 2 * theirs, rtol=1e-15, atol=0
        )
    # Closed form: zero beyond the margin, linear inside.
    value = hinge_loss(torch.tensor([2.0, 0.5, -1.0]), torch.tensor([1, 1, 1]), reduction="none")
    torch.testing.assert_close(value, torch.tensor([0.0, 0.5, 2.0]))
    with pytest.raises(ValueError, match="targets must be -1 or"):
        hinge_loss(torch.zeros(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"margin must be in \[0, inf\)"):
        ranking_hinge_loss(torch.zeros(2), torch.zeros(2), margin=-1.0)


@pytest.mark.parametrize("seed", range(5))
def test_cross_entropy_is_entropy_plus_kl(seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(2 * torch.randn(4, 9, generator=g, dtype=f64), -1)
    q = torch.softmax(2 * torch.randn(4, 9, generator=g, dtype=f64), -1)
    p[0, :3] = 0.0  # zero-probability outcomes contribute nothing
    p = p / p.sum(-1, keepdim=True)
    H_pq, H_p, KL = distribution_cross_entropy(p, q), entropy(p), kl_divergence(p, q)
    torch.testing.assert_close(H_pq, H_p + KL, rtol=1e-13, atol=0)
    # Independent references: torch's categorical entropy and F.kl_div.
    torch.testing.assert_close(
        H_p, torch.distributions.Categorical(probs=p).entropy(), rtol=1e-13, atol=1e-15
    )
    torch.testing.assert_close(
        KL, F.kl_div(q.log(), p, reduction="none").sum(-1), rtol=1e-13, atol=1e-15
    )
    assert (KL > 0).all() and kl_divergence(q, q).abs().max() < 1e-15
    # Maximum likelihood: the mean loss on samples from p estimates H(p, q).
    x = torch.multinomial(p[1], 200_000, replacement=True, generator=g)
    sample_loss = cross_entropy(q[1].log().expand(len(x), 9), x)
    assert sample_loss.item() == pytest.approx(H_pq[1].item(), abs=0.02)


def test_distribution_arguments_are_checked():
    with pytest.raises(ValueError, match="p must be non-negative and sum to 1"):
        entropy(torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="p and q must have the same shape"):
        kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([1.0]))


# -- the chapter's exercises and demo --------------------------------------------------------


def test_exercise_answers():
    from chapters import run_solution

    assert run_solution("objectives/losses.md", "ex-losses-uniform")["answer"] == pytest.approx(
        math.log(50_257), rel=1e-12
    )
    ns = run_solution("objectives/losses.md", "ex-losses-logits")
    assert ns["answer"] == pytest.approx(0.4170, abs=1e-4)
    assert ns["smoothed"] == pytest.approx(0.5140, abs=1e-3)
    np.testing.assert_allclose(ns["z"].grad.numpy(), [[-0.3410, 0.2424, 0.0986]], atol=1e-3)
    answer = run_solution("objectives/losses.md", "ex-losses-overflow")["answer"]
    assert answer == pytest.approx(88.72, abs=0.01)
    answer = run_solution("objectives/losses.md", "ex-losses-smoothing")["answer"]
    assert answer == pytest.approx(math.log(9001), abs=1e-3)


def test_logit_demo_calls_the_package_and_updates_in_place():
    from llmtrain.demos.objectives.losses import logit_demo

    demo = logit_demo()
    first = demo.png()
    curve = demo.figure.axes[0].lines[0]
    demo.set(z1=4.0, temperature=0.5, label_smoothing=0.2)
    assert demo.png() != first
    r = demo.result
    # The point's loss is the package's cross-entropy of (z1, others) / τ against class 1.
    z = torch.tensor([[4.0, 1.5, 0.5, -1.0]], dtype=f64) / 0.5
    assert r.loss == pytest.approx(cross_entropy(z, torch.tensor([0]), label_smoothing=0.2).item())
    np.testing.assert_allclose(r.gradient, (r.p - r.y) / 0.5, atol=1e-12)
    np.testing.assert_array_equal(curve.get_ydata(), r.losses)  # the same artist moved
    # With smoothing the loss has an interior minimum; without, it decreases to the right.
    assert np.argmin(r.losses) < len(r.losses) - 1
    demo.set(label_smoothing=0.0)
    assert np.all(np.diff(demo.result.losses) < 0)


def test_log_softmax_arguments_are_checked():
    with pytest.raises(TypeError, match="z must be a floating-point tensor"):
        log_softmax(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"dim must be an integer in \[-2, 1\]"):
        logsumexp(torch.zeros(2, 3), dim=2)
    with pytest.raises(TypeError, match="z must be a torch tensor"):
        softmax([0.0, 1.0])


def test_logit_demo_after_moves_draws_what_a_fresh_demo_draws():
    """The frozen background (and fixed layout) must not leave stale pixels: after moves of
    every slider, including the ones that rescale the y axes, the figure is the one a new
    demo draws for the final values, and back at the defaults it is the default figure."""

    from llmtrain.demos.objectives.losses import logit_demo

    moved = logit_demo()
    default = pixels(moved)
    moves = [
        {"z1": -3.0},  # the first move freezes the background
        {"temperature": 0.3},
        {"label_smoothing": 0.2, "z1": 6.5},
        {"temperature": 2.5},
    ]
    final = {}
    for move in moves:
        moved.set(**move)
        moved.png()
        final.update(move)
    after = pixels(moved)
    np.testing.assert_array_equal(after, pixels(logit_demo().set(**final)))
    assert moved.figure.axes[2].get_title() == f"at z₁ = 6.50: ℓ = {moved.result.loss:.3f}"
    assert not np.array_equal(after, default)
    moved.set(z1=1.0, temperature=1.0, label_smoothing=0.0)
    np.testing.assert_array_equal(pixels(moved), default)
