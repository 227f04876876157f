"""Direct alignment and best-of-n: the objective's losses against the preference losses on
log-probabilities computed by hand, ln 2 at the start, gradients into the policy only; DPO
training widens the log-ratio margin; best-of-n's estimator against brute force over every
subset, its KL formula, and bad input."""

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_gpt

from llmtrain._threads import one_torch_thread
from llmtrain.posttraining import (
    DirectPreferenceObjective,
    PairBatches,
    best_of_n,
    best_of_n_kl,
    chat_tokenizer,
    check_answer,
    dpo_loss,
    encode_chat,
    expected_best_of_n,
    ipo_loss,
    make_examples,
    preference_pairs,
    simpo_loss,
    train_direct,
)
from llmtrain.pretraining import LoopConfig

TOKENIZER = chat_tokenizer()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and lose much on a busy machine."""
    with one_torch_thread():
        yield


PAIRS = preference_pairs("train", 12, length_bias=0.5)


def a_batch(n=6, seed=0):
    return PairBatches(TOKENIZER, PAIRS, 64).batch(n, torch.Generator().manual_seed(seed))


def logprob_by_hand(model, prompt, answer):
    """log π(answer <|end|> | prompt), one row alone, unpadded, token by token."""
    prompt_ids, response_ids = encode_chat(TOKENIZER, prompt, answer)
    ids = torch.tensor([prompt_ids + response_ids])
    logp = F.log_softmax(model(ids)[0][0].double(), dim=-1)
    n = len(prompt_ids)
    return sum(logp[n - 1 + k, t] for k, t in enumerate(response_ids))


def by_hand(model, pairs):
    w = torch.stack([logprob_by_hand(model, p.example.prompt, p.chosen) for p in pairs])
    l_ = torch.stack([logprob_by_hand(model, p.example.prompt, p.rejected) for p in pairs])
    return w.float(), l_.float()


@pytest.mark.parametrize("loss", ["dpo", "ipo", "simpo"])
@pytest.mark.algorithm("alg-dpo")
def test_objective_is_the_loss_on_log_probabilities_by_hand(loss):
    policy, reference = tiny_gpt(0).eval(), tiny_gpt(1).eval()
    objective = DirectPreferenceObjective(
        policy, None if loss == "simpo" else reference, loss=loss, beta=0.3
    ).eval()
    data = PairBatches(TOKENIZER, PAIRS, 64)
    batch = data.everything()
    margins, value = objective(*batch)
    with torch.no_grad():
        pi_w, pi_l = by_hand(policy, PAIRS)
        ref_w, ref_l = by_hand(reference, PAIRS)
    if loss == "simpo":
        n_w = torch.tensor([len(encode_chat(TOKENIZER, "", p.chosen)[1]) for p in PAIRS])
        n_l = torch.tensor([len(encode_chat(TOKENIZER, "", p.rejected)[1]) for p in PAIRS])
        expected = simpo_loss(pi_w, pi_l, n_w, n_l, beta=0.3)
        expected_margins = 0.3 * (pi_w / n_w - pi_l / n_l)
    else:
        fn = dpo_loss if loss == "dpo" else ipo_loss
        expected = fn(pi_w, pi_l, ref_w, ref_l, beta=0.3)
        expected_margins = 0.3 * ((pi_w - ref_w) - (pi_l - ref_l))
    torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(margins, expected_margins, rtol=1e-4, atol=1e-4)
    assert not margins.requires_grad


def test_simpo_takes_gamma():
    objective = DirectPreferenceObjective(tiny_gpt(), None, loss="simpo", gamma=0.0)
    assert objective.beta == 2.0  # SimPO's own default
    batch = a_batch()
    margins, value = objective(*batch)
    torch.testing.assert_close(value, -F.logsigmoid(margins).mean())


@pytest.mark.algorithm("alg-dpo")
def test_dpo_starts_at_ln_2_and_only_the_policy_gets_gradients():
    policy = tiny_gpt()
    reference = copy.deepcopy(policy)
    objective = DirectPreferenceObjective(policy, reference)
    objective.train()
    assert not reference.training and policy.training
    assert all(not p.requires_grad for p in reference.parameters())
    margins, value = objective(*a_batch())
    assert value.item() == pytest.approx(math.log(2), abs=1e-6)
    assert torch.allclose(margins, torch.zeros_like(margins), atol=1e-5)
    value.backward()
    assert all(p.grad is None for p in reference.parameters())
    grads = [p.grad for p in policy.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    groups = objective.parameter_groups(0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(policy.parameters()))


@pytest.mark.algorithm("alg-dpo")
def test_train_direct_widens_the_log_ratio_margin():
    train = preference_pairs("train", 300, seed=1)
    val = preference_pairs("test", 100, seed=2)
    config = LoopConfig(
        batch_size=16,
        block_size=64,
        max_iters=60,
        lr=3e-3,
        warmup_iters=5,
        eval_interval=30,
        eval_iters=2,
        weight_decay=0.0,
    )
    policy = tiny_gpt()
    reference = copy.deepcopy(policy)
    result = train_direct(policy, TOKENIZER, train, val, config, beta=0.1)
    assert result.log[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert not policy.training
    # The policy moved; the margin h of the held-out pairs (log-ratio of the chosen minus that
    # of the rejected answer) is clearly positive.
    frozen = DirectPreferenceObjective(policy, reference, beta=1.0).eval()
    with torch.no_grad():
        h, _ = frozen(*PairBatches(TOKENIZER, val, 64).everything())
    assert h.mean() > 2.0, h.mean()
    assert (h > 0).float().mean() > 0.7
    assert result.val_loss < math.log(2) - 0.05
    again = tiny_gpt()
    result2 = train_direct(again, TOKENIZER, train, val, config, beta=0.1)
    assert result2.losses == result.losses
    assert all(
        torch.equal(a, b) for a, b in zip(policy.parameters(), again.parameters(), strict=True)
    )


@pytest.mark.algorithm("alg-dpo")
def test_direct_objective_refuses_bad_input():
    policy = tiny_gpt()
    for beta in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="beta"):
            DirectPreferenceObjective(policy, copy.deepcopy(policy), beta=beta)
    with pytest.raises(ValueError, match="loss"):
        DirectPreferenceObjective(policy, copy.deepcopy(policy), loss="kto")
    with pytest.raises(TypeError, match="reference"):
        DirectPreferenceObjective(policy, None, loss="dpo")
    with pytest.raises(ValueError, match="reference"):
        DirectPreferenceObjective(policy, copy.deepcopy(policy), loss="simpo")
    with pytest.raises(TypeError, match="policy"):
        DirectPreferenceObjective("gpt", None, loss="simpo")
    objective = DirectPreferenceObjective(policy, copy.deepcopy(policy))
    w_ids, w_mask, l_ids, l_mask = a_batch()
    with pytest.raises(ValueError, match="chosen_ids and rejected_ids"):
        objective(w_ids, w_mask, l_ids[:3], l_mask[:3])
    with pytest.raises(ValueError, match="rejected_mask"):
        objective(w_ids, w_mask, l_ids, l_mask[:, :-1])
    config = LoopConfig(block_size=64, max_iters=1, warmup_iters=0)
    with pytest.raises(ValueError, match="pairs"):
        train_direct(policy, TOKENIZER, [], PAIRS, config)
    with pytest.raises(ValueError, match="beta"):
        train_direct(policy, TOKENIZER, PAIRS, PAIRS, config, beta=0.0)


# -- best-of-n ---------------------------------------------------------------------------------


def test_best_of_n_kl_formula():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl(64) == pytest.approx(math.log(64) - 63 / 64)
    with pytest.raises(ValueError, match="n"):
        best_of_n_kl(0)


def brute_force_best(proxy, gold, n):
    """Every subset of size n, ties in proxy broken uniformly at random."""
    total_p = total_g = 0.0
    subsets = list(itertools.combinations(range(len(proxy)), n))
    for subset in subsets:
        top = max(proxy[i] for i in subset)
        best = [i for i in subset if proxy[i] == top]
        total_p += top
        total_g += sum(gold[i] for i in best) / len(best)
    return total_p / len(subsets), total_g / len(subsets)


@pytest.mark.parametrize("seed", range(4))
def test_expected_best_equals_brute_force_over_subsets(seed):
    g = torch.Generator().manual_seed(seed)
    N = 9
    proxy = torch.randint(0, 4, (N,), generator=g).double()  # many ties
    gold = torch.rand(N, generator=g, dtype=torch.float64)
    for n in range(1, N + 1):
        got = expected_best_of_n(proxy, gold, n)
        expected = brute_force_best(proxy.tolist(), gold.tolist(), n)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.algorithm("alg-best-of-n")
def test_best_of_n_on_a_policy():
    policy = tiny_gpt(2)
    # Make <|end|> likely, so that most samples end within the budget.
    with torch.no_grad():
        policy.lm_head.weight[TOKENIZER.special_tokens["<|end|>"]] += 0.5
    examples = make_examples("test", 6)
    seen = []

    def proxy(exs, answers):
        seen.append(list(answers))
        return torch.tensor([float(len(a)) if a is not None else -1.0 for a in answers])

    n_values = [1, 2, 4, 8, 16]
    out = best_of_n(policy, TOKENIZER, examples, proxy, n_values, seed=3, gold=proxy)
    assert out["n"] == n_values
    assert out["kl"] == [best_of_n_kl(n) for n in n_values]
    answers = seen[0]
    assert len(answers) == 6 * 16
    assert any(a is None for a in answers) and any(a is not None for a in answers)
    scores = proxy(examples, answers)
    # n = 1: the mean reward of all the samples.
    assert out["proxy"][0] == pytest.approx(float(scores.mean()))
    # gold == proxy: the two agree, and the expected best never falls as n grows.
    assert out["gold"] == pytest.approx(out["proxy"])
    assert all(b >= a - 1e-12 for a, b in zip(out["proxy"], out["proxy"][1:], strict=False))
    assert out["proxy"][-1] > out["proxy"][0]
    # At N = max(n_values) the best of all samples of each prompt.
    best = scores.reshape(6, 16).max(dim=1).values.mean()
    assert out["proxy"][-1] == pytest.approx(float(best))
    # The default gold reward is exact match; deterministic given the seed.
    again = best_of_n(policy, TOKENIZER, examples, proxy, n_values, seed=3)
    assert again["proxy"] == out["proxy"]
    right = [
        float(check_answer(e, a))
        for e, group in zip(
            examples, [answers[i * 16 : (i + 1) * 16] for i in range(6)], strict=True
        )
        for a in group
    ]
    assert again["gold"][0] == pytest.approx(sum(right) / len(right))


@pytest.mark.algorithm("alg-best-of-n")
def test_best_of_n_refuses_bad_input():
    policy = tiny_gpt()
    examples = make_examples("test", 2)

    def reward(exs, answers):
        return torch.zeros(len(answers))

    with pytest.raises(ValueError, match="n_values"):
        best_of_n(policy, TOKENIZER, examples, reward, [])
    with pytest.raises(ValueError, match="n_values"):
        best_of_n(policy, TOKENIZER, examples, reward, [1, 0])
    with pytest.raises(ValueError, match="examples"):
        best_of_n(policy, TOKENIZER, [], reward, [1])
    with pytest.raises(ValueError, match="reward must return"):
        best_of_n(policy, TOKENIZER, examples, lambda e, a: torch.zeros(3), [1, 2])
    with pytest.raises(ValueError, match="max_new_tokens"):
        best_of_n(policy, TOKENIZER, examples, reward, [1], max_new_tokens=0)
