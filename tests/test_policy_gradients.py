"""Part IV, reinforcement learning building blocks: sequence log-probabilities, GAE, the PPO
clipped loss, GRPO's group-relative advantages and the KL estimators, each against an
independent reference (hand-computed values, brute-force sums, exact expectations)."""

import math

import pytest
import torch

from llmtrain.posttraining import (
    gae,
    grpo_advantages,
    kl_estimate,
    ppo_clip_loss,
    sequence_logprobs,
    token_logprobs,
)
from llmtrain.pretraining import GPT, GPTConfig

# ---------------------------------------------------------------- sequence log-probabilities


@pytest.fixture(scope="module")
def tiny_gpt():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)
    return GPT(config).eval()


@pytest.mark.algorithm("alg-sequence-logprobs")
def test_sequence_logprobs_matches_a_per_token_loop(tiny_gpt):
    torch.manual_seed(1)
    idx = torch.randint(0, 11, (3, 7))
    # Prompts of different lengths, then responses; row 2 has padding at the end.
    mask = torch.zeros(3, 7)
    mask[0, 2:] = 1
    mask[1, 4:] = 1
    mask[2, 1:5] = 1
    with torch.no_grad():
        got = sequence_logprobs(tiny_gpt, idx, mask)
        expected = torch.zeros(3)
        for b in range(3):
            for t in range(1, 7):
                if mask[b, t]:
                    # The model reads only the prefix x_<t and scores x_t.
                    logits = tiny_gpt(idx[b : b + 1, :t])[0][0, -1]
                    expected[b] += torch.log_softmax(logits, dim=-1)[idx[b, t]]
    assert got.shape == (3,)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.all(got < 0)


@pytest.mark.algorithm("alg-sequence-logprobs")
def test_sequence_logprobs_with_every_token_scored_is_minus_the_mean_loss_times_count(tiny_gpt):
    torch.manual_seed(2)
    idx = torch.randint(0, 11, (4, 8))
    mask = torch.ones(4, 8)
    mask[:, 0] = 0
    with torch.no_grad():
        total = sequence_logprobs(tiny_gpt, idx, mask).sum()
        loss = tiny_gpt(idx[:, :-1], idx[:, 1:])[1]
    torch.testing.assert_close(-total / (4 * 7), loss, atol=1e-5, rtol=1e-5)


@pytest.mark.algorithm("alg-sequence-logprobs")
def test_sequence_logprobs_carries_gradients_and_token_logprobs_shape(tiny_gpt):
    idx = torch.tensor([[1, 2, 3, 4]])
    lp = token_logprobs(tiny_gpt, idx)
    assert lp.shape == (1, 3)
    s = sequence_logprobs(tiny_gpt, idx, torch.tensor([[0, 0, 1, 1]]))
    torch.testing.assert_close(s, lp[:, 1:].sum(dim=1))
    s.sum().backward()
    grad = tiny_gpt.lm_head.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    tiny_gpt.zero_grad()


@pytest.mark.algorithm("alg-sequence-logprobs")
def test_sequence_logprobs_errors(tiny_gpt):
    idx = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"mask\[:, 0\] must be 0"):
        sequence_logprobs(tiny_gpt, idx, torch.tensor([[1, 1, 1]]))
    with pytest.raises(ValueError, match="mask and idx must have the same shape"):
        sequence_logprobs(tiny_gpt, idx, torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="mask must hold only 0 and 1"):
        sequence_logprobs(tiny_gpt, idx, torch.tensor([[0, 2, 1]]))
    with pytest.raises(ValueError, match="idx must have at least 2 tokens"):
        sequence_logprobs(tiny_gpt, torch.tensor([[1]]), torch.tensor([[0]]))
    with pytest.raises(TypeError, match="idx must be an integer"):
        token_logprobs(tiny_gpt, torch.tensor([[1.0, 2.0]]))


# ---------------------------------------------------------------------------------- GAE


@pytest.mark.algorithm("alg-gae")
def test_gae_hand_computed_example():
    # γ = 0.9, λ = 0.8, γλ = 0.72; values end with the bootstrap value V(s_3) = 0.25.
    #   δ_0 = 1 + 0.9·1.0 - 0.5 = 1.4
    #   δ_1 = 0 + 0.9·(-0.5) - 1.0 = -1.45
    #   δ_2 = 2 + 0.9·0.25 + 0.5 = 2.725
    #   Â_2 = 2.725, Â_1 = -1.45 + 0.72·2.725 = 0.512, Â_0 = 1.4 + 0.72·0.512 = 1.76864
    rewards = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    values = torch.tensor([0.5, 1.0, -0.5, 0.25], dtype=torch.float64)
    adv, ret = gae(rewards, values, gamma=0.9, lam=0.8)
    expected = torch.tensor([1.76864, 0.512, 2.725], dtype=torch.float64)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(ret, expected + values[:-1], rtol=0, atol=1e-12)
    torch.testing.assert_close(ret, torch.tensor([2.26864, 1.512, 2.225], dtype=torch.float64))


def _gae_double_sum(rewards, values, gamma, lam):
    T = rewards.shape[-1]
    out = torch.zeros_like(rewards)
    for t in range(T):
        for l in range(T - t):  # noqa: E741 (l is the paper's lag)
            delta = rewards[..., t + l] + gamma * values[..., t + l + 1] - values[..., t + l]
            out[..., t] += (gamma * lam) ** l * delta
    return out


@pytest.mark.algorithm("alg-gae")
def test_gae_matches_the_direct_double_sum_on_a_batch():
    g = torch.Generator().manual_seed(3)
    rewards = torch.randn(4, 9, generator=g, dtype=torch.float64)
    values = torch.randn(4, 10, generator=g, dtype=torch.float64)
    adv, _ = gae(rewards, values, gamma=0.97, lam=0.9)
    torch.testing.assert_close(adv, _gae_double_sum(rewards, values, 0.97, 0.9))


@pytest.mark.algorithm("alg-gae")
def test_gae_lambda_limits():
    g = torch.Generator().manual_seed(4)
    rewards = torch.randn(2, 6, generator=g, dtype=torch.float64)
    values = torch.randn(2, 7, generator=g, dtype=torch.float64)
    gamma = 0.95
    adv0, _ = gae(rewards, values, gamma=gamma, lam=0.0)
    torch.testing.assert_close(adv0, rewards + gamma * values[:, 1:] - values[:, :-1])
    adv1, ret1 = gae(rewards, values, gamma=gamma, lam=1.0)
    T = 6
    discounted = torch.stack(
        [
            sum(gamma**k * rewards[:, t + k] for k in range(T - t))
            + gamma ** (T - t) * values[:, T]
            for t in range(T)
        ],
        dim=1,
    )
    torch.testing.assert_close(adv1, discounted - values[:, :-1])
    torch.testing.assert_close(ret1, discounted)


@pytest.mark.algorithm("alg-gae")
def test_gae_gives_no_gradient_and_checks_shapes():
    values = torch.zeros(4, requires_grad=True)
    adv, ret = gae(torch.ones(3), values, gamma=1.0, lam=1.0)
    assert not adv.requires_grad and not ret.requires_grad
    torch.testing.assert_close(adv, torch.tensor([3.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"values must have shape \(3, 6\)"):
        gae(torch.ones(3, 5), torch.ones(3, 5), gamma=0.9, lam=0.9)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\], got 1.5"):
        gae(torch.ones(2), torch.ones(3), gamma=1.5, lam=0.9)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\]"):
        gae(torch.ones(2), torch.ones(3), gamma=0.9, lam=-0.1)
    with pytest.raises(TypeError, match=r"rewards must be a torch\.Tensor"):
        gae([1.0, 2.0], torch.ones(3), gamma=0.9, lam=0.9)


# ---------------------------------------------------------------------------------- PPO


def _ppo_piecewise(ratio, a, eps):
    """The objective min(ρA, clip(ρ)A) written out case by case, per element."""
    if a >= 0:
        return a * min(ratio, 1 + eps)
    return a * max(ratio, 1 - eps)


@pytest.mark.algorithm("alg-ppo-clip")
def test_ppo_clip_loss_matches_the_piecewise_definition_and_its_gradient():
    eps = 0.2
    ratios = [0.5, 0.9, 1.0, 1.1, 1.5, 0.5, 0.9, 1.1, 1.5]
    advs = [2.0, 2.0, 2.0, 2.0, 2.0, -1.0, -1.0, -1.0, -1.0]
    old = torch.tensor([-1.0, -2.0, -0.5, -3.0, -1.2, -0.7, -2.2, -1.9, -0.3], dtype=torch.float64)
    logp = (old + torch.log(torch.tensor(ratios, dtype=torch.float64))).requires_grad_()
    a = torch.tensor(advs, dtype=torch.float64)
    loss = ppo_clip_loss(logp, old, a, clip=eps)
    expected = -sum(_ppo_piecewise(r, x, eps) for r, x in zip(ratios, advs, strict=True)) / 9
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    # By hand: A=2: 1.0, 1.8, 2.0, 2.2, 2.4 (clipped at 1.2); A=-1: -0.8 (clipped at 0.8),
    # -0.9, -1.1, -1.5.
    assert expected == pytest.approx(-(1.0 + 1.8 + 2.0 + 2.2 + 2.4 - 0.8 - 0.9 - 1.1 - 1.5) / 9)
    loss.backward()
    # d(-ρA/N)/d logp = -ρA/N where the unclipped term is the minimum, 0 where clipping binds
    # (A > 0 and ρ > 1+ε; A < 0 and ρ < 1-ε).
    clipped = [False, False, False, False, True, True, False, False, False]
    grad = [0.0 if c else -r * x / 9 for r, x, c in zip(ratios, advs, clipped, strict=True)]
    torch.testing.assert_close(logp.grad, torch.tensor(grad, dtype=torch.float64))


@pytest.mark.algorithm("alg-ppo-clip")
def test_ppo_clip_loss_mask_and_constants():
    g = torch.Generator().manual_seed(5)
    logp = (-torch.rand(2, 5, generator=g)).requires_grad_()
    old = (-torch.rand(2, 5, generator=g)).requires_grad_()
    a = torch.randn(2, 5, generator=g).requires_grad_()
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]])
    loss = ppo_clip_loss(logp, old, a, clip=0.1, mask=mask)
    keep = mask.bool()
    reference = ppo_clip_loss(logp[keep], old[keep], a[keep], clip=0.1)
    torch.testing.assert_close(loss, reference)
    loss.backward()
    assert torch.all(logp.grad[~keep] == 0)
    assert old.grad is None and a.grad is None  # π_old and advantages are constants
    # At ρ = 1 the loss is -mean(A) and its gradient -A/N, as for REINFORCE with a baseline.
    x = torch.zeros(4, requires_grad=True)
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0])
    ppo_clip_loss(x, torch.zeros(4), adv).backward()
    torch.testing.assert_close(x.grad, -adv / 4)


@pytest.mark.algorithm("alg-ppo-clip")
def test_ppo_clip_loss_errors():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match=r"clip must be in \(0, 1\), got 0"):
        ppo_clip_loss(x, x, x, clip=0)
    with pytest.raises(ValueError, match="logp and advantages must have the same shape"):
        ppo_clip_loss(x, x, torch.zeros(2))
    with pytest.raises(ValueError, match="mask must mark at least one"):
        ppo_clip_loss(x, x, x, mask=torch.zeros(3))


# --------------------------------------------------------------------------------- GRPO


@pytest.mark.algorithm("alg-grpo-advantages")
def test_grpo_group_advantages_are_standardised_per_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.3, 0.3, 0.3, 0.3])
    adv = grpo_advantages(rewards, 4).view(3, 4)
    # Group 0: mean 0.5, sample std sqrt(1/3): advantages ±0.5·sqrt(3) = ±0.8660.
    torch.testing.assert_close(adv[0], torch.tensor([1, -1, -1, 1]) * 0.5 * math.sqrt(3))
    # Group 1: mean 0.75, sample std 0.5: 0.5, 0.5, 0.5, -1.5.
    torch.testing.assert_close(adv[1], torch.tensor([0.5, 0.5, 0.5, -1.5]))
    # Group 2: all rewards equal, no signal: exactly 0, no NaN.
    assert torch.all(adv[2] == 0)
    torch.testing.assert_close(adv.mean(dim=1), torch.zeros(3))
    torch.testing.assert_close(adv[:2].std(dim=1), torch.ones(2))


@pytest.mark.algorithm("alg-grpo-advantages")
def test_grpo_scale_options():
    g = torch.Generator().manual_seed(6)
    rewards = torch.randn(15, generator=g, dtype=torch.float64)
    groups = rewards.view(5, 3)
    centred = (groups - groups.mean(dim=1, keepdim=True)).reshape(-1)
    torch.testing.assert_close(grpo_advantages(rewards, 3, scale="none"), centred)
    torch.testing.assert_close(grpo_advantages(rewards, 3, scale="batch"), centred / rewards.std())
    by_group = grpo_advantages(rewards, 3, scale="group").view(5, 3)
    torch.testing.assert_close(by_group.std(dim=1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(by_group.mean(dim=1), torch.zeros(5, dtype=torch.float64))
    # Every option centres each group; only the scale differs.
    for scale in ("none", "batch"):
        adv = grpo_advantages(rewards, 3, scale=scale).view(5, 3)
        torch.testing.assert_close(adv.mean(dim=1), torch.zeros(5, dtype=torch.float64))


@pytest.mark.algorithm("alg-grpo-advantages")
def test_grpo_equal_rewards_give_zero_even_when_the_mean_rounds():
    # The mean of three 0.1s is not exactly 0.1 in floating point.
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.0, 0.0, 0.0], dtype=torch.float64)
    for scale in ("group", "batch", "none"):
        assert torch.all(grpo_advantages(rewards, 3, scale=scale)[:3] == 0)
    assert torch.all(grpo_advantages(torch.full((4,), 0.7), 2, scale="batch") == 0)
    assert torch.all(grpo_advantages(torch.tensor([1.0, 2.0]), 1) == 0)


@pytest.mark.algorithm("alg-grpo-advantages")
def test_grpo_errors():
    r = torch.zeros(6)
    with pytest.raises(ValueError, match="group_size must divide the number of rewards 6"):
        grpo_advantages(r, 4)
    with pytest.raises(ValueError, match=r"group_size must be an integer in \[1, inf\]"):
        grpo_advantages(r, 0)
    with pytest.raises(ValueError, match="scale must be one of"):
        grpo_advantages(r, 3, scale="global")
    with pytest.raises(ValueError, match=r"rewards must have shape \(B,\)"):
        grpo_advantages(r.view(2, 3), 3)


# ----------------------------------------------------------------------------------- KL

P = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
P_REF = torch.tensor([0.25, 0.35, 0.3, 0.1], dtype=torch.float64)
EXACT_KL = float((P * (P / P_REF).log()).sum())  # KL(π ‖ π_ref), about 0.1786


def _estimates(kind, n=200_000, seed=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.multinomial(P, n, replacement=True, generator=g)
    return kl_estimate(P.log()[x], P_REF.log()[x], kind)


@pytest.mark.algorithm("alg-kl-estimators")
@pytest.mark.parametrize("kind", ["k1", "k3"])
def test_k1_and_k3_are_unbiased(kind):
    est = _estimates(kind)
    stderr = est.std().item() / math.sqrt(est.numel())
    assert abs(est.mean().item() - EXACT_KL) < 4 * stderr
    # The exact expectation over the four outcomes equals the KL, not only approximately.
    exact_mean = (P * kl_estimate(P.log(), P_REF.log(), kind)).sum().item()
    assert exact_mean == pytest.approx(EXACT_KL, abs=1e-12)


@pytest.mark.algorithm("alg-kl-estimators")
def test_k3_has_lower_variance_than_k1_here_and_is_never_negative():
    assert _estimates("k3").std() < _estimates("k1").std()
    g = torch.Generator().manual_seed(8)
    logp = torch.randn(10_000, generator=g) * 5
    ref = logp + torch.randn(10_000, generator=g) * torch.logspace(-8, 1, 10_000)
    assert torch.all(kl_estimate(logp, ref, "k3") >= 0)
    assert torch.any(kl_estimate(logp, ref, "k1") < 0)


@pytest.mark.algorithm("alg-kl-estimators")
def test_k2_expectation_and_its_bias():
    # Monte Carlo agrees with the exact expectation E_π[(ln r)²]/2.
    log_r = P_REF.log() - P.log()
    exact_k2 = float((P * log_r**2).sum() / 2)
    est = _estimates("k2")
    stderr = est.std().item() / math.sqrt(est.numel())
    assert abs(est.mean().item() - exact_k2) < 4 * stderr
    assert exact_k2 > EXACT_KL  # biased: here too large by about 0.03
    # Third-order expansion of E_π[exp(ln r)] = 1: E[k2] - KL = -E[(ln r)³]/6 + O((ln r)⁴).
    # Move π_ref towards π (π_ref ∝ π·exp(t·g)) and watch the relative error of that
    # prediction shrink in proportion to t. (g must have a skewed distribution under π, else
    # E[(ln r)³] is itself of fourth order.)
    gdir = torch.tensor([0.0, 0.0, 0.0, 3.0], dtype=torch.float64)
    errors = []
    for t in (0.1, 0.01):
        ref = P * torch.exp(t * gdir)
        ref = ref / ref.sum()
        u = ref.log() - P.log()
        kl = float((P * -u).sum())
        bias = float((P * u**2).sum() / 2) - kl
        predicted = -float((P * u**3).sum()) / 6
        errors.append(abs(bias / predicted - 1))
    assert errors[1] < 0.01  # measured: 0.0752 at t = 0.1, 0.0072 at t = 0.01
    assert errors[0] / errors[1] == pytest.approx(10, rel=0.2)


@pytest.mark.algorithm("alg-kl-estimators")
def test_kl_estimate_errors_and_gradient():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="kind must be one of"):
        kl_estimate(x, x, "k4")
    with pytest.raises(ValueError, match="logp and ref_logp must have the same shape"):
        kl_estimate(x, torch.zeros(2))
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    ref = torch.tensor([-1.5, -1.0])
    kl_estimate(logp, ref, "k3").sum().backward()
    # d/d logp [exp(ref - logp) - 1 - ref + logp] = 1 - r.
    torch.testing.assert_close(logp.grad, 1 - torch.exp(ref - logp.detach()))
