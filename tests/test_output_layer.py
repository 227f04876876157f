"""Distillation, z-loss and chunked cross-entropy against torch, closed forms and finite
differences."""

import pytest
import torch
import torch.nn.functional as F

from chapters import run_solution
from llmtrain.objectives import (
    chunked_cross_entropy,
    distillation_loss,
    largest_allocation,
    z_loss,
)

f64 = torch.float64


# -- distillation -----------------------------------------------------------------------------


@pytest.mark.algorithm("alg-distillation-loss")
@pytest.mark.parametrize("τ", [0.5, 1.0, 2.0, 7.5])
def test_distillation_loss_matches_torch_kl_div_times_tau_squared(τ):
    g = torch.Generator().manual_seed(int(10 * τ))
    s = 3.0 * torch.randn(6, 11, generator=g, dtype=f64)
    t = 3.0 * torch.randn(6, 11, generator=g, dtype=f64)
    ref = (
        F.kl_div(
            F.log_softmax(s / τ, -1), F.log_softmax(t / τ, -1), log_target=True, reduction="none"
        ).sum(-1)
        * τ**2
    )
    got = distillation_loss(s, t, temperature=τ, reduction="none")
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-13)
    batchmean = F.kl_div(
        F.log_softmax(s / τ, -1), F.log_softmax(t / τ, -1), log_target=True, reduction="batchmean"
    )
    torch.testing.assert_close(
        distillation_loss(s, t, temperature=τ), batchmean * τ**2, rtol=0, atol=1e-13
    )
    torch.testing.assert_close(
        distillation_loss(s, t, temperature=τ, reduction="sum"), ref.sum(), rtol=0, atol=1e-12
    )
    # (B, n, V) logits: the mean is over all B n tokens.
    s3, t3 = s.reshape(2, 3, 11), t.reshape(2, 3, 11)
    torch.testing.assert_close(
        distillation_loss(s3, t3, temperature=τ), ref.mean(), atol=1e-13, rtol=0
    )


@pytest.mark.algorithm("alg-distillation-loss")
def test_distillation_is_the_forward_kl_and_zero_only_at_the_teacher():
    s = torch.tensor([[2.0, 0.0, -1.0]], dtype=f64)
    t = torch.tensor([[0.0, 0.5, 4.0]], dtype=f64)
    p, q = torch.softmax(t, -1), torch.softmax(s, -1)
    forward = (p * (p.log() - q.log())).sum()
    reverse = (q * (q.log() - p.log())).sum()
    got = distillation_loss(s, t)
    torch.testing.assert_close(got, forward, rtol=0, atol=1e-14)
    assert abs(got.item() - reverse.item()) > 0.1  # the direction matters
    assert distillation_loss(t + 5.0, t, temperature=3.0).item() == pytest.approx(0.0, abs=1e-14)


@pytest.mark.algorithm("alg-distillation-loss")
@pytest.mark.parametrize("τ", [0.7, 1.0, 4.0])
def test_distillation_gradient_is_tau_times_q_minus_p(τ):
    g = torch.Generator().manual_seed(3)
    s = torch.randn(7, generator=g, dtype=f64, requires_grad=True)
    t = (2.0 * torch.randn(7, generator=g, dtype=f64)).requires_grad_(True)
    loss = distillation_loss(s[None], t[None], temperature=τ)
    loss.backward()
    closed = τ * (torch.softmax(s.detach() / τ, 0) - torch.softmax(t.detach() / τ, 0))
    torch.testing.assert_close(s.grad, closed, rtol=0, atol=1e-14)
    assert t.grad is None  # the teacher is a fixed target
    # Central finite differences of the loss itself.
    h = 1e-6
    fd = torch.empty(7, dtype=f64)
    for k in range(7):
        e = torch.zeros(7, dtype=f64)
        e[k] = h
        up = distillation_loss((s.detach() + e)[None], t.detach()[None], temperature=τ)
        down = distillation_loss((s.detach() - e)[None], t.detach()[None], temperature=τ)
        fd[k] = (up - down) / (2 * h)
    torch.testing.assert_close(fd, closed, rtol=0, atol=1e-8)


@pytest.mark.algorithm("alg-distillation-loss")
def test_tau_squared_keeps_the_gradient_finite_at_high_temperature_hinton_limit():
    # For τ ≫ |logits| the gradient τ (q - p) tends to ((s - mean s) - (t - mean t)) / V, the
    # gradient of the squared logit difference / (2V), whatever τ: the τ² factor makes it so.
    g = torch.Generator().manual_seed(5)
    V = 9
    s = torch.randn(V, generator=g, dtype=f64)
    t = torch.randn(V, generator=g, dtype=f64)
    limit = ((s - s.mean()) - (t - t.mean())) / V
    errors = []
    for τ in (10.0, 100.0, 1000.0):
        x = s.clone().requires_grad_(True)
        distillation_loss(x[None], t[None], temperature=τ).backward()
        errors.append((x.grad - limit).abs().max().item())
    # The error falls like 1/τ: tenfold per decade of τ.
    assert errors[2] < 1e-4 * limit.abs().max().item() * 10
    assert errors[0] / errors[1] == pytest.approx(10.0, rel=0.05)
    assert errors[1] / errors[2] == pytest.approx(10.0, rel=0.01)
    # Without the τ² factor the gradient would vanish like 1/τ.
    x = s.clone().requires_grad_(True)
    (distillation_loss(x[None], t[None], temperature=1000.0) / 1000.0**2).backward()
    assert x.grad.abs().max().item() < 1e-5


def test_distillation_rejects_bad_arguments():
    s = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="temperature must be in"):
        distillation_loss(s, s, temperature=0.0)
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(s, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        distillation_loss(s, s, reduction="batchmean")
    with pytest.raises(TypeError, match="student_logits"):
        distillation_loss(torch.zeros(2, 3, dtype=torch.long), s)


# -- z-loss -----------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-z-loss")
def test_z_loss_value_and_gradient_against_the_direct_formula():
    g = torch.Generator().manual_seed(7)
    z = 4.0 * torch.randn(3, 5, 13, generator=g, dtype=f64)
    z.requires_grad_(True)
    got = z_loss(z)
    direct = 1e-4 * torch.log(torch.exp(z).sum(-1)).pow(2).mean()
    torch.testing.assert_close(got, direct, rtol=1e-14, atol=0)
    got.backward()
    lse = torch.logsumexp(z.detach(), -1, keepdim=True)
    closed = 2e-4 * lse * torch.softmax(z.detach(), -1) / 15
    torch.testing.assert_close(z.grad, closed, rtol=1e-12, atol=0)
    # Shifting all logits by -LSE makes the softmax self-normalised: the penalty vanishes.
    assert z_loss(z.detach() - lse, weight=1.0).item() == pytest.approx(0.0, abs=1e-25)
    assert z_loss(z.detach(), weight=0.5).item() == pytest.approx(5e3 * direct.item(), rel=1e-12)


def test_z_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match="weight must be in"):
        z_loss(torch.zeros(2, 3), weight=-1.0)
    with pytest.raises(ValueError, match="last dimension"):
        z_loss(torch.zeros(2, 0))


# -- chunked cross-entropy --------------------------------------------------------------------


@pytest.mark.algorithm("alg-chunked-cross-entropy")
@pytest.mark.parametrize("chunk_size", [1, 5, 16, 64, 1000])
def test_chunked_cross_entropy_equals_the_full_one_with_gradients(chunk_size):
    g = torch.Generator().manual_seed(chunk_size)
    B, n, d, V = 3, 17, 8, 40
    h = torch.randn(B, n, d, generator=g, dtype=f64, requires_grad=True)
    W = torch.randn(V, d, generator=g, dtype=f64, requires_grad=True)
    y = torch.randint(0, V, (B, n), generator=g)
    y[torch.rand(B, n, generator=g) < 0.3] = -1
    got = chunked_cross_entropy(h, W, y, chunk_size=chunk_size, ignore_index=-1)
    gh, gW = torch.autograd.grad(got, (h, W))
    ref = F.cross_entropy((h @ W.T).reshape(-1, V), y.reshape(-1), ignore_index=-1)
    rh, rW = torch.autograd.grad(ref, (h, W))
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(gh, rh, rtol=0, atol=1e-10)
    torch.testing.assert_close(gW, rW, rtol=0, atol=1e-10)
    # A scaled upstream gradient is passed through, and only the requested gradient is made.
    (
        2.5 * chunked_cross_entropy(h, W.detach(), y, chunk_size=chunk_size, ignore_index=-1)
    ).backward()
    torch.testing.assert_close(h.grad, 2.5 * rh, rtol=0, atol=1e-10)


@pytest.mark.algorithm("alg-chunked-cross-entropy")
def test_chunked_cross_entropy_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(9, 4, generator=g, dtype=f64, requires_grad=True)
    W = torch.randn(6, 4, generator=g, dtype=f64, requires_grad=True)
    y = torch.tensor([0, 5, -100, 2, 3, -100, 1, 4, 4])
    assert torch.autograd.gradcheck(
        lambda h, W: chunked_cross_entropy(h, W, y, chunk_size=4), (h, W)
    )


@pytest.mark.algorithm("alg-chunked-cross-entropy")
def test_chunked_cross_entropy_never_allocates_the_full_logits():
    torch.manual_seed(0)
    N, d, V, c = 512, 16, 2048, 64
    h = torch.randn(N, d, requires_grad=True)
    W = (0.1 * torch.randn(V, d)).requires_grad_(True)
    y = torch.randint(0, V, (N,))

    def full():
        F.cross_entropy(h @ W.T, y).backward()

    def chunked():
        chunked_cross_entropy(h, W, y, chunk_size=c).backward()

    # Forward and backward: the full version makes N × V float32 arrays (logits, their
    # gradient); the chunked one nothing larger than a chunk's logits or the weight's gradient.
    assert largest_allocation(full) == N * V * 4
    assert largest_allocation(chunked) == max(c * V, V * d, N * d) * 4


def test_largest_allocation_ignores_views_and_in_place_writes():
    x = torch.zeros(100, 10)
    assert largest_allocation(lambda: x.T) == 0
    assert largest_allocation(lambda: x.add_(1.0)) == 0
    assert largest_allocation(lambda: x[:3] * 2.0) == 3 * 10 * 4


def test_chunked_cross_entropy_rejects_bad_arguments():
    h, W = torch.zeros(4, 3), torch.zeros(5, 3)
    y = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match="chunk_size must be an integer in"):
        chunked_cross_entropy(h, W, y, chunk_size=0)
    with pytest.raises(ValueError, match="targets must be in"):
        chunked_cross_entropy(h, W, torch.tensor([0, 1, 2, 5]), chunk_size=2)
    with pytest.raises(ValueError, match="weight must have shape"):
        chunked_cross_entropy(h, torch.zeros(5, 4), y, chunk_size=2)
    with pytest.raises(ValueError, match="targets must have shape"):
        chunked_cross_entropy(h, W, y[:3], chunk_size=2)
    with pytest.raises(TypeError, match="targets"):
        chunked_cross_entropy(h, W, y.float(), chunk_size=2)


# -- the chapter's exercise and demo ----------------------------------------------------------


def test_exercise_logit_memory_of_a_gpt2_batch():
    ns = run_solution("objectives/output-layer.md", "ex-output-layer-memory")
    assert ns["full_gib"] == pytest.approx(8 * 1024 * 50_257 * 4 / 2**30, rel=1e-12)
    assert ns["full_gib"] == pytest.approx(1.5337, abs=1e-4)
    assert ns["chunk_mib"] == pytest.approx(1024 * 50_257 * 4 / 2**20, rel=1e-12)
    assert ns["measured"] == ns["predicted"]


def test_distillation_demo_calls_the_package_and_updates_in_place():
    from llmtrain.demos.objectives.output_layer import distillation_demo

    demo = distillation_demo()
    first = demo.png()
    demo.set(temperature=4.0)
    assert demo.png() != first
    r = demo.result
    s = torch.tensor(r.student_logits, dtype=f64)
    t = torch.tensor(r.teacher_logits, dtype=f64)
    assert r.loss == pytest.approx(distillation_loss(s, t, temperature=4.0).item(), rel=1e-12)
    torch.testing.assert_close(torch.tensor(r.p), torch.softmax(t / 4.0, -1), rtol=0, atol=1e-12)
    # The curve tends to the squared-error limit at high τ.
    big = distillation_loss(s, t, temperature=1e4).item()
    assert r.limit == pytest.approx(big, rel=1e-3)
    assert abs(r.losses[-1] - r.limit) < 0.1 * r.limit
