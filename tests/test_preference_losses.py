"""Preference losses: each against its formula written out independently (in NumPy, from the
papers' equations), gradients against central finite differences and against the closed
forms the papers derive, the properties the losses are built for, and bad input."""

import math

import numpy as np
import pytest
import torch

from llmtrain.posttraining import (
    bradley_terry_loss,
    dpo_loss,
    ipo_loss,
    kto_loss,
    simpo_loss,
)

f64 = torch.float64
B = 7


def np_log_sigmoid(z):
    """log σ(z) = -log(1 + e^{-z}), written so that neither sign overflows."""
    return -np.logaddexp(0.0, -z)


def np_sigmoid(z):
    return np.exp(np_log_sigmoid(z))


def batch(n, seed, scale=1.0):
    """n random sequence log-probabilities (negative, like real ones), float64."""
    gen = torch.Generator().manual_seed(seed)
    return -scale * torch.rand(n, generator=gen, dtype=f64) * 20


def pairs(seed):
    """policy chosen, policy rejected, reference chosen, reference rejected."""
    return [batch(B, seed + k) for k in range(4)]


def finite_difference_grad(f, xs, eps=1e-6):
    """Central differences of the scalar f(*xs) with respect to every entry of every x."""
    grads = []
    for i, x in enumerate(xs):
        g = torch.zeros_like(x)
        for j in range(x.numel()):
            up = [y.clone() for y in xs]
            down = [y.clone() for y in xs]
            up[i][j] += eps
            down[i][j] -= eps
            g[j] = (f(*up) - f(*down)) / (2 * eps)
        grads.append(g)
    return grads


def autograd_grad(f, xs):
    xs = [x.clone().requires_grad_(True) for x in xs]
    return torch.autograd.grad(f(*xs), xs, allow_unused=True)


def assert_gradients_match_finite_differences(f, xs):
    for auto, fd in zip(autograd_grad(f, xs), finite_difference_grad(f, xs), strict=True):
        assert auto.abs().max() > 1e-4  # a gradient that is zero everywhere proves nothing
        torch.testing.assert_close(auto, fd, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- Bradley-Terry


@pytest.mark.algorithm("alg-bradley-terry")
def test_bradley_terry_equals_its_formula():
    r_w, r_l = batch(B, 0, scale=0.2), batch(B, 1, scale=0.2)
    d = r_w.numpy() - r_l.numpy()
    expected = np.mean(np.log1p(np.exp(-d)))  # -log σ(d) = log(1 + e^{-d})
    assert bradley_terry_loss(r_w, r_l).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.algorithm("alg-bradley-terry")
def test_bradley_terry_is_ln2_at_equal_rewards_and_depends_on_the_margin_only():
    r = batch(B, 2)
    assert bradley_terry_loss(r, r).item() == pytest.approx(math.log(2), rel=1e-14)
    r_w, r_l = batch(B, 3), batch(B, 4)
    shifted = bradley_terry_loss(r_w + 5.0, r_l + 5.0)
    torch.testing.assert_close(shifted, bradley_terry_loss(r_w, r_l), rtol=1e-12, atol=0)


@pytest.mark.algorithm("alg-bradley-terry")
def test_bradley_terry_stays_finite_on_huge_margins():
    r_w = torch.tensor([-1000.0, 1000.0], dtype=f64)
    loss = bradley_terry_loss(r_w, torch.zeros(2, dtype=f64))
    # -log σ(-1000) = 1000 + log(1 + e^{-1000}) ≈ 1000; -log σ(1000) ≈ 0
    assert loss.item() == pytest.approx(500.0, rel=1e-12)


@pytest.mark.algorithm("alg-bradley-terry")
def test_bradley_terry_gradients():
    assert_gradients_match_finite_differences(
        bradley_terry_loss, [batch(B, 5, scale=0.2), batch(B, 6, scale=0.2)]
    )


# ---------------------------------------------------------------- DPO


def np_margin(pi_w, pi_l, ref_w, ref_l):
    """h = log π_θ(y_w)/π_ref(y_w) - log π_θ(y_l)/π_ref(y_l)."""
    return (pi_w.numpy() - ref_w.numpy()) - (pi_l.numpy() - ref_l.numpy())


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
@pytest.mark.algorithm("alg-dpo-loss")
def test_dpo_equals_equation_7_of_rafailov_et_al(beta):
    xs = pairs(10)
    expected = -np.mean(np_log_sigmoid(beta * np_margin(*xs)))
    assert dpo_loss(*xs, beta=beta).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.algorithm("alg-dpo-loss")
def test_dpo_is_ln2_while_the_policy_is_the_reference():
    pi_w, pi_l = batch(B, 11), batch(B, 12)
    loss = dpo_loss(pi_w, pi_l, pi_w.clone(), pi_l.clone(), beta=0.3)
    assert loss.item() == pytest.approx(math.log(2), rel=1e-14)


@pytest.mark.algorithm("alg-dpo-loss")
def test_dpo_gradient_weighs_each_pair_by_sigma_of_the_wrong_reward_margin():
    """Rafailov et al. §4: ∇L = -β E[σ(r̂_l - r̂_w)(∇log π(y_w) - ∇log π(y_l))], with the
    implicit reward r̂ = β log π_θ/π_ref."""
    beta = 0.5
    xs = pairs(13)
    pi_w, pi_l, ref_w, ref_l = (x.numpy() for x in xs)
    reward_w, reward_l = beta * (pi_w - ref_w), beta * (pi_l - ref_l)
    weight = np_sigmoid(reward_l - reward_w)
    g_pi_w, g_pi_l, g_ref_w, g_ref_l = autograd_grad(lambda *a: dpo_loss(*a, beta=beta), xs)
    np.testing.assert_allclose(g_pi_w.numpy(), -beta * weight / B, rtol=1e-12)
    np.testing.assert_allclose(g_pi_l.numpy(), beta * weight / B, rtol=1e-12)
    # the reference enters with the opposite sign (it is frozen in training anyway)
    np.testing.assert_allclose(g_ref_w.numpy(), beta * weight / B, rtol=1e-12)
    np.testing.assert_allclose(g_ref_l.numpy(), -beta * weight / B, rtol=1e-12)
    # pairs the implicit reward orders wrongly get the larger weights
    wrong = reward_l > reward_w
    assert wrong.any() and (~wrong).any()
    assert weight[wrong].min() > 0.5 > weight[~wrong].max()


@pytest.mark.algorithm("alg-dpo-loss")
def test_dpo_gradients_match_finite_differences():
    assert_gradients_match_finite_differences(lambda *a: dpo_loss(*a, beta=0.7), pairs(14))


# ---------------------------------------------------------------- IPO


@pytest.mark.parametrize("beta", [0.1, 1.0])
@pytest.mark.algorithm("alg-ipo-loss")
def test_ipo_equals_equation_17_of_azar_et_al(beta):
    xs = pairs(20)
    expected = np.mean((np_margin(*xs) - 1 / (2 * beta)) ** 2)
    assert ipo_loss(*xs, beta=beta).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.algorithm("alg-ipo-loss")
def test_ipo_is_smallest_at_the_target_margin():
    beta = 0.25  # target h = 1/(2β) = 2
    zeros = torch.zeros(1, dtype=f64)

    def loss_at(h):
        return ipo_loss(torch.tensor([h], dtype=f64), zeros, zeros, zeros, beta=beta).item()

    hs = np.linspace(-3.0, 7.0, 1001)
    losses = [loss_at(h) for h in hs]
    assert hs[int(np.argmin(losses))] == pytest.approx(2.0, abs=1e-9)
    assert loss_at(2.0) == 0.0
    # unlike DPO, a margin beyond the target is penalised too
    assert loss_at(4.0) == pytest.approx(4.0) and loss_at(0.0) == pytest.approx(4.0)


@pytest.mark.algorithm("alg-ipo-loss")
def test_ipo_gradients_match_finite_differences():
    assert_gradients_match_finite_differences(lambda *a: ipo_loss(*a, beta=0.05), pairs(21))


# ---------------------------------------------------------------- SimPO


def lengths(seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(1, 40, (B,), generator=gen)


@pytest.mark.parametrize(("beta", "gamma"), [(2.0, 0.5), (2.5, 1.375), (10.0, 0.0)])
@pytest.mark.algorithm("alg-simpo-loss")
def test_simpo_equals_the_objective_of_meng_et_al(beta, gamma):
    pi_w, pi_l, n_w, n_l = batch(B, 30), batch(B, 31), lengths(32), lengths(33)
    z = beta * pi_w.numpy() / n_w.numpy() - beta * pi_l.numpy() / n_l.numpy() - gamma
    expected = -np.mean(np_log_sigmoid(z))
    loss = simpo_loss(pi_w, pi_l, n_w, n_l, beta=beta, gamma=gamma)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.algorithm("alg-simpo-loss")
def test_simpo_defaults_follow_the_authors_code():
    """Their SimPOConfig: beta=2.0, gamma_beta_ratio=0.25, and the loss
    -logsigmoid(β (avg_w - avg_l - γ/β))."""
    pi_w, pi_l, n_w, n_l = batch(B, 34), batch(B, 35), lengths(36), lengths(37)
    avg_w, avg_l = pi_w / n_w, pi_l / n_l
    theirs = -torch.nn.functional.logsigmoid(2.0 * (avg_w - avg_l - 0.25)).mean()
    torch.testing.assert_close(simpo_loss(pi_w, pi_l, n_w, n_l), theirs, rtol=1e-12, atol=0)


@pytest.mark.algorithm("alg-simpo-loss")
def test_simpo_ignores_a_constant_added_to_every_token_log_prob_and_dpo_does_not():
    """Adding c to each token's log-probability adds c·|y| to a sequence's log-probability:
    SimPO's averages move together; DPO's sums move by c(|y_w| - |y_l|)."""
    c = -0.3
    pi_w, pi_l, n_w, n_l = batch(B, 38), batch(B, 39), lengths(40), lengths(41)
    assert (n_w != n_l).any()
    moved_w, moved_l = pi_w + c * n_w.to(f64), pi_l + c * n_l.to(f64)
    torch.testing.assert_close(
        simpo_loss(moved_w, moved_l, n_w, n_l), simpo_loss(pi_w, pi_l, n_w, n_l), rtol=1e-12, atol=0
    )
    ref_w, ref_l = batch(B, 42), batch(B, 43)
    before = dpo_loss(pi_w, pi_l, ref_w, ref_l).item()
    after = dpo_loss(moved_w, moved_l, ref_w, ref_l).item()
    assert abs(after - before) > 1e-3


@pytest.mark.algorithm("alg-simpo-loss")
def test_simpo_gradients_match_finite_differences():
    n_w, n_l = lengths(44), lengths(45)
    assert_gradients_match_finite_differences(
        lambda a, b: simpo_loss(a, b, n_w, n_l, beta=2.0, gamma=0.5), [batch(B, 46), batch(B, 47)]
    )


# ---------------------------------------------------------------- KTO


def kto_example():
    """Three examples by hand: log-ratios r = [0.5, -1.0, 0.0] (desirable, undesirable,
    desirable) and mismatched log-ratios [0.5, 0.5], so z₀ = 0.5."""
    return dict(
        policy_logps=torch.tensor([-1.0, -2.0, -3.0], dtype=f64),
        ref_logps=torch.tensor([-1.5, -1.0, -3.0], dtype=f64),
        desirable=torch.tensor([True, False, True]),
        kl_policy_logps=torch.tensor([-2.0, -1.0], dtype=f64),
        kl_ref_logps=torch.tensor([-2.5, -1.5], dtype=f64),
    )


@pytest.mark.algorithm("alg-kto-loss")
def test_kto_on_a_hand_computed_example():
    # β = 1, λ_D = 3, λ_U = 2:
    #   desirable, r - z₀ = 0:       3 · (1 - σ(0))    = 1.5
    #   undesirable, z₀ - r = 1.5:   2 · (1 - σ(1.5))  = 2 σ(-1.5)   = 0.36485104761271
    #   desirable, r - z₀ = -0.5:    3 · (1 - σ(-0.5)) = 3 σ(0.5)    = 1.86737799360555
    # mean = 3.73222904121826 / 3
    loss = kto_loss(**kto_example(), beta=1.0, lambda_d=3.0, lambda_u=2.0)
    assert loss.item() == pytest.approx(1.24407634707275, abs=1e-13)


@pytest.mark.algorithm("alg-kto-loss")
def test_kto_clamps_the_reference_point_at_zero():
    example = kto_example()
    example["kl_policy_logps"] = example["kl_ref_logps"] - 3.0  # mean log-ratio -3 < 0
    # z₀ = 0: losses 1 - σ(0.5), 1 - σ(1.0), 1 - σ(0) with β = 1
    expected = (np_sigmoid(-0.5) + np_sigmoid(-1.0) + 0.5) / 3
    assert kto_loss(**example, beta=1.0).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.algorithm("alg-kto-loss")
def test_kto_equals_its_formula_on_random_input():
    beta, lam_d, lam_u = 0.3, 1.33, 0.8
    pi, ref, kl_pi, kl_ref = batch(B, 50), batch(B, 51), batch(5, 52), batch(5, 53, scale=1.5)
    desirable = torch.tensor([True, False, False, True, True, False, True])
    r = pi.numpy() - ref.numpy()
    z0 = max(0.0, float(np.mean(kl_pi.numpy() - kl_ref.numpy())))
    assert z0 > 0
    d = desirable.numpy()
    per_example = np.where(
        d, lam_d * (1 - np_sigmoid(beta * (r - z0))), lam_u * (1 - np_sigmoid(beta * (z0 - r)))
    )
    loss = kto_loss(pi, ref, desirable, kl_pi, kl_ref, beta=beta, lambda_d=lam_d, lambda_u=lam_u)
    assert loss.item() == pytest.approx(per_example.mean(), rel=1e-12)


@pytest.mark.algorithm("alg-kto-loss")
def test_kto_gradients_and_no_gradient_through_the_reference_point():
    example = kto_example()
    desirable = example.pop("desirable")

    def f(pi, ref, kl_pi, kl_ref):
        return kto_loss(pi, ref, desirable, kl_pi, kl_ref, beta=0.8, lambda_u=1.5)

    xs = list(example.values())
    g_pi, g_ref, g_kl_pi, g_kl_ref = autograd_grad(f, xs)
    assert g_kl_pi is None and g_kl_ref is None  # z₀ is detached: not even in the graph
    fd_pi, fd_ref, *_ = finite_difference_grad(f, xs)
    torch.testing.assert_close(g_pi, fd_pi, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(g_ref, fd_ref, rtol=1e-6, atol=1e-8)
    # desirable examples are pushed up, undesirable ones down
    assert (g_pi[desirable] < 0).all() and (g_pi[~desirable] > 0).all()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("loss", [dpo_loss, ipo_loss])
def test_pair_losses_reject_bad_input(loss):
    xs = pairs(60)
    with pytest.raises(ValueError, match=r"beta must be in \(0, inf\), got 0"):
        loss(*xs, beta=0)
    with pytest.raises(ValueError, match=r"beta must be in \(0, inf\)"):
        loss(*xs, beta=-0.1)
    with pytest.raises(ValueError, match="policy_chosen_logps and ref_rejected_logps must have"):
        loss(*xs[:3], xs[3][:-1])
    with pytest.raises(ValueError, match=r"policy_rejected_logps must be 1-D.*\(7, 1\)"):
        loss(xs[0], xs[1][:, None], *xs[2:])
    empty = torch.zeros(0, dtype=f64)
    with pytest.raises(ValueError, match="policy_chosen_logps must hold at least one example"):
        loss(empty, empty, empty, empty)
    with pytest.raises(TypeError, match="ref_chosen_logps must be a floating-point tensor"):
        loss(xs[0], xs[1], torch.zeros(B, dtype=torch.long), xs[3])
    with pytest.raises(TypeError, match=r"policy_chosen_logps must be a torch\.Tensor"):
        loss([0.0] * B, *xs[1:])


@pytest.mark.algorithm("alg-bradley-terry")
def test_bradley_terry_rejects_bad_input():
    r = batch(B, 61)
    with pytest.raises(ValueError, match="r_chosen and r_rejected must have the same shape"):
        bradley_terry_loss(r, r[:3])
    with pytest.raises(ValueError, match="r_chosen must be 1-D"):
        bradley_terry_loss(torch.tensor(1.0), torch.tensor(0.0))
    with pytest.raises(ValueError, match="r_chosen must hold at least one example"):
        bradley_terry_loss(r[:0], r[:0])


def test_simpo_rejects_bad_input():
    pi_w, pi_l, n_w, n_l = batch(B, 62), batch(B, 63), lengths(64), lengths(65)
    with pytest.raises(ValueError, match=r"beta must be in \(0, inf\)"):
        simpo_loss(pi_w, pi_l, n_w, n_l, beta=0.0)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, inf\), got -0.5"):
        simpo_loss(pi_w, pi_l, n_w, n_l, gamma=-0.5)
    bad = n_l.clone()
    bad[3] = 0
    with pytest.raises(ValueError, match=r"rejected_lengths must be in \(0, inf\).*got 0"):
        simpo_loss(pi_w, pi_l, n_w, bad)
    with pytest.raises(ValueError, match="policy_chosen_logps and chosen_lengths must have"):
        simpo_loss(pi_w, pi_l, n_w[:-1], n_l)
    with pytest.raises(ValueError, match="policy_chosen_logps and policy_rejected_logps must"):
        simpo_loss(pi_w, pi_l[:2], n_w, n_l)


def test_kto_rejects_bad_input():
    example = kto_example()
    with pytest.raises(ValueError, match=r"lambda_u must be in \(0, inf\), got 0"):
        kto_loss(**example, lambda_u=0)
    with pytest.raises(ValueError, match=r"lambda_d must be in \(0, inf\)"):
        kto_loss(**example, lambda_d=-1.0)
    with pytest.raises(ValueError, match=r"beta must be in \(0, inf\)"):
        kto_loss(**example, beta=0.0)
    with pytest.raises(
        TypeError, match=r"desirable must be a torch\.bool tensor, got torch\.int64"
    ):
        kto_loss(**{**example, "desirable": torch.tensor([1, 0, 1])})
    with pytest.raises(ValueError, match="policy_logps and desirable must have the same shape"):
        kto_loss(**{**example, "desirable": torch.tensor([True, False])})
    with pytest.raises(ValueError, match="policy_logps and ref_logps must have the same shape"):
        kto_loss(**{**example, "ref_logps": example["ref_logps"][:2]})
    with pytest.raises(ValueError, match="kl_policy_logps must hold at least one example"):
        kto_loss(**{**example, "kl_policy_logps": torch.zeros(0, dtype=f64)})
    with pytest.raises(ValueError, match="kl_policy_logps and kl_ref_logps must have the same"):
        kto_loss(**{**example, "kl_ref_logps": torch.zeros(3, dtype=f64)})
