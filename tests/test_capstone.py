"""The capstone: the trainer's optimizer choice and resuming with it, the sweep, the demo."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from chapters import run_solution
from llmtrain.demos.optimization import optimizer_capstone as capstone
from llmtrain.objectives import synthetic_corpus
from llmtrain.optim import AdamW, Lion, Muon
from llmtrain.pretraining import GPT, TrainConfig, configure_optimizer, pretrain, train_step
from llmtrain.pretraining.trainer import _parser

TEXT = synthetic_corpus(30_000, seed=0)
TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=16, eval_iters=4)


def tiny(**changes) -> TrainConfig:
    return TrainConfig(
        **{**TINY, "max_iters": 20, "eval_interval": 5, "warmup_iters": 2, **changes}
    )


def _by_hand(name: str, model: GPT, config: TrainConfig) -> list[torch.optim.Optimizer]:
    """The optimizers the trainer should build, written out from the parameter names."""
    named = dict(model.named_parameters())
    embeddings = {"transformer.wte.weight", "transformer.wpe.weight"}
    matrices = [p for n, p in named.items() if p.dim() == 2 and n not in embeddings]
    rest = [p for n, p in named.items() if p.dim() != 2 or n in embeddings]
    groups = [
        {"params": matrices, "weight_decay": config.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    betas = (config.beta1, config.beta2)
    if name == "sgd":  # torch's own SGD: an independent reference for the coupled decay
        return [torch.optim.SGD(groups, lr=config.lr, momentum=config.beta1)]
    if name == "adamw":
        return [torch.optim.AdamW(groups, lr=config.lr, betas=betas, eps=1e-8)]
    if name == "lion":
        return [Lion(groups, lr=config.lr, betas=betas)]
    blocks = [p for n, p in named.items() if n.startswith("transformer.h.") and p.dim() == 2]
    assert len(blocks) == 4 * config.n_layer  # c_attn, attention c_proj, c_fc, MLP c_proj
    muon = Muon(
        blocks,
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.beta1,
        nesterov=True,
        adjust_lr_fn="match_rms_adamw",
    )
    # The head is tied to the embedding: every decayed matrix lives in a block.
    assert len(blocks) == len(matrices)
    return [muon, AdamW([{"params": rest, "weight_decay": 0.0}], lr=config.lr, betas=betas)]


@pytest.mark.parametrize("name", ["adamw", "sgd", "lion", "muon"])
def test_train_step_equals_the_optimizer_step_done_by_hand(name):
    config = tiny(optimizer=name, grad_clip=0.0, weight_decay=0.1, beta1=0.8, beta2=0.9, lr=0.02)
    torch.manual_seed(0)
    model = GPT(config.model_config(vocab_size=24)).double()
    reference = copy.deepcopy(model)
    optimizer, scheduler = configure_optimizer(model, config)
    hand = _by_hand(name, reference, config)
    g = torch.Generator().manual_seed(0)
    for t in (1, 2, 3):  # three steps: the momentum and moment states take part
        x, y = (torch.randint(0, 24, (4, 32), generator=g) for _ in range(2))
        loss = train_step(model, optimizer, scheduler, [(x, y)], config)
        for opt in hand:
            opt.zero_grad()
            for group in opt.param_groups:
                group["lr"] = config.schedule(t)
        reference_loss = reference(x, y)[1]
        reference_loss.backward()
        for opt in hand:
            opt.step()
        assert loss == pytest.approx(reference_loss.item(), rel=1e-12)
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # The step moved the weights: the comparison is not between two untouched models.
    assert not torch.equal(next(model.parameters()), next(GPT(model.config).parameters()))


def test_the_optimizers_take_different_steps_and_adamw_is_the_default():
    assert TrainConfig().optimizer == "adamw"
    runs = {
        n: pretrain(TEXT, tiny(optimizer=n, max_iters=3), progress=False).losses
        for n in ("adamw", "sgd", "lion", "muon")
    }
    assert runs["adamw"] == pretrain(TEXT, tiny(max_iters=3), progress=False).losses
    assert len({tuple(v[1:]) for v in runs.values()}) == 4  # the first loss precedes any step


@pytest.mark.parametrize("name", ["muon", "lion"])
def test_a_resumed_run_with_this_optimizer_is_exact(tmp_path, name):
    config = tiny(optimizer=name, lr=3e-3)
    whole = pretrain(TEXT, config, progress=False)
    stopped = pretrain(
        TEXT, config, out=tmp_path, progress=False, callback=lambda r: r["iter"] == 10
    )
    assert [r["iter"] for r in stopped.log] == [0, 5, 10]
    resumed = pretrain(TEXT, config, out=tmp_path, resume=True, progress=False)
    assert resumed.losses == whole.losses  # bitwise equal floats
    assert [r["val_loss"] for r in resumed.log] == [r["val_loss"] for r in whole.log]
    for a, b in zip(resumed.model.parameters(), whole.model.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=f"optimizer: '{name}' -> 'sgd'"):
        pretrain(TEXT, tiny(optimizer="sgd", lr=3e-3), out=tmp_path, resume=True, progress=False)


def test_optimizer_is_checked_and_is_a_command_line_option():
    with pytest.raises(ValueError, match="optimizer must be one of 'adamw', 'sgd', 'lion'"):
        TrainConfig(optimizer="adam")
    args = _parser().parse_args(["--data", "x", "--out", "y", "--optimizer", "muon"])
    assert args.optimizer == "muon"
    with pytest.raises(SystemExit):
        _parser().parse_args(["--data", "x", "--out", "y", "--optimizer", "adam"])


# -- the statistics --------------------------------------------------------------------------


def test_welch_t_test_against_closed_forms():
    # Equal variances and sizes 2: ν = 2, where Student's CDF is 1/2 + t / (2 √(2 + t²)).
    t, df, p = capstone.welch_t_test([0.0, 2.0], [3.0, 5.0])
    assert t == pytest.approx(-3 / math.sqrt(2)) and df == pytest.approx(2.0)
    assert p == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), rel=1e-8)
    # The tabulated two-sided 5% critical value of t with 4 degrees of freedom is 2.776445.
    assert 2 * capstone._t_sf(2.776445, 4.0) == pytest.approx(0.05, rel=1e-5)
    # Unequal variances: the Welch-Satterthwaite ν computed from its definition.
    a, b = np.array([1.0, 1.1, 0.9, 1.05]), np.array([1.3, 1.9, 1.6])
    va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 3
    t, df, p = capstone.welch_t_test(a, b)
    assert df == pytest.approx((va + vb) ** 2 / (va**2 / 3 + vb**2 / 2))
    assert t == pytest.approx((a.mean() - b.mean()) / math.sqrt(va + vb))
    assert p == pytest.approx(2 * capstone._t_sf(abs(t), df))
    # Many degrees of freedom: the normal distribution, whose 2.5% point is 1.959964.
    assert capstone._t_sf(1.959964, 1e7) == pytest.approx(0.025, rel=1e-4)
    with pytest.raises(ValueError, match="at least 2 values"):
        capstone.welch_t_test([1.0], [2.0, 3.0])


# -- the sweep and the demo ------------------------------------------------------------------


@pytest.fixture
def small_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMTRAIN_CACHE", str(tmp_path))
    config = dataclasses.replace(
        capstone.CAPSTONE_CONFIG, n_layer=1, max_iters=8, warmup_iters=2, eval_interval=4
    )
    kw = dict(optimizers=("adamw", "muon"), exponents=(-1, 0), seeds=(0, 1), n_chars=5000)
    return config, kw


def test_the_sweep_is_the_trainer_on_each_configuration_and_is_cached(small_sweep):
    config, kw = small_sweep
    sweep = capstone.optimizer_sweep(config, **kw)
    assert sweep.val_loss.shape == (2, 2, 2) and sweep.losses.shape == (2, 2, 2, 8)
    assert sweep.lrs[1, 0] == pytest.approx(capstone.LR_REFERENCE["muon"] / 2)
    # The sweep trains on one thread (the sums of a matrix product depend on the split).
    with capstone._one_thread():
        direct = pretrain(
            synthetic_corpus(5000, seed=0),
            dataclasses.replace(config, optimizer="muon", lr=sweep.lrs[1, 0], seed=1),
            progress=False,
        )
    assert (
        sweep.val_loss[1, 0, 1] == direct.val_loss and list(sweep.losses[1, 0, 1]) == direct.losses
    )
    again = capstone.optimizer_sweep(config, **kw)  # loaded from the cache: the same numbers
    np.testing.assert_array_equal(again.losses, sweep.losses)
    rows = sweep.table()
    assert [r["mean"] for r in rows] == sorted(r["mean"] for r in rows)
    for row in rows:
        i = sweep.optimizers.index(row["optimizer"])
        assert row["mean"] == pytest.approx(sweep.val_loss[i].mean(axis=1).min())
        assert row["std"] == pytest.approx(np.std(row["values"], ddof=1))


def test_the_demo_shows_the_curves_at_the_chosen_learning_rate(small_sweep):
    config, kw = small_sweep
    demo = capstone.optimizer_capstone_demo(config, **kw)
    sweep = capstone.optimizer_sweep(config, **kw)  # from the cache the demo filled
    first = demo.png()
    demo.set(q=-1)
    assert demo.png() != first
    curve_ax = demo.figure.axes[1]
    line = curve_ax.lines[0]  # adamw, seed 0
    np.testing.assert_allclose(line.get_ydata(), capstone._smooth(sweep.losses[0, 0, 0]))
    assert line.get_ydata()[0] == pytest.approx(sweep.losses[0, 0, 0][0])


def test_exercise_seeds_needed():
    ns = run_solution("optimization/capstone.md", "ex-capstone-seeds")
    # t_W = √(2n) on 2(n − 1) degrees of freedom against the tabulated two-sided 5% points
    # of Student's t: 2.776 (4 df) > √6, 2.447 (6 df) < √8.
    assert ns["n_needed"] == 4
    assert 0.05 < ns["p_of_n"][3] < 0.1 and ns["p_of_n"][4] < 0.05


def test_the_capstone_chapters_comparisons_hold_for_the_full_sweep():
    # The chapter's sweep (cached on disk by the book build): the sentences that compare its
    # rows rest on these inequalities, not on glued values alone.
    sweep = capstone.optimizer_sweep()
    rows = sweep.table()
    gap_all = rows[-1]["mean"] - rows[0]["mean"]
    assert gap_all > 3 * max(r["std"] for r in rows)  # "several times the seed spread"
    assert rows[1]["mean"] - rows[0]["mean"] < gap_all / 3  # "the two best are much closer"
    good = {}
    for i, name in enumerate(sweep.optimizers):
        means = sweep.val_loss[i].mean(axis=1)
        good[name] = int((means <= np.nanmin(means) + 0.02).sum())
    assert good["muon"] == max(good.values())  # "its tolerance"
