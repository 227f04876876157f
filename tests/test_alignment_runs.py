"""The cached runs of Part IV's preference and RL chapters: keys that see their inputs, loading
that gives the trained weights back, and arguments checked."""

import dataclasses

import pytest
import torch

from llmtrain.posttraining import (
    DIRECT_CONFIG,
    LENGTH_BIAS,
    RLConfig,
    cached_direct,
    cached_rl,
    check_answer,
    preference_data,
    rl_prompts,
)

# A run short enough for a test: 2 updates of 2 prompts × 2 answers.
TINY_RL = RLConfig(
    batch_size=2, group_size=2, max_iters=2, warmup_iters=0, eval_interval=2, max_new_tokens=8
)


def test_the_preference_data_are_fixed_and_biased_as_documented():
    train, val = preference_data()
    assert (len(train), len(val)) == (4000, 500)
    again = preference_data()[0]
    assert [(p.chosen, p.rejected) for p in train] == [(p.chosen, p.rejected) for p in again]
    # The labeller errs only towards the longer answer, at about the documented rate.
    wrong = [p for p in train if not p.label_correct]
    assert all(len(p.chosen) > len(p.rejected) for p in wrong)
    longer = [p for p in train if len(p.wrong) > len(p.correct)]
    assert abs(len(wrong) / len(longer) - LENGTH_BIAS) < 0.06
    for p in train[:200]:
        assert check_answer(p.example, p.correct) and not check_answer(p.example, p.wrong)


def test_rl_prompts_split_the_words():
    train, test = rl_prompts()
    assert {e.task for e in train} == {e.task for e in test} == {"reverse"}
    assert not {e.word for e in train} & {e.word for e in test}
    assert {e.task for e in rl_prompts(("capitals", "length"))[0]} == {"capitals", "length"}


def test_bad_arguments_raise_errors_naming_them():
    with pytest.raises(ValueError, match="reward must be"):
        cached_rl(TINY_RL, reward="gold standard")
    with pytest.raises(TypeError, match="config must be an RLConfig"):
        cached_rl(DIRECT_CONFIG)
    with pytest.raises(TypeError, match="config must be a LoopConfig"):
        cached_direct("dpo")


def test_rl_and_direct_runs_round_trip_through_the_cache(tmp_path, monkeypatch):
    import shutil

    from llmtrain.pretraining import cache_dir

    shared = cache_dir()  # absent in a fresh cache: the runs below then train from scratch
    for entry in shared.iterdir() if shared.is_dir() else ():  # the base and SFT models
        if not entry.name.startswith(("rl-", "direct-", "reward-model-", ".")):
            dst = tmp_path / entry.name
            if entry.is_dir() and not dst.exists():
                shutil.copytree(entry, dst)
    monkeypatch.setenv("LLMTRAIN_CACHE", str(tmp_path))
    first = cached_rl(TINY_RL)
    assert len(list(tmp_path.glob("rl-*"))) == 1
    second = cached_rl(TINY_RL)
    states = first.model.state_dict(), second.model.state_dict()
    for name, a in states[0].items():
        assert torch.equal(a, states[1][name]), name
    assert first.records == second.records and first.seconds == second.seconds
    other = cached_rl(dataclasses.replace(TINY_RL, seed=1))
    assert len(list(tmp_path.glob("rl-*"))) == 2  # a new config is a new entry
    assert any(
        not torch.equal(a, b)
        for a, b in zip(first.model.parameters(), other.model.parameters(), strict=True)
    )
    tiny_direct = dataclasses.replace(
        DIRECT_CONFIG, max_iters=2, batch_size=2, warmup_iters=0, eval_interval=2
    )
    d1 = cached_direct(tiny_direct, beta=0.1)
    d2 = cached_direct(tiny_direct, beta=0.1)
    assert d1.log == d2.log
    for a, b in zip(d1.model.parameters(), d2.model.parameters(), strict=True):
        assert torch.equal(a, b)
