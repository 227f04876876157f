"""The claims of the RLHF chapter, on the book's own models: PPO against the learned reward model
for three values of β (the cached runs of :func:`llmtrain.demos.posttraining.rlhf.ppo_runs`),
the per-token rewards of a real rollout, the hacked answers, and the exercises' numbers. The
runs come from the cache (they train if absent)."""

import pytest
import torch

from chapters import run_solution
from llmtrain._threads import one_torch_thread
from llmtrain.demos.posttraining.rlhf import ppo_beta_demo, ppo_runs
from llmtrain.posttraining import (
    PPO_BETAS,
    PPO_TASKS,
    PPOObjective,
    Rollouts,
    cached_reward_model,
    complete,
    ppo_config,
    rl_prompts,
    sft_model,
)

CHAPTER = "posttraining/rlhf.md"
LOW, MID, HIGH = PPO_BETAS


@pytest.fixture(autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def runs():
    return ppo_runs()


@pytest.fixture(scope="module")
def curves(runs):
    return {
        b: {
            k: [e[k] for e in run.records["evaluations"]]
            for k in ("reward", "gold", "kl", "length")
        }
        for b, run in runs.items()
    }


def test_the_runs_are_the_chapters_configuration(runs):
    assert PPO_BETAS == tuple(sorted(PPO_BETAS)) and len(PPO_BETAS) == 3
    for b, run in runs.items():
        config = ppo_config(b)
        assert config.method == "ppo" and config.beta == b and config.group_size == 1
        # the prose: 30 updates at 1e-4, one answer to each of 64 prompts, 2 epochs of 2
        assert (config.max_iters, config.lr, config.batch_size) == (30, 1e-4, 64)
        assert (config.epochs, config.minibatches, config.eval_iters) == (2, 2, 1)
        assert (config.gamma, config.lam) == (1.0, 0.95)  # "γ_rl = 1 and λ_gae = 0.95"
        assert [e["iter"] for e in run.records["evaluations"]] == [0, 10, 20, 30]
        assert run.seconds < 20  # 30 updates: a short run even on a busy machine


def test_with_a_small_beta_the_learned_reward_rises_and_the_gold_reward_falls(curves):
    low = curves[LOW]
    assert low["reward"][-1] > low["reward"][0] + 0.1
    assert low["gold"][-1] < low["gold"][0] - 0.2
    assert low["kl"][-1] > 2.0
    assert abs(low["length"][-1] - low["length"][0]) < 0.5  # not the length bias


def test_a_larger_beta_ends_closer_to_the_reference_and_more_often_right(curves):
    kl = [curves[b]["kl"][-1] for b in PPO_BETAS]
    gold = [curves[b]["gold"][-1] for b in PPO_BETAS]
    assert kl == sorted(kl, reverse=True)
    assert gold == sorted(gold)
    for b in (MID, HIGH):  # only the smallest β raises the learned reward
        assert curves[b]["reward"][-1] < curves[b]["reward"][0] + 0.05 < curves[LOW]["reward"][-1]
    assert all(curves[b]["kl"][1] > 0.5 for b in PPO_BETAS)  # the KL jumps in every run
    high = curves[HIGH]
    assert max(high["kl"]) > 1.0 and high["kl"][-1] < 0.5 * max(high["kl"])  # pulled back
    assert high["gold"][-1] > high["gold"][0] - 0.1


def test_the_k1_estimate_is_slightly_negative_early_on(runs):
    assert all(run.records["history"][1]["kl"] < 0 for run in runs.values())


@pytest.mark.algorithm("alg-rl-rollout")
@pytest.mark.algorithm("alg-ppo-rlhf")
def test_token_rewards_of_a_real_rollout_sum_to_the_score_minus_beta_times_the_log_ratio(runs):
    sft, tokenizer = sft_model()
    rm = cached_reward_model().model
    val = rl_prompts(PPO_TASKS)[1]
    reward_fn = rm.reward_function(tokenizer)
    objective = PPOObjective(runs[LOW].model, sft, ppo_config(LOW), value_init=rm)
    rollouts = Rollouts(objective, tokenizer, val, reward_fn)
    idx, mask, answers = rollouts.sample(list(range(8)), torch.Generator().manual_seed(0))
    scores = reward_fn(val[:8], answers)
    old = objective.logprobs(objective.policy, idx)
    ref = objective.logprobs(objective.reference, idx)
    r_t = objective.token_rewards(mask, scores, old, ref)
    m = mask[:, 1:]
    torch.testing.assert_close((r_t * m).sum(1), scores - LOW * ((old - ref) * m).sum(1))
    assert (r_t * (1 - m)).abs().sum() == 0
    assert ((old - ref) * m).abs().sum() > 1  # the policy has moved: the penalty is not 0


def test_the_policy_with_the_smallest_beta_writes_wrong_answers_the_reward_model_prefers(runs):
    sft, tokenizer = sft_model()
    reward_fn = cached_reward_model().model.reward_function(tokenizer)
    prompts = [e for e in rl_prompts(PPO_TASKS)[1] if e.task == "first_letter"][:12]
    before = complete(sft, tokenizer, [e.prompt for e in prompts], max_new_tokens=8)
    after = complete(runs[LOW].model, tokenizer, [e.prompt for e in prompts], max_new_tokens=8)
    r_before, r_after = reward_fn(prompts, before), reward_fn(prompts, after)
    hacked = sum(
        a == e.response != b and rb > ra
        for e, a, b, ra, rb in zip(prompts, before, after, r_before, r_after, strict=True)
    )
    assert hacked >= 3
    assert "" in after and any(len(b) == 2 for b in after) and any(b.isdigit() for b in after)


def test_the_demo_shows_each_run():
    demo = ppo_beta_demo()
    curves = demo.fixed["curves"]
    assert set(curves) == set(PPO_BETAS)
    for b in PPO_BETAS:
        result = demo.compute(beta=b)
        assert result["beta"] == b
        assert list(result["kl"]) == list(curves[b]["kl"])


def test_exercise_gae_with_discount():
    A = run_solution(CHAPTER, "ex-rlhf-gae-discount")["A"]
    torch.testing.assert_close(A, torch.tensor([0.31, 0.4, 0.2]))


def test_exercise_clip_gradient():
    grads = run_solution(CHAPTER, "ex-rlhf-clip-gradient")["grads"]
    assert float(grads[2.0]) == 0.0
    assert float(grads[-2.0]) == pytest.approx(-2.6, rel=1e-5)
