"""Part IV, reinforcement learning on the book's GPT: rollouts (masks, log-probabilities,
records), the advantages of PPO, GRPO, REINFORCE and RLOO against hand computations, runs
that raise the reward of a toy task, determinism, and the errors of bad configurations."""

import copy
import dataclasses
import math

import pytest
import torch

from llmtrain._threads import one_torch_thread
from llmtrain.posttraining import (
    Example,
    FinetuneConfig,
    GRPOObjective,
    PPOObjective,
    ReinforceObjective,
    RLConfig,
    Rollouts,
    chat_tokenizer,
    encode_chat,
    finetune,
    gold_reward,
    grpo_advantages,
    make_examples,
    ppo_clip_loss,
    rl_objective,
    token_logprobs,
    train_rl,
    value_model,
)
from llmtrain.pretraining import GPT, GPTConfig

TOKENIZER = chat_tokenizer()
END = TOKENIZER.special_tokens["<|end|>"]
LETTERS = ("a", "b", "c", "d")
# Prompts of two token lengths, so that rollouts sample in two batches.
PROMPTS = ("Pick one.", "Pick two.", "Pick three.", "Pick four.")


def toy_examples(n: int, seed: int = 0) -> list[Example]:
    """A toy task: answer a letter. The SFT data answers each of a, b, c, d equally often."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        letter = LETTERS[int(torch.randint(4, (1,), generator=g))]
        out.append(Example("toy", "x", PROMPTS[i % len(PROMPTS)], letter))
    return out


def likes_a(examples, answers) -> torch.Tensor:
    """The toy reward: 1 for the answer "a", 0 otherwise."""
    return torch.tensor([float(a == "a") for a in answers])


def recorder():
    """``likes_a`` that also keeps every reward tensor it returns."""
    seen = []

    def reward(examples, answers):
        seen.append(likes_a(examples, answers))
        return seen[-1]

    return reward, seen


@pytest.fixture(scope="module")
def toy_policy() -> GPT:
    """A tiny GPT fine-tuned to answer a, b, c or d (about a quarter each) and end."""
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=TOKENIZER.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32
    )
    model = GPT(config)
    sft = FinetuneConfig(
        max_iters=50,
        lr=2e-2,
        warmup_iters=5,
        block_size=32,
        batch_size=8,
        eval_interval=50,
        eval_iters=1,
    )
    with one_torch_thread():
        finetune(model, TOKENIZER, toy_examples(400), toy_examples(16, seed=1), sft)
    return model.eval()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run many times faster on one thread of a busy machine."""
    with one_torch_thread():
        yield


def rollouts_for(policy, config, reward=likes_a, reference=None, examples=None, **kwargs):
    reference = copy.deepcopy(policy) if reference is None else reference
    objective = rl_objective(policy, reference, config, **kwargs)
    return Rollouts(objective, TOKENIZER, examples or toy_examples(32), reward)


def small(**kwargs) -> RLConfig:
    defaults = dict(
        batch_size=4, group_size=4, max_new_tokens=4, max_iters=10, lr=1e-3, warmup_iters=0
    )
    return RLConfig(**(defaults | kwargs))


# -- gold reward -------------------------------------------------------------------------------


def test_gold_reward_is_exact_match_as_zero_or_one():
    examples = make_examples("test", 4, seed=3)
    answers = [examples[0].response, examples[1].response + " ", None, examples[3].response]
    assert gold_reward(examples, answers).tolist() == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="examples and answers"):
        gold_reward(examples, answers[:3])


# -- rollouts ----------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-rl-rollout")
def test_rollout_masks_stop_at_the_first_end(toy_policy):
    config = small(temperature=2.5, group_size=8)  # hot: some answers end late or never
    rollouts = rollouts_for(toy_policy, config)
    prompts = [0, 4, 8]  # all of length len("Pick one.")
    idx, mask, answers = rollouts.sample(prompts, torch.Generator().manual_seed(5))
    # The same draw, by hand: generate from the same prompts with the same generator.
    prompt = encode_chat(TOKENIZER, PROMPTS[0])[0]
    x = torch.tensor([prompt] * 3).repeat_interleave(8, 0)
    raw = toy_policy.generate(x, 4, temperature=2.5, generator=torch.Generator().manual_seed(5))[
        :, len(prompt) :
    ]
    P = len(prompt)
    kinds = set()
    for n, new in enumerate(raw.tolist()):
        cut = new.index(END) + 1 if END in new else 4
        kinds.add((END in new, cut < 4))
        assert idx[n, :P].tolist() == prompt
        assert idx[n, P : P + cut].tolist() == new[:cut]
        assert idx[n, P + cut :].tolist() == [END] * (idx.shape[1] - P - cut)  # padding
        assert mask[n].tolist() == [0] * P + [1] * cut + [0] * (idx.shape[1] - P - cut)
        expected = TOKENIZER.decode(new[: cut - 1]) if END in new else None
        assert answers[n] == expected
    # Both an answer cut before the budget (tokens after its <|end|> dropped) and one that
    # never ended occurred, so both branches were checked.
    assert (True, True) in kinds and (False, False) in kinds


@pytest.mark.algorithm("alg-rl-rollout")
def test_rollout_log_probs_are_the_policys_and_the_references(toy_policy):
    reference = copy.deepcopy(toy_policy)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rollouts = rollouts_for(toy_policy, small(), reference=reference)
    idx, mask, old_logp, ref_logp, adv, returns, old_values = rollouts.batch(
        4, torch.Generator().manual_seed(0)
    )
    assert idx.shape == (16, idx.shape[1]) and mask[:, 0].sum() == 0
    with torch.no_grad():
        torch.testing.assert_close(old_logp, token_logprobs(toy_policy, idx))
        torch.testing.assert_close(ref_logp, token_logprobs(reference, idx))
    assert not torch.equal(old_logp, ref_logp)
    # At a temperature τ, the log-probabilities are those of softmax(z / τ), which sampled.
    hot = rollouts_for(toy_policy, small(temperature=2.0), reference=reference)
    idx, mask, old_logp, ref_logp, *_ = hot.batch(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for model, logp in ((toy_policy, old_logp), (reference, ref_logp)):
            z = model(idx[:, :-1])[0] / 2.0
            by_hand = torch.log_softmax(z, -1).gather(-1, idx[:, 1:, None]).squeeze(-1)
            torch.testing.assert_close(logp, by_hand)
    # GRPO has no value model: its returns and old values are zero.
    assert returns.abs().sum() == 0 and old_values.abs().sum() == 0
    assert adv[mask[:, 1:] == 0].abs().sum() == 0  # advantages only on response tokens


@pytest.mark.algorithm("alg-rl-rollout")
def test_a_rollout_serves_epochs_times_minibatches_calls(toy_policy):
    rollouts = rollouts_for(toy_policy, small(epochs=2, minibatches=2))
    g = torch.Generator().manual_seed(0)
    parts = [rollouts.batch(4, g) for _ in range(4)]
    assert len(rollouts.history) == 1 and rollouts._calls == 4
    whole = rollouts._rollout[0]
    for first, second in ((0, 1), (2, 3)):  # each pass covers every answer once
        rows = torch.cat((parts[first][0], parts[second][0]))
        assert len(rows) == len(whole) == 16
        assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, whole.tolist()))
    rollouts.batch(4, g)
    assert len(rollouts.history) == 2 and rollouts.history[1]["update"] == 4
    with torch.no_grad():  # an evaluation: a fresh, whole rollout, logged apart
        assert len(rollouts.batch(4, torch.Generator().manual_seed(0))[0]) == 16
    assert len(rollouts.evaluations) == 1 and len(rollouts.history) == 2
    assert rollouts.evaluations[0]["update"] == 5


def test_with_beta_0_and_the_policy_as_reference_the_kl_log_is_0(toy_policy):
    result = train_rl(
        copy.deepcopy(toy_policy),
        TOKENIZER,
        toy_examples(32),
        toy_examples(8, seed=2),
        likes_a,
        small(beta=0.0, max_iters=1),
    )
    first = result.history[0]
    assert first["kl"] == 0.0 and first["kl_k3"] == 0.0
    assert result.evaluations[0]["kl"] == 0.0 and result.updates[0]["kl"] == 0.0
    assert result.updates[0]["ratio"] == 1.0 and result.updates[0]["clipfrac"] == 0.0
    assert 0 < first["length"] <= 4 and 0 <= first["ended"] <= 1


# -- advantages --------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-grpo")
def test_grpo_advantages_are_zero_mean_in_every_group_of_a_rollout(toy_policy):
    recording, seen = recorder()
    config = small(batch_size=6, group_size=4, temperature=2.0)
    rollouts = rollouts_for(toy_policy, config, reward=recording)
    assert isinstance(rollouts.objective, GRPOObjective)
    _, mask, _, _, adv, _, _ = rollouts.batch(6, torch.Generator().manual_seed(1))
    m = mask[:, 1:]
    per_answer = adv.sum(1) / m.sum(1)
    # The same advantage on every token of an answer ...
    torch.testing.assert_close(adv, per_answer[:, None] * m)
    # ... zero mean in each group, and exactly grpo_advantages of the rewards.
    torch.testing.assert_close(per_answer.view(6, 4).mean(1), torch.zeros(6), atol=1e-6, rtol=0)
    torch.testing.assert_close(per_answer, grpo_advantages(seen[0], 4))
    assert per_answer.abs().sum() > 0  # some group had unequal rewards


@pytest.mark.algorithm("alg-reinforce-rloo")
def test_rloo_and_reinforce_baselines_by_hand(toy_policy):
    for method in ("rloo", "reinforce"):
        recording, seen = recorder()
        rollouts = rollouts_for(
            toy_policy, small(method=method, beta=0.0, temperature=2.0), reward=recording
        )
        assert isinstance(rollouts.objective, ReinforceObjective)
        _, mask, _, _, adv, _, _ = rollouts.batch(4, torch.Generator().manual_seed(2))
        per_answer = adv.sum(1) / mask[:, 1:].sum(1)
        r = seen[0].tolist()
        for i in range(16):
            if method == "rloo":
                group = r[i // 4 * 4 : i // 4 * 4 + 4]
                baseline = (sum(group) - r[i]) / 3
            else:
                baseline = sum(r) / 16
            assert per_answer[i].item() == pytest.approx(r[i] - baseline, abs=1e-6)


@pytest.mark.algorithm("alg-ppo-rlhf")
def test_ppo_token_rewards_and_gae_match_a_hand_computation(toy_policy):
    beta, gamma, lam = 0.1, 0.9, 0.8
    config = small(
        method="ppo", group_size=1, batch_size=6, beta=beta, gamma=gamma, lam=lam, temperature=2.0
    )
    reference = copy.deepcopy(toy_policy)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    critic = value_model(toy_policy)
    torch.nn.init.normal_(critic.lm_head.weight, 0.0, 0.3)  # values that are not all 0
    seen = []

    def reward(examples, answers):
        seen.append(torch.arange(len(answers), dtype=torch.float32) / 4 - 0.5)
        return seen[-1]

    rollouts = rollouts_for(
        toy_policy, config, reward=reward, reference=reference, value_init=critic
    )
    assert isinstance(rollouts.objective, PPOObjective)
    idx, mask, old, ref, adv, returns, old_values = rollouts.batch(
        6, torch.Generator().manual_seed(3)
    )
    with torch.no_grad():
        V = critic(idx[:, :-1])[0].squeeze(-1)
    raw, targets = {}, {}
    for n in range(len(idx)):
        cols = [j for j in range(idx.shape[1] - 1) if mask[n, j + 1] == 1]
        rewards = [-beta * (old[n, j] - ref[n, j]).item() for j in cols]
        rewards[-1] += seen[0][n].item()
        values = [V[n, j].item() for j in cols] + [0.0]  # terminal after the last token
        running = 0.0
        for k in reversed(range(len(cols))):
            delta = rewards[k] + gamma * values[k + 1] - values[k]
            running = delta + gamma * lam * running
            raw[n, cols[k]] = running
            targets[n, cols[k]] = running + values[k]
    mean = sum(raw.values()) / len(raw)
    std = math.sqrt(sum((a - mean) ** 2 for a in raw.values()) / len(raw))
    for (n, j), a in raw.items():
        assert adv[n, j].item() == pytest.approx((a - mean) / std, abs=1e-4)
        assert returns[n, j].item() == pytest.approx(targets[n, j], abs=1e-5)
        assert old_values[n, j].item() == pytest.approx(V[n, j].item(), abs=1e-6)
    off = mask[:, 1:] == 0
    assert adv[off].abs().sum() == 0 and returns[off].abs().sum() == 0


@pytest.mark.algorithm("alg-ppo-rlhf")
def test_ppo_trains_the_value_model_with_the_policy_and_never_the_reference(toy_policy):
    objective = rl_objective(
        copy.deepcopy(toy_policy), copy.deepcopy(toy_policy), small(method="ppo", group_size=1)
    )
    params = {id(p) for g in objective.parameter_groups(0.1) for p in g["params"]}
    assert {id(p) for p in objective.value.parameters()} <= params
    assert {id(p) for p in objective.policy.parameters()} <= params
    assert not {id(p) for p in objective.reference.parameters()} & params
    assert all(not p.requires_grad for p in objective.reference.parameters())
    # A new scalar head starts at zero, untied from the embedding.
    assert objective.value.lm_head.weight.shape == (1, 32)
    assert objective.value.lm_head.weight.abs().sum() == 0
    objective.train()
    assert objective.policy.training and not objective.reference.training


# -- runs --------------------------------------------------------------------------------------


RUNS = {
    "grpo": dict(method="grpo", lr=3e-3),
    "rloo": dict(method="rloo", lr=3e-3),
    "ppo": dict(
        method="ppo", group_size=1, batch_size=16, lr=3e-3, epochs=2, minibatches=2, max_iters=48
    ),
}


def run(policy, name, **kwargs):
    config = small(**({"max_iters": 30, "eval_interval": 30} | RUNS[name] | kwargs))
    return train_rl(
        copy.deepcopy(policy),
        TOKENIZER,
        toy_examples(64),
        toy_examples(16, seed=2),
        likes_a,
        config,
    )


@pytest.mark.parametrize("name", list(RUNS))
def test_rl_raises_the_reward_of_the_toy_task(toy_policy, name):
    result = run(toy_policy, name)
    first = sum(h["reward"] for h in result.history[:3]) / 3
    last = sum(h["reward"] for h in result.history[-5:]) / 5
    assert first < 0.45  # about a quarter of the answers are "a" at the start
    assert last > 0.75 and last > first + 0.35
    assert result.evaluations[-1]["reward"] > result.evaluations[0]["reward"] + 0.3
    assert result.history[-1]["kl"] > 0.1  # the policy moved away from the reference


def test_runs_are_deterministic(toy_policy):
    a, b = run(toy_policy, "ppo"), run(toy_policy, "ppo")
    assert a.history == b.history and a.losses == b.losses and a.updates == b.updates
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.algorithm("alg-grpo")
def test_several_epochs_per_rollout_make_the_clip_bite(toy_policy):
    one = run(toy_policy, "grpo", max_iters=8)
    assert all(u["clipfrac"] == 0 and u["ratio"] == 1 for u in one.updates)
    four = run(toy_policy, "grpo", max_iters=8, epochs=4, lr=1e-2)
    later = [u for i, u in enumerate(four.updates) if i % 4]  # not the first pass of a rollout
    assert max(u["clipfrac"] for u in later) > 0.05
    assert all(u["ratio"] == 1 for u in four.updates[::4])


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(method="dpo"), "method must be one of"),
        (dict(kl_estimator="k4"), "kl_estimator must be one of"),
        (dict(beta=-0.1), "beta must be in"),
        (dict(clip=0.0), "clip must be in"),
        (dict(clip=1.0), "clip must be in"),
        (dict(group_size=1), "group_size must be"),
        (dict(method="rloo", group_size=1), "group_size must be"),
        (dict(batch_size=3, group_size=3, minibatches=2), "minibatches must divide"),
        (dict(method="rloo", epochs=2), "epochs must be"),
        (dict(method="reinforce", minibatches=2), "minibatches must be"),
        (dict(grad_accum=2), "grad_accum must be"),
        (dict(optimizer="muon"), "optimizer must be"),
        (dict(temperature=0.0), "temperature must be"),
        (dict(scale="max"), "scale must be one of"),
        (dict(lam=1.5), "lam must be in"),
    ],
)
def test_bad_configs_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RLConfig(**kwargs)


def test_bad_inputs_name_the_argument(toy_policy):
    with pytest.raises(ValueError, match="max_new_tokens must leave room"):
        rollouts_for(toy_policy, small(max_new_tokens=30))
    bad = rollouts_for(toy_policy, small(), reward=lambda e, a: torch.zeros(3))
    with pytest.raises(ValueError, match="reward must return a tensor of shape"):
        bad.batch(4, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="value_init is only used"):
        rl_objective(toy_policy, toy_policy, small(), value_init=toy_policy)
    with pytest.raises(ValueError, match="reference must be a frozen copy"):
        rl_objective(toy_policy, toy_policy, small())
    with pytest.raises(TypeError, match="init must be"):
        value_model(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="config must be an RLConfig"):
        train_rl(toy_policy, TOKENIZER, toy_examples(4), toy_examples(4), likes_a, object())


# -- losses ------------------------------------------------------------------------------------


def perturbed(model, scale=0.05, seed=0):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return other


def test_the_losses_match_their_formulas(toy_policy):
    reference = perturbed(toy_policy, seed=1)
    for method in ("grpo", "ppo", "rloo"):
        extra = dict(group_size=1, batch_size=8) if method == "ppo" else {}
        config = small(method=method, beta=0.3, temperature=2.0, **extra)
        rollouts = rollouts_for(perturbed(toy_policy, seed=2), config, reference=reference)
        batch = rollouts.batch(config.batch_size, torch.Generator().manual_seed(4))
        idx, mask, old, ref, adv, returns, old_values = batch
        objective = rollouts.objective
        with torch.no_grad():  # move the policy (and the value model) away from the rollout's
            for p in objective.parameters():
                if p.requires_grad:
                    p.add_(0.02 * torch.randn_like(p))
        stats, loss = objective(*batch)
        m = mask[:, 1:]
        z = objective.policy(idx[:, :-1])[0] / 2.0
        logp = torch.log_softmax(z, -1).gather(-1, idx[:, 1:, None]).squeeze(-1)
        ratio = torch.exp(logp - old)
        surrogate = torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
        clipped = -(surrogate * m).sum() / m.sum()
        if method == "grpo":
            log_r = ref - logp
            k3 = torch.exp(log_r) - 1 - log_r
            expected = clipped + 0.3 * (k3 * m).sum() / m.sum()
        elif method == "ppo":
            v = objective.value(idx[:, :-1])[0].squeeze(-1)
            v_clip = old_values + (v - old_values).clamp(-0.2, 0.2)
            error = torch.maximum((v - returns) ** 2, (v_clip - returns) ** 2)
            expected = clipped + 0.1 * 0.5 * (error * m).sum() / m.sum()
        else:
            expected = -((adv * logp * m).sum(1)).mean()
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        assert stats["loss"] == pytest.approx(float(expected.detach()), rel=1e-5, abs=1e-6)
        if method == "ppo":  # value_clip = 0: the plain squared error, no clipped term
            objective.rl = dataclasses.replace(objective.rl, value_clip=0.0)
            plain = clipped + 0.1 * 0.5 * ((v - returns) ** 2 * m).sum() / m.sum()
            torch.testing.assert_close(objective(*batch)[1], plain, rtol=1e-5, atol=1e-6)


@pytest.mark.algorithm("alg-reinforce-rloo")
def test_reinforce_has_the_gradient_of_the_clipped_loss_at_ratio_one(toy_policy):
    rollouts = rollouts_for(toy_policy, small(method="rloo", temperature=2.0))
    batch = rollouts.batch(4, torch.Generator().manual_seed(6))
    idx, mask, old, _, adv, _, _ = batch
    objective = rollouts.objective
    params = [p for p in objective.policy.parameters() if p.requires_grad]
    grads = torch.autograd.grad(objective(*batch)[1], params)
    logp = objective.logprobs(objective.policy, idx)
    m = mask[:, 1:]
    clipped = ppo_clip_loss(logp, old, adv, clip=0.2, mask=m) * m.sum() / len(idx)
    for a, b in zip(grads, torch.autograd.grad(clipped, params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_a_larger_beta_keeps_the_policy_closer_to_the_reference(toy_policy):
    free = run(toy_policy, "ppo", beta=0.0)
    held = run(toy_policy, "ppo", beta=1.0)
    kl_free = sum(h["kl"] for h in free.history[-4:]) / 4
    kl_held = sum(h["kl"] for h in held.history[-4:]) / 4
    assert kl_held < 0.5 * kl_free


def test_a_value_model_keeps_a_reward_models_scalar_head(toy_policy):
    class Scorer(torch.nn.Module):  # the shape of RewardModel: a GPT with a scalar head
        def __init__(self, gpt):
            super().__init__()
            self.gpt = copy.deepcopy(gpt)
            self.gpt.lm_head = torch.nn.Linear(32, 1)
            self.gpt.requires_grad_(False)

    scorer = Scorer(toy_policy)
    v = value_model(scorer)
    assert v is not scorer.gpt and v.lm_head.out_features == 1
    assert torch.equal(v.lm_head.weight, scorer.gpt.lm_head.weight)
    assert all(p.requires_grad for p in v.parameters())
    idx = torch.tensor([encode_chat(TOKENIZER, "Pick one.", "a")[0] + [END]])
    assert v(idx)[0].shape == (1, idx.shape[1], 1)
