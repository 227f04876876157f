"""Preference data and the reward model: near misses are wrong and varied, the simulated
labeller's length bias has the frequency asked for, batches mark exactly the responses, the
reward model reads the last response token (checked against a forward pass of each row on its
own), Bradley-Terry training learns a toy preference, and bad input is refused."""

import copy
import math
import string

import pytest
import torch
from tiny_models import tiny_gpt

from llmtrain._threads import one_torch_thread
from llmtrain.posttraining import (
    TASKS,
    BradleyTerryObjective,
    Example,
    PairBatches,
    PreferencePair,
    RewardModel,
    bradley_terry_loss,
    chat_tokenizer,
    check_answer,
    encode_chat,
    make_examples,
    near_miss,
    preference_accuracy,
    preference_pairs,
    train_reward_model,
)
from llmtrain.pretraining import LoopConfig

TOKENIZER = chat_tokenizer()
END = TOKENIZER.special_tokens["<|end|>"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and lose much on a busy machine."""
    with one_torch_thread():
        yield


# -- near misses -------------------------------------------------------------------------------


def test_near_misses_are_always_wrong_and_varied():
    examples = make_examples("train", 200) + make_examples("test", 200)
    generator = torch.Generator().manual_seed(0)
    by_task = {t: {"shorter": 0, "same": 0, "longer": 0} for t in TASKS}
    for e in examples:
        misses = [near_miss(e, generator) for _ in range(12)]
        assert not any(check_answer(e, m) for m in misses), (e, misses)
        assert len(set(misses)) >= 2, (e, misses)  # not one fixed corruption
        for m in misses:
            d = len(m) - len(e.response)
            by_task[e.task]["shorter" if d < 0 else "same" if d == 0 else "longer"] += 1
    # Longer and shorter near misses in the word tasks, which is what the length bias needs.
    for task in ("reverse", "capitals"):
        assert all(by_task[task][k] > 50 for k in ("shorter", "same", "longer")), by_task
    assert by_task["first_letter"]["longer"] > 50
    assert by_task["length"]["shorter"] == by_task["length"]["longer"] == 0


def test_near_misses_fit_their_task():
    g = torch.Generator().manual_seed(1)
    e = Example("length", "kelum", "How long is kelum?", "5")
    assert {near_miss(e, g) for _ in range(50)} == {"4", "6"}
    e = Example("first_letter", "kelum", "Which letter starts kelum?", "k")
    assert {near_miss(e, g) for _ in range(100)} == {"e", "l", "u", "m", "ke"}
    e = Example("capitals", "bab", "Capitalise bab.", "BAB")
    misses = {near_miss(e, g) for _ in range(200)}
    assert misses <= {"bAB", "BaB", "BAb", "BBAB", "BAAB", "BABB", "AB", "BB", "BA"}
    assert len(misses) >= 7
    # A palindrome: the unreversed word would be right, so it is never offered.
    e = Example("reverse", "bab", "Reverse the word bab.", "bab")
    misses = {near_miss(e, g) for _ in range(200)}
    assert "bab" not in misses and {"abb", "bba", "ab", "bb", "bbab", "baab"} <= misses


def test_near_miss_is_deterministic_given_the_generator():
    examples = make_examples("train", 40)
    a = [near_miss(e, torch.Generator().manual_seed(7)) for e in examples]
    b = [near_miss(e, torch.Generator().manual_seed(7)) for e in examples]
    assert a == b


# -- the labeller ------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-preference-pairs")
@pytest.mark.parametrize("bias", [0.0, 0.3, 1.0])
def test_the_labeller_prefers_the_longer_answer_with_probability_length_bias(bias):
    pairs = preference_pairs("train", 4000, seed=3, length_bias=bias)
    assert all(p.chosen in (p.example.response, p.wrong) for p in pairs)
    assert all(p.label_correct == (p.chosen == p.example.response) for p in pairs)
    assert all(p.correct == p.example.response and p.wrong != p.correct for p in pairs)
    longer_wrong = [p for p in pairs if len(p.wrong) > len(p.correct)]
    others = [p for p in pairs if len(p.wrong) <= len(p.correct)]
    # Where the right answer is as long or longer, the bias agrees with the truth.
    assert all(p.label_correct for p in others)
    assert len(longer_wrong) > 500
    flipped = sum(not p.label_correct for p in longer_wrong) / len(longer_wrong)
    sd = math.sqrt(bias * (1 - bias) / len(longer_wrong))
    assert abs(flipped - bias) <= 4 * sd + 1e-12, (flipped, bias)


@pytest.mark.algorithm("alg-preference-pairs")
def test_preference_pairs_are_deterministic_and_checked():
    assert preference_pairs("test", 50, 4, length_bias=0.5) == preference_pairs(
        "test", 50, 4, length_bias=0.5
    )
    assert preference_pairs("test", 50, 4) != preference_pairs("test", 50, 5)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="length_bias"):
            preference_pairs("train", 10, length_bias=bad)
    with pytest.raises(ValueError, match="n must"):
        preference_pairs("train", 0)
    with pytest.raises(ValueError, match="split"):
        preference_pairs("dev", 10)


# -- batches -----------------------------------------------------------------------------------


def test_pair_batches_mark_exactly_the_responses():
    pairs = preference_pairs("train", 30, length_bias=0.5)
    data = PairBatches(TOKENIZER, pairs, 64)
    generator = torch.Generator().manual_seed(0)
    chosen_ids, chosen_mask, rejected_ids, rejected_mask = data.batch(8, generator)
    assert chosen_ids.shape == chosen_mask.shape == rejected_ids.shape == rejected_mask.shape
    assert chosen_ids.shape[0] == 8
    for mask in (chosen_mask, rejected_mask):
        assert torch.all(mask[:, 0] == 0)
        assert set(mask.unique().tolist()) <= {0, 1}
    # everything(): every pair, in order; each row is prompt, answer, <|end|>, then padding.
    ids_w, mask_w, ids_l, mask_l = data.everything()
    assert ids_w.shape[0] == len(pairs)
    for i, p in enumerate(pairs):
        for ids, mask, answer in ((ids_w, mask_w, p.chosen), (ids_l, mask_l, p.rejected)):
            prompt_ids, response_ids = encode_chat(TOKENIZER, p.example.prompt, answer)
            n_p, n_r = len(prompt_ids), len(response_ids)
            assert ids[i, :n_p].tolist() == prompt_ids
            assert ids[i, n_p : n_p + n_r].tolist() == response_ids
            assert response_ids[-1] == END
            assert mask[i].tolist() == [0] * n_p + [1] * n_r + [0] * (ids.shape[1] - n_p - n_r)
            assert torch.all(ids[i, n_p + n_r :] == END)
    # The same generator state gives the same batch.
    again = data.batch(8, torch.Generator().manual_seed(0))
    assert all(
        torch.equal(a, b)
        for a, b in zip(again, (chosen_ids, chosen_mask, rejected_ids, rejected_mask), strict=True)
    )
    assert data.digest() == PairBatches(TOKENIZER, pairs, 64).digest()
    assert data.digest() != PairBatches(TOKENIZER, pairs[1:], 64).digest()
    assert data.prompt().dim() == 1


def test_pair_batches_refuse_bad_input():
    pairs = preference_pairs("train", 5)
    with pytest.raises(ValueError, match="pairs"):
        PairBatches(TOKENIZER, [], 64)
    with pytest.raises(ValueError, match="block_size"):
        PairBatches(TOKENIZER, pairs, 10)
    with pytest.raises(TypeError, match="pairs"):
        PairBatches(TOKENIZER, [p.example for p in pairs], 64)


# -- the reward model --------------------------------------------------------------------------


@pytest.mark.algorithm("alg-reward-model")
def test_reward_model_reads_the_last_response_token():
    gpt = tiny_gpt()
    reward_model = RewardModel(gpt)
    # The model passed in keeps its language-model head.
    assert gpt.lm_head.weight.shape == (259, 32)
    assert reward_model.gpt.lm_head.weight.shape == (1, 32)
    pairs = preference_pairs("test", 6, length_bias=1.0)
    ids, mask, _, _ = PairBatches(TOKENIZER, pairs, 64).everything()
    assert torch.all(reward_model(ids, mask) == 0)  # the head starts at zero
    torch.nn.init.normal_(reward_model.gpt.lm_head.weight)
    torch.nn.init.normal_(reward_model.gpt.lm_head.bias)
    reward_model.eval()
    rewards = reward_model(ids, mask)
    # By hand: each row alone, unpadded, through the body; the head on its last hidden state.
    body = copy.deepcopy(gpt).eval()
    body.lm_head = torch.nn.Identity()
    w, b = reward_model.gpt.lm_head.weight[0], reward_model.gpt.lm_head.bias[0]
    for i, p in enumerate(pairs):
        prompt_ids, response_ids = encode_chat(TOKENIZER, p.example.prompt, p.chosen)
        row = torch.tensor([prompt_ids + response_ids])
        hidden = body(row)[0][0, -1]
        torch.testing.assert_close(rewards[i], hidden @ w + b, rtol=1e-5, atol=1e-5)
    # Different rows get different rewards: the position read is each row's own.
    assert rewards.unique().numel() == len(pairs)


@pytest.mark.algorithm("alg-reward-model")
def test_reward_model_parameter_groups_decay_the_head_weight_only():
    reward_model = RewardModel(tiny_gpt())
    decay, no_decay = reward_model.parameter_groups(0.1)
    ids = lambda ps: {id(p) for p in ps["params"]}  # noqa: E731
    head = reward_model.gpt.lm_head
    assert id(head.weight) in ids(decay) and id(head.bias) in ids(no_decay)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    total = sum(p.numel() for p in reward_model.parameters())
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == total


def test_bradley_terry_objective_is_the_loss_of_the_two_rewards():
    reward_model = RewardModel(tiny_gpt())
    torch.nn.init.normal_(reward_model.gpt.lm_head.weight)
    objective = BradleyTerryObjective(reward_model).eval()
    batch = PairBatches(TOKENIZER, preference_pairs("train", 20), 64).batch(
        6, torch.Generator().manual_seed(2)
    )
    margins, loss = objective(*batch)
    r_w, r_l = reward_model(*batch[:2]), reward_model(*batch[2:])
    torch.testing.assert_close(margins, r_w - r_l)
    torch.testing.assert_close(loss, bradley_terry_loss(r_w, r_l))
    # At initialisation (head at zero) the loss is exactly ln 2.
    assert BradleyTerryObjective(RewardModel(tiny_gpt()))(*batch)[1].item() == pytest.approx(
        math.log(2), abs=1e-7
    )


def toy_pairs(n, seed):
    """Answers of random letters; the labeller prefers the one that ends in "a"."""
    g = torch.Generator().manual_seed(seed)
    examples = make_examples("train", n, seed=seed)
    letters = string.ascii_lowercase[1:]

    def word(last):
        k = int(torch.randint(2, 6, (1,), generator=g))
        body = "".join(letters[int(i)] for i in torch.randint(25, (k,), generator=g))
        return body + last

    pairs = []
    for e in examples:
        other = letters[int(torch.randint(25, (1,), generator=g))]
        pairs.append(PreferencePair(e, word("a"), word(other), True))
    return pairs


@pytest.mark.algorithm("alg-reward-model")
def test_bradley_terry_training_learns_a_toy_preference():
    train, val = toy_pairs(400, 0), toy_pairs(200, 1)
    config = LoopConfig(
        batch_size=16,
        block_size=64,
        max_iters=40,
        lr=3e-3,
        warmup_iters=10,
        eval_interval=20,
        eval_iters=2,
        weight_decay=0.0,
    )
    gpt = tiny_gpt()
    before = preference_accuracy(RewardModel(gpt), TOKENIZER, val)
    reward_model, result = train_reward_model(gpt, TOKENIZER, train, val, config)
    after = preference_accuracy(reward_model, TOKENIZER, val)
    assert before == 0.0  # every reward 0: no pair ordered strictly right
    assert after >= 0.95, after
    assert result.log[0]["val_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert result.val_loss < 0.2
    assert not reward_model.training
    # Deterministic: the same run again gives the same losses and the same model.
    again, result2 = train_reward_model(gpt, TOKENIZER, train, val, config)
    assert result2.losses == result.losses
    assert preference_accuracy(again, TOKENIZER, val) == after


def test_preference_accuracy_gold_against_labeller():
    pairs = preference_pairs("test", 300, length_bias=1.0)
    reward_model = RewardModel(tiny_gpt(3))
    torch.nn.init.normal_(reward_model.gpt.lm_head.weight)
    prompts = [p.example.prompt for p in pairs]
    r_w = reward_model.score(TOKENIZER, prompts, [p.chosen for p in pairs])
    r_l = reward_model.score(TOKENIZER, prompts, [p.rejected for p in pairs])
    agree = (r_w > r_l).tolist()
    rows = zip(agree, pairs, r_w, r_l, strict=True)
    right = [a if p.label_correct else bool(w < r) for a, p, w, r in rows]
    assert preference_accuracy(reward_model, TOKENIZER, pairs, gold=False) == pytest.approx(
        sum(agree) / len(pairs)
    )
    assert preference_accuracy(reward_model, TOKENIZER, pairs) == pytest.approx(
        sum(right) / len(pairs)
    )
    assert any(not p.label_correct for p in pairs)  # the two measures differ on these
    with pytest.raises(ValueError, match="pairs"):
        preference_accuracy(reward_model, TOKENIZER, [])


def test_reward_function_scores_answers_and_ranks_unfinished_ones_last():
    reward_model = RewardModel(tiny_gpt(4))
    torch.nn.init.normal_(reward_model.gpt.lm_head.weight)
    examples = make_examples("test", 5)
    answers = ["abc", None, "KELUM", "4", None]
    reward = reward_model.reward_function(TOKENIZER)
    r = reward(examples, answers)
    assert r.shape == (5,) and r.dtype == torch.float32
    done = [0, 2, 3]
    expected = reward_model.score(
        TOKENIZER, [examples[i].prompt for i in done], [answers[i] for i in done]
    )
    torch.testing.assert_close(r[done], expected)
    assert r[1] == r[4] == expected.min()
    assert torch.all(
        reward_model.reward_function(TOKENIZER, none_reward=-5.0)(examples, answers)[[1, 4]] == -5.0
    )
    assert torch.all(reward([examples[0]], [None]) == 0.0)
    with pytest.raises(ValueError, match="examples and answers"):
        reward(examples, answers[:2])


@pytest.mark.algorithm("alg-reward-model")
def test_reward_model_refuses_bad_input():
    with pytest.raises(TypeError, match="gpt"):
        RewardModel("not a model")
    reward_model = RewardModel(tiny_gpt())
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="mask"):
        reward_model(ids, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="idx and mask"):
        reward_model(ids, torch.ones(2, 4))
    objective = BradleyTerryObjective(reward_model)
    ones = torch.ones(2, 5)
    with pytest.raises(ValueError, match="rejected_ids"):
        objective(ids, ones, ids[:1], ones[:1])
    with pytest.raises(ValueError, match="chosen_mask"):
        objective(ids, ones[:, :3], ids, ones)
    with pytest.raises(TypeError, match="reward_model"):
        BradleyTerryObjective(tiny_gpt())
    config = LoopConfig(block_size=128, max_iters=1, warmup_iters=0)
    pairs = preference_pairs("train", 4)
    with pytest.raises(ValueError, match="block_size"):
        train_reward_model(tiny_gpt(), TOKENIZER, pairs, pairs, config)
