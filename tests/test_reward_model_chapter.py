"""The chapter on preferences and reward models: what it says about the Bradley-Terry loss, the
labeller's mistakes, the cached reward model's accuracy, and best-of-n against the reward
model (the proxy rises, the gold reward peaks early and collapses; at temperature 1 there is
little to choose from), checked on the real cached models; its demo and exercises."""

import math

import numpy as np
import pytest
import torch

from llmtrain._threads import one_torch_thread
from llmtrain.demos.posttraining.reward_models import (
    N_MAX,
    N_PROMPTS,
    PROMPT_SEED,
    _distinct,
    overoptimisation,
    reward_overoptimisation_demo,
)
from llmtrain.posttraining import (
    LENGTH_BIAS,
    TASKS,
    RewardModel,
    best_of_n_kl,
    bradley_terry_loss,
    cached_reward_model,
    check_answer,
    make_examples,
    preference_accuracy,
    preference_data,
    preference_pairs,
)
from llmtrain.posttraining.preference_data import _near_misses

CHAPTER = "posttraining/reward-models.md"


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.mark.algorithm("alg-bradley-terry")
def test_the_loss_is_ln_2_at_equal_rewards_and_its_gradient_is_sigmoid_of_the_wrong_order():
    zero = torch.zeros(1, dtype=torch.float64)
    assert bradley_terry_loss(zero, zero).item() == pytest.approx(math.log(2), rel=1e-15)
    margin = torch.linspace(-6, 6, 25, dtype=torch.float64, requires_grad=True)
    loss = bradley_terry_loss(margin, torch.zeros_like(margin)) * len(margin)
    (grad,) = torch.autograd.grad(loss, margin)
    torch.testing.assert_close(grad, -torch.sigmoid(-margin), rtol=1e-12, atol=1e-15)


@pytest.mark.algorithm("alg-preference-pairs")
def test_labels_are_wrong_only_where_the_near_miss_is_longer_at_the_rate_of_the_bias():
    train, _ = preference_data()
    assert train == preference_pairs("train", 4000, seed=0, length_bias=LENGTH_BIAS)
    longer = [len(p.wrong) > len(p.correct) for p in train]
    wrong = [not p.label_correct for p in train]
    assert not any(w and not long for w, long in zip(wrong, longer, strict=True))
    rate = sum(wrong) / sum(longer)
    sd = math.sqrt(LENGTH_BIAS * (1 - LENGTH_BIAS) / sum(longer))
    assert abs(rate - LENGTH_BIAS) < 4 * sd


@pytest.mark.algorithm("alg-reward-model")
def test_the_cached_reward_model_is_accurate_and_fooled_more_by_longer_near_misses():
    run = cached_reward_model()
    assert isinstance(run.model, RewardModel)
    assert run.log[0]["val_loss"] == pytest.approx(math.log(2), rel=1e-6)  # head at zero
    assert run.log[-1]["val_loss"] < math.log(2) - 0.1
    _, val = preference_data()
    tokenizer = run.tokenizer
    prompts = [p.example.prompt for p in val]
    r_right = run.model.score(tokenizer, prompts, [p.correct for p in val])
    r_miss = run.model.score(tokenizer, prompts, [p.wrong for p in val])
    right_first = (r_right > r_miss).numpy()
    # The chapter's count is the package's accuracy against the gold answers.
    assert right_first.mean() == pytest.approx(preference_accuracy(run.model, tokenizer, val))
    assert right_first.mean() > 0.75
    label_right = np.array([p.label_correct for p in val])
    agrees = np.where(label_right, right_first, (r_miss > r_right).numpy())
    assert 0.7 < agrees.mean() < right_first.mean()
    task = np.array([p.example.task for p in val])
    assert all(right_first[task == t].mean() > 0.6 for t in TASKS)
    extra = np.array([len(p.wrong) - len(p.correct) for p in val])
    assert right_first[extra > 0].mean() < right_first[extra < 0].mean()


def test_distinct_scoring_gives_every_answer_the_reward_models_score():
    run = cached_reward_model()
    examples = make_examples("test", 3, seed=PROMPT_SEED)
    exs = [examples[0], examples[1], examples[0], examples[2], examples[0], examples[1]]
    answers = [examples[0].response, "X", examples[0].response, None, "ab", "X"]
    reward = run.model.reward_function(run.tokenizer)
    torch.testing.assert_close(_distinct(reward)(exs, answers), reward(exs, answers))


def test_best_of_n_rises_on_the_proxy_while_the_gold_reward_peaks_early_and_collapses():
    sweep = overoptimisation()
    n, proxy, gold, length = (np.array(sweep[k]) for k in ("n", "proxy", "gold", "length"))
    assert list(n) == list(range(1, N_MAX + 1))
    assert sweep["kl"] == pytest.approx([best_of_n_kl(k) for k in n])
    assert np.all(np.diff(proxy) > 0)
    peak = int(gold.argmax())
    assert 0 < peak <= 3 and gold[peak] > gold[0] + 0.02
    assert gold[-1] < 0.6 * gold[0]
    assert length[-1] > length[0]
    # Gao et al.'s form d (a - b d) in d = sqrt(KL), fitted as in the chapter.
    d = np.sqrt(np.array(sweep["kl"]))
    a, b = np.linalg.lstsq(np.stack([d, -(d**2)], axis=1), gold - gold[0], rcond=None)[0]
    assert a > 0 and b > 0
    assert d[peak] * (a - b * d[peak]) < gold[peak] - gold[0]  # undershoots the early rise
    # What best-of-n_max picks when it is wrong is almost never a near miss of the data's kinds.
    examples = make_examples("test", N_PROMPTS, seed=PROMPT_SEED)
    wrong = []
    for example, answers, scores in zip(examples, sweep["answers"], sweep["scores"], strict=True):
        best = answers[int(np.argmax(scores))]
        if not check_answer(example, best):
            wrong.append(best in {c for kind in _near_misses(example) for c in kind})
    assert len(wrong) > N_PROMPTS / 2
    assert sum(wrong) <= 0.1 * len(wrong)


def _discrete_kl(answers, scores, n) -> float:
    """KL(best-of-n || policy) when the policy is the empirical distribution of the samples:
    the best of n is answer i with probability F_i^n - F_(i-1)^n, answers sorted by reward."""
    distinct = {}
    for a, s in zip(answers, scores, strict=True):
        distinct.setdefault(a, [s, 0])[1] += 1
    rows = sorted(distinct.values())
    p = np.array([count for _, count in rows]) / len(answers)
    F = np.cumsum(p)
    q = F**n - np.concatenate([[0.0], F[:-1]]) ** n
    keep = q > 0
    return float(np.sum(q[keep] * np.log(q[keep] / p[keep])))


def test_at_temperature_1_there_is_little_to_choose_from():
    hot, cold = overoptimisation(), overoptimisation(1.0)
    assert cold["distinct"] < hot["distinct"] / 3
    gain = {k: s["proxy"][-1] - s["proxy"][0] for k, s in (("hot", hot), ("cold", cold))}
    assert gain["cold"] < 0.1 * gain["hot"]
    # ln n - (n-1)/n overstates the KL when the samples repeat: far more at temperature 1.
    kl = {
        k: np.mean(
            [_discrete_kl(a, s, N_MAX) for a, s in zip(x["answers"], x["scores"], strict=True)]
        )
        for k, x in (("hot", hot), ("cold", cold))
    }
    assert kl["cold"] < 0.5 * best_of_n_kl(N_MAX)
    assert kl["cold"] < kl["hot"] <= best_of_n_kl(N_MAX) + 1e-9


def test_the_demo_shows_the_sweep_at_its_n():
    demo = reward_overoptimisation_demo()
    sweep = overoptimisation()
    for n in (1, 8, N_MAX):
        demo.set(n=n)
        assert demo.result["gold"] == sweep["gold"][n - 1]
        assert demo.result["kl"] == pytest.approx(best_of_n_kl(n))
    # At n_max the shown answers are the best of all the samples of their prompts.
    for j, answer in enumerate(demo.result["chosen"]):
        assert answer == sweep["answers"][j][int(np.argmax(sweep["scores"][j]))]
    with pytest.raises(ValueError, match="n"):
        demo.set(n=0)


def test_exercise_solutions():
    from chapters import run_solution

    assert run_solution(CHAPTER, "ex-rm-rankings")["comparisons"] == {
        k: k * (k - 1) // 2 for k in range(4, 10)
    }
    wrong = run_solution(CHAPTER, "ex-rm-label-noise")["wrong"]
    pairs = preference_pairs("train", 4000, length_bias=1.0)
    longer = sum(len(p.wrong) > len(p.correct) for p in pairs) / len(pairs)
    assert wrong[0.0] == 0.0 and wrong[1.0] == longer < 0.5
    assert wrong[0.3] == pytest.approx(0.3 * longer, abs=0.02)
