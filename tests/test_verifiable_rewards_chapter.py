"""The claims of the chapter on reinforcement learning with verifiable rewards, on the book's
own model: GRPO from the SFT model raises the accuracy of sampled answers on held-out
reversal prompts, greedy decoding does not get worse, pass@8 barely moves; the training
reward rises and the KL grows; in the grid of the demo a narrower clip range clips more.
The runs come from the cache (they train if absent). Also the exercises' numbers and the
demo's sliders."""

import math

import numpy as np
import pytest
import torch

from chapters import run_solution
from llmtrain._threads import one_torch_thread
from llmtrain.demos.posttraining.verifiable_rewards import (
    GRID_CLIPS,
    GRID_GROUP_SIZES,
    GRPO_CONFIG,
    grid_config,
    grpo_grid,
    grpo_grid_demo,
    moving_average,
)
from llmtrain.posttraining import (
    best_of_n,
    cached_rl,
    exact_match,
    gold_reward,
    grpo_advantages,
    kl_estimate,
    rl_prompts,
    sft_model,
)

CHAPTER = "posttraining/verifiable-rewards.md"
N_VALUES = [1, 2, 4, 8]


@pytest.fixture(scope="module")
def test_prompts():
    return rl_prompts()[1]


@pytest.fixture(scope="module")
def measured(test_prompts):
    """Greedy accuracy on the test prompts and pass@n on the first 100, before and after."""
    sft, tokenizer = sft_model()
    run = cached_rl(GRPO_CONFIG, reward="gold")
    out = {"run": run}
    with one_torch_thread():
        for name, model in (("sft", sft), ("grpo", run.model)):
            out[name] = (
                exact_match(model, tokenizer, test_prompts),
                best_of_n(model, tokenizer, test_prompts[:100], gold_reward, N_VALUES)["gold"],
            )
    return out


def test_grpo_raises_sampled_accuracy_and_keeps_greedy(measured):
    sft_greedy, sft_pass = measured["sft"]
    grpo_greedy, grpo_pass = measured["grpo"]
    assert sft_pass[-1] > sft_greedy > sft_pass[0]  # pass@8 > greedy > one sample
    assert grpo_pass[0] > sft_pass[0] + 0.04
    assert grpo_greedy >= sft_greedy
    assert abs(grpo_pass[-1] - sft_pass[-1]) < 0.5 * (grpo_pass[0] - sft_pass[0])


def test_training_reward_rises_and_kl_grows(measured):
    history = measured["run"].records["history"]
    assert len(history) == GRPO_CONFIG.max_iters // GRPO_CONFIG.epochs
    early = sum(h["gold"] for h in history[:5]) / 5
    late = sum(h["gold"] for h in history[-5:]) / 5
    assert late > early + 0.1
    assert history[0]["kl_k3"] == pytest.approx(0.0, abs=1e-6)  # the first rollout is π_ref's
    assert history[-1]["kl_k3"] > history[0]["kl_k3"]
    # The policy's first pass over each rollout has ratio 1 exactly; only the second can clip.
    updates = measured["run"].records["updates"]
    assert all(u["clipfrac"] == 0 for u in updates[:: GRPO_CONFIG.epochs])


def test_a_narrower_clip_clips_more_in_the_grid():
    grid = grpo_grid()
    assert set(grid) == {(G, c) for G in GRID_GROUP_SIZES for c in GRID_CLIPS}
    clipfrac = {
        key: sum(u["clipfrac"] for u in r["updates"]) / len(r["updates"]) for key, r in grid.items()
    }
    for G in GRID_GROUP_SIZES:
        assert clipfrac[G, 0.1] > clipfrac[G, 0.3]
    assert max(clipfrac.values()) < 0.05
    for (G, _), records in grid.items():
        config = grid_config(G, 0.1)
        assert config.batch_size * config.group_size == 32
        assert len(records["updates"]) == config.max_iters


def test_the_normalisation_example():
    """The chapter's toy batch: GRPO's per-answer mean weighs a short wrong answer's tokens
    8/3 times a long one's; Dr. GRPO and DAPO weigh them alike."""
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    length = torch.tensor([3.0, 3.0, 8.0, 8.0, 3.0, 8.0, 3.0, 8.0])
    grpo = grpo_advantages(r, 4) / length / len(r)
    assert float(grpo[6] / grpo[7]) == pytest.approx(8 / 3)
    dapo = grpo_advantages(r, 4) / length.sum()
    assert dapo[6] == dapo[7]
    # The std division: the hard group (std 0.5) doubles, the middling one (std 1/√3) × √3.
    ratio = grpo_advantages(r, 4) / grpo_advantages(r, 4, scale="none")
    assert ratio[0].item() == pytest.approx(2.0)
    assert ratio[4].item() == pytest.approx(math.sqrt(3))


def test_k2_bias_prediction_of_the_chapter():
    """E[k2] - KL → -E[u³]/6 as the chapter's π_ref approaches π (exact sums)."""
    logits = torch.tensor([1.0, 0.5, 0.0, -0.5, -1.0], dtype=torch.float64)
    direction = torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0], dtype=torch.float64)
    errors = []
    for distance in (0.1, 0.3, 1.0):
        ln_p = torch.log_softmax(logits, 0)
        ln_ref = torch.log_softmax(logits + distance * direction, 0)
        p, u = ln_p.exp(), ln_ref - ln_p
        kl = float((p * -u).sum())
        k2 = float((p * kl_estimate(ln_p, ln_ref, "k2")).sum())
        assert float((p * kl_estimate(ln_p, ln_ref, "k3")).sum()) == pytest.approx(kl, abs=1e-12)
        errors.append(abs((k2 - kl) / (-float((p * u**3).sum()) / 6) - 1))
    assert errors[0] < 0.1 and errors[0] < errors[1] < errors[2]


def test_exercise_rloo():
    ns = run_solution(CHAPTER, "ex-rlvr-rloo")
    assert ns["rloo"].tolist() == pytest.approx([0.75, -0.5, -0.5, 0.75, -0.5])
    assert ns["ratio"].tolist() == pytest.approx([1.25] * 5)


def test_exercise_kl_sample():
    ns = run_solution(CHAPTER, "ex-rlvr-kl-sample")
    assert ns["k"]["k1"] == pytest.approx(-math.log(2), rel=1e-6)
    assert ns["k"]["k2"] == pytest.approx(math.log(2) ** 2 / 2, rel=1e-6)
    assert ns["k"]["k3"] == pytest.approx(1 - math.log(2), rel=1e-6)
    assert ns["swapped"]["k3"] == pytest.approx(math.log(2) - 0.5, rel=1e-6)


def test_exercise_difficulty():
    ns = run_solution(CHAPTER, "ex-rlvr-difficulty")
    assert ns["with_std"][0].item() == pytest.approx(0.875 / math.sqrt(1 / 8), rel=1e-6)
    assert ns["ratio_std"] == pytest.approx((0.875 / math.sqrt(1 / 8)) / (0.5 / math.sqrt(2 / 7)))
    assert ns["ratio_none"] == pytest.approx(1.75)


def test_moving_average():
    assert moving_average([1, 2, 3, 4, 5, 6], 3).tolist() == pytest.approx([1, 1.5, 2, 3, 4, 5])


def test_the_demo_looks_up_the_grid():
    demo = grpo_grid_demo()
    first = demo.png()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert (demo.result["G"], demo.result["clip"]) == (8, 0.3)
    demo.set(group_size=2, clip=0.1)
    assert (demo.result["G"], demo.result["clip"]) == (2, 0.1)
    records = grpo_grid()[2, 0.1]
    expected = moving_average([h["gold"] for h in records["history"]])
    np.testing.assert_allclose(demo.result["gold"], expected)
    assert demo.png() != first
    with pytest.raises(ValueError, match="clip"):
        demo.set(clip=0.5)
