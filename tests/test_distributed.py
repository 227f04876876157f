"""Training on many processes: real two-process runs under torchrun (gloo, loopback) against
single-process references, and the simulations of ring all-reduce and pipeline schedules."""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from llmtrain.objectives import synthetic_corpus
from llmtrain.pretraining import (
    GPT,
    GPTConfig,
    TrainConfig,
    configure_optimizer,
    model_state_memory,
    pipeline_bubble,
    pipeline_schedule,
    pretrain,
    ring_all_reduce,
    train_step,
    zero_communication,
)
from llmtrain.pretraining.gpt import MLP, CausalSelfAttention, rope_angles

TEXT = synthetic_corpus(30_000, seed=0)
# The resumed run: stopped by two processes at update 8, continued by one to 12.
RUN = dict(
    n_layer=1,
    n_head=2,
    n_embd=32,
    block_size=16,
    batch_size=4,
    grad_accum=2,
    eval_iters=2,
    max_iters=12,
    eval_interval=4,
    warmup_iters=2,
)
TINY = TrainConfig(n_layer=1, n_head=2, n_embd=32, block_size=16, max_iters=10, warmup_iters=1)
V = 24


def global_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, V, (8, TINY.block_size), generator=g)
    return x, torch.roll(x, -1, dims=1)


def mlp_config(mlp):
    return GPTConfig(
        vocab_size=V, block_size=16, n_layer=1, n_head=2, n_embd=16, bias=True, mlp=mlp
    )


# Attention split by heads: without RoPE (learned positions) and with, and both ways the GPT
# computes attention.
ATTENTION_CASES = [("learned", "sdpa"), ("rope", "explicit"), ("rope", "sdpa")]


def attention_config(position, attention):
    return GPTConfig(
        vocab_size=V,
        block_size=16,
        n_layer=1,
        n_head=4,
        n_embd=16,
        bias=True,
        position=position,
        attention=attention,
    )


def attention_input(position):
    """The input x of shape (3, 6, 16) and the block's RoPE argument for its 6 positions."""
    x = torch.randn(3, 6, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    angles = rope_angles(6, 4).double()
    rope = (angles.cos(), angles.sin()) if position == "rope" else None
    return x.requires_grad_(True), rope


# The worker every process of the torchrun launch runs: what it computes, process 0 saves.
WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    sys.path.insert(0, sys.argv[2])
    from test_distributed import RUN, TEXT, TINY, V, global_batch, mlp_config
    from test_distributed import ATTENTION_CASES, attention_config, attention_input
    from llmtrain.pretraining import GPT, GPTConfig, TensorParallelAttention, TensorParallelMLP
    from llmtrain.pretraining import TrainConfig, configure_optimizer, pretrain, train_step
    from llmtrain.pretraining.gpt import MLP, CausalSelfAttention
    from llmtrain.pretraining.trainer import main

    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    r, N = dist.get_rank(), dist.get_world_size()
    results = {}

    # DDP on this process's half of the global batch, as two micro-batches of 2.
    x, y = global_batch()
    mine = slice(r * 4, (r + 1) * 4)
    def two_steps(wrap):
        torch.manual_seed(0)
        model = GPT(TINY.model_config(V)).double()
        net = wrap(model)
        optimizer, scheduler = configure_optimizer(model, TINY)
        batches = [(x[mine][:2], y[mine][:2]), (x[mine][2:], y[mine][2:])]
        losses = torch.tensor(
            [train_step(net, optimizer, scheduler, batches, TINY) for _ in range(2)],
            dtype=torch.float64,
        )
        if wrap is shard:  # train_step averages the loss over processes for DDP only
            dist.all_reduce(losses)
            losses /= N
        return model, losses.tolist()
    # FSDP (fully_shard: ZeRO stage 3) on the same shares.
    def shard(model):
        for block in model.transformer.h:
            fully_shard(block)
        return fully_shard(model)

    model, results["ddp_losses"] = two_steps(DistributedDataParallel)
    results["ddp"] = {k: v.clone() for k, v in model.state_dict().items()}
    model, results["fsdp_losses"] = two_steps(shard)
    results["fsdp"] = {k: v.full_tensor() for k, v in model.state_dict().items()}

    # Megatron's MLP, split over the two processes, on the same input.
    for kind in ("gelu", "swiglu"):
        torch.manual_seed(1)
        mlp = MLP(mlp_config(kind)).double()
        tp = TensorParallelMLP(mlp)
        h = torch.randn(3, 5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        h.requires_grad_(True)
        out_tp = tp(h)
        (out_tp * torch.arange(16.0)).sum().backward()
        results[kind] = {
            "out": out_tp.detach(),
            "grad_in": h.grad,
            "fc_weight": tp.c_fc.weight.detach(),
            "fc_grad": tp.c_fc.weight.grad,
            "proj_grad": tp.c_proj.weight.grad,
            "proj_bias_grad": tp.c_proj.bias.grad,
        }

    # Megatron's attention, two of the four heads on each process; every process's shards.
    own = {}
    for case in ATTENTION_CASES:
        torch.manual_seed(3)
        tp = TensorParallelAttention(CausalSelfAttention(attention_config(*case)).double())
        a, rope = attention_input(case[0])
        out_tp = tp(a, rope)
        (out_tp * torch.arange(16.0)).sum().backward()
        own[case] = {
            "out": out_tp.detach(),
            "grad_in": a.grad,
            "qkv_weight": tp.c_attn.weight.detach(),
            "qkv_grad": tp.c_attn.weight.grad,
            "qkv_bias_grad": tp.c_attn.bias.grad,
            "proj_grad": tp.c_proj.weight.grad,
            "proj_bias_grad": tp.c_proj.bias.grad,
        }
    results["attention"] = [None] * N
    dist.all_gather_object(results["attention"], own)
    try:  # 3 heads of width 4: the 12 features would split in two, the heads would not
        TensorParallelAttention(CausalSelfAttention(GPTConfig(V, 16, n_head=3, n_embd=12)))
    except ValueError as error:
        results["attention_indivisible"] = str(error)

    # The trainer: a batch the processes cannot share, then a run stopped at update 8.
    try:
        pretrain(TEXT, TrainConfig(**{**RUN, "batch_size": 3, "grad_accum": 1}), progress=False)
    except ValueError as error:
        results["indivisible"] = str(error)
    stopped = pretrain(
        TEXT, TrainConfig(**RUN), out=out / "run", progress=False,
        callback=lambda record: record["iter"] == 8,
    )
    results["stopped_losses"] = stopped.losses
    if r == 0:
        torch.save(results, out / "results.pt")

    # The command line: only process 0 prints and writes.
    dist.barrier()
    args = ["--data", str(out / "text.txt"), "--out", str(out / "cli"), "--quiet"]
    args += ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16"]
    args += ["--batch-size", "4", "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "2"]
    args += ["--warmup-iters", "1"]
    sys.exit(main(args))
    """
)


def torchrun(script, *args, timeout=150):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """One torchrun launch of two processes; the tests below read what it computed."""
    out = tmp_path_factory.mktemp("distributed")
    (out / "text.txt").write_text(TEXT[:5000], encoding="utf-8")
    script = out / "worker.py"
    script.write_text(WORKER)
    done = torchrun(script, out, os.path.dirname(__file__))
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done, torch.load(out / "results.pt", weights_only=False)


def one_process(batches):
    torch.manual_seed(0)
    model = GPT(TINY.model_config(V)).double()
    optimizer, scheduler = configure_optimizer(model, TINY)
    losses = [train_step(model, optimizer, scheduler, batches, TINY) for _ in range(2)]
    return model.state_dict(), losses


@pytest.mark.algorithm("alg-data-parallel-step")
@pytest.mark.parametrize("engine", ["ddp", "fsdp"])
def test_two_processes_equal_one_process_and_gradient_accumulation(launched, engine):
    _, _, results = launched
    x, y = global_batch()
    whole = one_process([(x, y)])
    accumulated = one_process([(x[2 * j : 2 * j + 2], y[2 * j : 2 * j + 2]) for j in range(4)])
    for state, losses in (whole, accumulated):
        assert results[f"{engine}_losses"] == pytest.approx(losses, rel=1e-12)
        for name, value in state.items():
            torch.testing.assert_close(results[engine][name], value, rtol=1e-10, atol=1e-12)
    # Two updates did move the weights: the comparison is not between two initialisations.
    torch.manual_seed(0)
    init = GPT(TINY.model_config(V)).double().state_dict()
    assert not torch.allclose(results[engine]["lm_head.weight"], init["lm_head.weight"])


@pytest.mark.algorithm("alg-data-parallel-step")
def test_a_checkpoint_of_two_processes_resumes_on_one(launched):
    out, _, results = launched
    config = TrainConfig(**RUN)
    whole = pretrain(TEXT, config, progress=False)
    assert results["stopped_losses"] == pytest.approx(whole.losses[:8], rel=1e-5)
    state = torch.load(out / "run" / "ckpt.pt", weights_only=True)
    assert state["iter"] == 8 and set(state["model"]) == set(whole.model.state_dict())
    resumed = pretrain(TEXT, config, out=out / "run", resume=True, progress=False)
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-5)
    assert [r["iter"] for r in resumed.log] == [0, 4, 8, 12]
    assert [r["val_loss"] for r in resumed.log] == pytest.approx(
        [r["val_loss"] for r in whole.log], rel=1e-5
    )
    for a, b in zip(resumed.model.parameters(), whole.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_batch_the_processes_cannot_share_is_refused(launched):
    _, _, results = launched
    assert results["indivisible"].startswith(
        "the global batch of batch_size * grad_accum = 3 * 1 = 3 sequences must be divisible "
        "by the number of processes (2)"
    )


def test_under_torchrun_only_process_0_prints_and_writes(launched):
    out, done, _ = launched
    assert done.stdout.count("final: train loss") == 1
    files = sorted(p.name for p in (out / "cli").iterdir())
    assert files == ["ckpt.pt", "log.jsonl", "loss.png", "tokenizer.json"]
    records = [json.loads(line) for line in (out / "cli" / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [0, 2, 4]


def test_without_world_size_there_is_no_process_group():
    assert "WORLD_SIZE" not in os.environ
    pretrain(TEXT, TrainConfig(**{**RUN, "max_iters": 1, "warmup_iters": 0}), progress=False)
    assert not torch.distributed.is_initialized()


# -- tensor parallelism --------------------------------------------------------------------------


@pytest.mark.algorithm("alg-tensor-parallel-mlp")
@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_the_tensor_parallel_mlp_equals_the_whole_one(launched, kind):
    """Process 0's TensorParallelMLP (a ColumnParallelLinear, then a RowParallelLinear) in
    the worker: its output, the input's gradient and its shards' gradients."""
    _, _, results = launched
    got = results[kind]  # process 0's
    torch.manual_seed(1)
    mlp = MLP(mlp_config(kind)).double()
    h = torch.randn(3, 5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    h.requires_grad_(True)
    out = mlp(h)
    (out * torch.arange(16.0)).sum().backward()
    torch.testing.assert_close(got["out"], out.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got["grad_in"], h.grad, rtol=1e-12, atol=1e-12)
    hidden = mlp.c_proj.weight.shape[1]
    # Process 0 holds the first half of the hidden units (of each of SwiGLU's gate and value).
    rows = torch.arange(hidden // 2)
    if kind == "swiglu":
        rows = torch.cat([rows, rows + hidden])
    torch.testing.assert_close(got["fc_weight"], mlp.c_fc.weight[rows].detach())
    torch.testing.assert_close(got["fc_grad"], mlp.c_fc.weight.grad[rows], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        got["proj_grad"], mlp.c_proj.weight.grad[:, : hidden // 2], rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(got["proj_bias_grad"], mlp.c_proj.bias.grad)


@pytest.mark.algorithm("alg-tensor-parallel-attention")
@pytest.mark.parametrize("position, attention", ATTENTION_CASES)
def test_the_tensor_parallel_attention_equals_the_whole_one(launched, position, attention):
    """Both processes' TensorParallelAttention in the worker (Q, K, V column-parallel by
    heads, the output projection row-parallel): the output, the input's gradient and every
    shard's gradients."""
    _, _, results = launched
    torch.manual_seed(3)
    attn = CausalSelfAttention(attention_config(position, attention)).double()
    x, rope = attention_input(position)
    out = attn(x, rope)
    (out * torch.arange(16.0)).sum().backward()
    d, N = 16, len(results["attention"])
    assert N == 2
    close = dict(rtol=1e-10, atol=1e-12)
    for r, shards in enumerate(results["attention"]):
        got = shards[position, attention]
        torch.testing.assert_close(got["out"], out.detach(), **close)
        torch.testing.assert_close(got["grad_in"], x.grad, **close)
        # Process r holds heads 2r and 2r + 1: features 8r .. 8r + 7 of each of Q, K and V.
        heads = torch.arange(r * d // N, (r + 1) * d // N)
        rows = torch.cat([heads, heads + d, heads + 2 * d])
        torch.testing.assert_close(got["qkv_weight"], attn.c_attn.weight[rows].detach())
        torch.testing.assert_close(got["qkv_grad"], attn.c_attn.weight.grad[rows], **close)
        torch.testing.assert_close(got["qkv_bias_grad"], attn.c_attn.bias.grad[rows], **close)
        torch.testing.assert_close(got["proj_grad"], attn.c_proj.weight.grad[:, heads], **close)
        torch.testing.assert_close(got["proj_bias_grad"], attn.c_proj.bias.grad, **close)


def test_heads_the_processes_cannot_share_are_refused(launched):
    _, _, results = launched
    assert results["attention_indivisible"] == (
        "attn.config.n_head must be divisible by the 2 processes of the group, got n_head=3"
    )


# -- ring all-reduce -------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-ring-all-reduce")
@pytest.mark.parametrize("p", [1, 2, 3, 5, 8])
def test_ring_all_reduce_sums_and_sends_2_p_minus_1_over_p_of_the_data(p):
    rng = np.random.default_rng(p)
    arrays = [rng.normal(size=(4, 10)) for _ in range(p)]  # 40 values: divisible by 1, 2, 5, 8
    ring = ring_all_reduce(arrays)
    for result in ring.results:
        np.testing.assert_allclose(result, np.sum(arrays, axis=0), rtol=1e-12)
    if 40 % p == 0:
        assert ring.bytes_sent == [2 * (p - 1) * 40 * 8 / p] * p
    else:  # uneven chunks: still 2(p - 1) of them, each of 40 // p or 40 // p + 1 values
        assert all(abs(b - 2 * (p - 1) * 40 * 8 / p) <= 2 * (p - 1) * 8 for b in ring.bytes_sent)
    assert ring.steps == 2 * (p - 1)


def test_ring_all_reduce_refuses_arrays_of_different_shapes():
    with pytest.raises(ValueError, match=r"arrays\[1\] has shape \(3,\)"):
        ring_all_reduce([np.zeros(2), np.zeros(3)])


# -- pipeline schedules ----------------------------------------------------------------------------


@pytest.mark.algorithm("alg-1f1b")
@pytest.mark.parametrize("kind", ["gpipe", "1f1b"])
def test_pipeline_schedules_have_the_bubble_of_the_closed_form(kind):
    for p in (1, 2, 3, 4, 6):
        for m in (1, 2, 4, 7, 16):
            schedule = pipeline_schedule(p, m, kind)
            assert schedule.steps == 2 * (m + p - 1)
            assert schedule.bubble == pytest.approx(float(pipeline_bubble(p, m)), abs=1e-12)
            # Every stage runs each micro-batch's forward once and its backward once,
            # the forward before the backward.
            for row in schedule.grid:
                ops = [c for c in row if c is not None]
                assert sorted(ops) == sorted((j, f) for j in range(m) for f in "FB")
                assert all(row.index((j, "F")) < row.index((j, "B")) for j in range(m))


@pytest.mark.algorithm("alg-1f1b")
def test_1f1b_keeps_at_most_p_micro_batches_of_activations_where_gpipe_keeps_m():
    p, m = 4, 12
    assert pipeline_schedule(p, m, "gpipe").peak_activations == [m] * p
    assert pipeline_schedule(p, m, "1f1b").peak_activations == [4, 3, 2, 1]
    first = pipeline_schedule(p, m, "1f1b").timeline[:4]
    assert first == [
        [(0, 0, "F")],
        [(0, 1, "F"), (1, 0, "F")],
        [(0, 2, "F"), (1, 1, "F"), (2, 0, "F")],
        [(0, 3, "F"), (1, 2, "F"), (2, 1, "F"), (3, 0, "F")],
    ]
    assert pipeline_bubble(8, 32) == pytest.approx(7 / 39)


def test_pipeline_arguments_are_checked():
    with pytest.raises(ValueError, match=r"m must be an integer in \[1"):
        pipeline_schedule(2, 0)
    with pytest.raises(ValueError, match="kind must be 'gpipe' or '1f1b'"):
        pipeline_schedule(2, 2, "zb")


# -- ZeRO --------------------------------------------------------------------------------------


def test_zero_stages_memory_and_communication_match_the_paper():
    # ZeRO's figure 1: 7.5 billion parameters, 64 devices, mixed-precision Adam (K = 12).
    psi, N = 7_500_000_000, 64
    gb = [sum(model_state_memory(psi, zero_stage=s, dp_degree=N)) / 1e9 for s in range(4)]
    assert gb == pytest.approx([120, 31.4, 16.6, 1.88], rel=0.005)
    assert [zero_communication(psi, s) / psi for s in range(4)] == [2, 2, 2, 3]
    assert math.isclose(zero_communication(10, 0), 20)


# -- the chapter's demo and exercises ------------------------------------------------------------


def test_the_pipeline_demo_shows_the_simulated_schedules():
    from llmtrain.demos.pretraining.distributed import pipeline_demo

    demo = pipeline_demo()
    assert demo.png()[:8] == b"\x89PNG\r\n\x1a\n"
    demo.set(p=3, m=5)
    assert demo.result["1f1b"].steps == 14 and demo.result["gpipe"].bubble == pytest.approx(2 / 7)
    assert [demo.result[k].peak_activations[0] for k in ("gpipe", "1f1b")] == [5, 3]


def test_exercise_solutions():
    from chapters import run_solution

    chapter = "pretraining/distributed.md"
    bubble = run_solution(chapter, "ex-distributed-bubble")
    assert bubble["K"] == 133 and bubble["held"] == {"gpipe": 133, "1f1b": 8}
    traffic = run_solution(chapter, "ex-distributed-traffic")
    assert traffic["ring_bytes"] == pytest.approx(2 * 31 / 32 * 3e9)
    assert traffic["zero3_bytes"] == pytest.approx(3 * 31 / 32 * 3e9)
