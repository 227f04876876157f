"""The claims of the direct-alignment chapter, on the book's own models: the DPO runs at three
values of β against the SFT model and PPO (accuracy, learned reward, KL, length), likelihood
displacement on the held-out reversal pairs, the measurements themselves, the demo and the
exercises' numbers. The runs and measurements come from the cache (they are made if absent)."""

import math

import numpy as np
import pytest
import torch

from chapters import run_solution
from llmtrain._threads import one_torch_thread
from llmtrain.demos.posttraining.direct_alignment import (
    DPO_BETAS,
    DPO_CONFIG,
    N_TEST,
    PPO_BETA,
    TEST_SEED,
    direct_alignment_results,
    dpo_beta_demo,
    sampled_kl,
)
from llmtrain.posttraining import (
    DIRECT_CONFIG,
    PPO_BETAS,
    check_answer,
    exact_match,
    make_examples,
    preference_data,
    sft_model,
)

CHAPTER = "posttraining/direct-alignment.md"


@pytest.fixture(scope="module")
def results():
    return direct_alignment_results()


@pytest.fixture(scope="module")
def dpo(results):
    return {float(b): s for b, s in results["dpo"].items()}


def test_the_runs_are_what_the_prose_says():
    """40 updates of 16 pairs, β = 0.02, 0.1, 0.5, the rest of the package's DIRECT_CONFIG;
    PPO is the RLHF chapter's middle run."""
    assert (DPO_CONFIG.max_iters, DPO_CONFIG.batch_size) == (40, 16)
    assert (DPO_CONFIG.lr, DPO_CONFIG.warmup_iters) == (
        DIRECT_CONFIG.lr,
        DIRECT_CONFIG.warmup_iters,
    )
    assert DPO_BETAS == (0.02, 0.1, 0.5)
    assert PPO_BETA == PPO_BETAS[1]


def test_dpo_losses_fall_below_ln_2_and_are_lower_for_larger_beta(dpo):
    for b in DPO_BETAS:
        assert dpo[b]["losses"][0] == pytest.approx(math.log(2), abs=0.01)
        assert len(dpo[b]["losses"]) == DPO_CONFIG.max_iters
    val = [dpo[b]["val_loss"] for b in DPO_BETAS]
    assert val == sorted(val, reverse=True) and max(val) < math.log(2)


def test_no_policy_gains_and_all_lose_reversal(results, dpo):
    sft = results["sft"]
    assert sft["exact_match"] == pytest.approx(0.9275)  # the SFT chapter's figure
    for s in [results["ppo"], *dpo.values()]:
        assert s["by_task"]["reverse"] < sft["by_task"]["reverse"]
        assert s["exact_match"] < sft["exact_match"]
        assert abs(s["reward"] - sft["reward"]) < 0.05


def test_dpo_keeps_the_answers_lengths_and_ppo_goes_further_and_longer(results, dpo):
    for s in dpo.values():
        assert abs(s["length"] - results["sft"]["length"]) < 0.1
    assert results["ppo"]["kl"] > dpo[0.1]["kl"]
    assert results["ppo"]["length"] > results["sft"]["length"]


def test_a_few_reversal_pairs_prefer_the_near_miss():
    pairs = [p for p in preference_data()[0] if p.example.task == "reverse"]
    assert 0.02 < sum(not p.label_correct for p in pairs) / len(pairs) < 0.15


def test_smaller_beta_moves_further_and_loses_more(dpo):
    kls = [dpo[b]["kl"] for b in DPO_BETAS]
    revs = [dpo[b]["by_task"]["reverse"] for b in DPO_BETAS]
    displaced = [np.mean(dpo[b]["shift"]["right"]) for b in DPO_BETAS]
    assert kls == sorted(kls, reverse=True) and len(set(kls)) == 3 and min(kls) > 0
    assert revs == sorted(revs) and revs[0] < revs[-1]
    assert displaced == sorted(displaced)  # the most negative at the smallest β


def test_likelihood_displacement(dpo):
    for b in DPO_BETAS:
        right = np.array(dpo[b]["shift"]["right"])
        wrong = np.array(dpo[b]["shift"]["wrong"])
        assert len(right) == 125
        assert right.mean() < 0 and wrong.mean() < 5 * right.mean()
        assert (right < 0).mean() > 0.5
        assert (np.array(dpo[b]["shift"]["margin"]) > 0).mean() > 0.6


def test_the_lost_reversal_answers_are_one_letter_substitutions(results, dpo):
    test = make_examples("test", N_TEST, seed=TEST_SEED)
    before, after = results["sft"]["answers"], dpo[0.1]["answers"]
    lost = [
        (e.response, a)
        for e, b, a in zip(test, before, after, strict=True)
        if e.task == "reverse" and check_answer(e, b) and not check_answer(e, a)
    ]
    substituted = [
        len(a) == len(r) and sum(x != y for x, y in zip(a, r, strict=True)) == 1 for r, a in lost
    ]
    assert len(lost) >= 5 and sum(substituted) >= 0.8 * len(lost)


def test_measurements_agree_with_the_package(results):
    """The greedy exact match is the package's exact_match; the KL of a model from itself
    is 0."""
    model, tokenizer = sft_model()
    test = make_examples("test", N_TEST, seed=TEST_SEED)
    assert results["sft"]["exact_match"] == pytest.approx(exact_match(model, tokenizer, test))
    with one_torch_thread():
        assert sampled_kl(model, model, tokenizer, test[:16]) == pytest.approx(0.0, abs=1e-6)


def test_demo_looks_up_every_run(dpo):
    demo = dpo_beta_demo()
    for b in DPO_BETAS:
        demo.set(beta=b)
        assert demo.result["beta"] == b
        assert demo.result["kl"] == dpo[b]["kl"]
        assert demo.result["right"].sum() == 125
    demo.set(beta=0.2)  # between grid values: the nearest on a log scale
    assert demo.result["beta"] == 0.1


def test_exercise_dpo_weights():
    ns = run_solution(CHAPTER, "ex-dpo-weights")
    assert torch.allclose(ns["weights"], torch.tensor([0.8808, 0.5, 0.1192]), atol=1e-4)
    assert ns["losses"] == pytest.approx([2.1269, math.log(2), 0.1269], abs=1e-4)


def test_exercise_ipo_target():
    ns = run_solution(CHAPTER, "ex-ipo-target")
    assert ns["target"] == 5.0 and ns["probability"] == pytest.approx(0.6225, abs=1e-4)


def test_exercise_optimal_policy():
    answers = run_solution(CHAPTER, "ex-dpo-optimal-policy")["answers"]
    assert answers[1.0][0] == pytest.approx(0.232, abs=1e-3)
    assert answers[0.25][0] == pytest.approx(0.858, abs=1e-3)
    z = 0.9 + 0.1 * math.e  # Z(x) at β = 1: the implicit rewards are r - ln Z
    assert answers[1.0][1] == pytest.approx([-math.log(z), 1 - math.log(z)])
