"""Training memory: ZeRO's model states, Korthikanti's activations, activation checkpointing,
and the formulas against the bytes a training GPT actually holds."""

import pytest
import torch

from llmtrain.optim import SGD, model_state_bytes
from llmtrain.pretraining import (
    GPT,
    MODEL_PRESETS,
    GPTConfig,
    ModelShape,
    TrainConfig,
    activation_memory,
    configure_optimizer,
    measure_model_states,
    measure_saved_activations,
    model_state_memory,
    parameter_count,
    training_memory,
)


def small_config(**changes) -> GPTConfig:
    shape = dict(vocab_size=65, block_size=64, n_layer=3, n_head=4, n_embd=128)
    return GPTConfig(**{**shape, **changes})


# -- model states: ZeRO's accounting --------------------------------------------------------------


@pytest.mark.algorithm("alg-training-memory")
def test_zero_stages_reproduce_figure_1_of_the_zero_paper():
    # Rajbhandari et al. (2020), Fig. 1: Ψ = 7.5B, N_d = 64, K = 12 (mixed-precision Adam).
    gb = [
        sum(model_state_memory(7_500_000_000, zero_stage=stage, dp_degree=64)) / 1e9
        for stage in range(4)
    ]
    assert [round(x, 1) for x in gb] == [120.0, 31.4, 16.6, 1.9]
    assert gb == pytest.approx([120.0, 30 + 90 / 64, 15 + 105 / 64, 120 / 64], rel=1e-12)


@pytest.mark.algorithm("alg-training-memory")
@pytest.mark.parametrize(
    "precision, optimizer, per_parameter",
    [
        ("mixed", "adamw", (2, 2, 12)),
        ("fp32", "adamw", (4, 4, 8)),
        ("fp32", "sgd_momentum", (4, 4, 4)),
        ("mixed", "sgd", (2, 2, 4)),
        ("fp32", "sgd", (4, 4, 0)),
    ],
)
def test_bytes_per_parameter_by_precision_and_optimizer(precision, optimizer, per_parameter):
    n = 1000
    parts = model_state_memory(n, precision=precision, optimizer=optimizer)
    assert parts == tuple(float(k * n) for k in per_parameter)
    # Part I's count of optimizer state gives the same total.
    mixed = precision == "mixed"
    assert sum(parts) == model_state_bytes(optimizer, [(n,)], mixed_precision=mixed)


@pytest.mark.algorithm("alg-training-memory")
def test_zero_stages_shard_optimizer_then_gradients_then_weights():
    Ψ, N_d = 10**9, 8
    full = model_state_memory(Ψ)
    for stage, sharded in enumerate([(), (2,), (1, 2), (0, 1, 2)]):
        parts = model_state_memory(Ψ, zero_stage=stage, dp_degree=N_d)
        expected = tuple(x / N_d if i in sharded else x for i, x in enumerate(full))
        assert parts == pytest.approx(expected, rel=1e-15)
    # One device: every stage holds everything.
    assert all(model_state_memory(Ψ, zero_stage=k) == full for k in range(4))


@pytest.mark.algorithm("alg-training-memory")
@pytest.mark.parametrize("optimizer", ["adamw", "sgd_momentum"])
def test_model_states_measured_after_a_training_step_equal_the_formula(optimizer):
    torch.manual_seed(0)
    config = small_config()
    model = GPT(config)
    if optimizer == "adamw":
        opt, _ = configure_optimizer(model, TrainConfig())
    else:
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    idx = torch.randint(65, (2, 64))
    model(idx, idx)[1].backward()
    opt.step()
    measured = measure_model_states(model, opt)
    formula = training_memory(config, 64, 2, precision="fp32", optimizer=optimizer)
    Ψ = parameter_count(config).total
    assert measured["parameters"] == formula.parameters == 4 * Ψ
    assert measured["gradients"] == formula.gradients == 4 * Ψ
    assert measured["optimizer"] == formula.optimizer == (8 if optimizer == "adamw" else 4) * Ψ


# -- model shapes ---------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-training-memory")
@pytest.mark.parametrize(
    "name, published",
    [
        # The parameter counts of the released checkpoints (Hugging Face model cards/configs).
        ("GPT-2 small (124M)", 124_439_808),
        ("GPT-2 medium (350M)", 354_823_168),
        ("GPT-2 large (774M)", 774_030_080),
        ("GPT-2 XL (1.5B)", 1_557_611_200),
        ("Llama 2 7B", 6_738_415_616),
        ("Llama 2 13B", 13_015_864_320),
        ("Llama 2 70B", 68_976_648_192),
        ("Llama 3 8B", 8_030_261_248),
        ("Llama 3 70B", 70_553_706_496),
    ],
)
def test_preset_parameter_counts_match_the_released_models(name, published):
    assert MODEL_PRESETS[name].num_parameters == published
    # ...and the calculator charges 16 bytes for each of them in mixed-precision Adam.
    states = training_memory(name, 128, 1)
    assert states.parameters + states.gradients + states.optimizer == 16 * published


def test_gpt3_preset_has_175_billion_parameters_and_published_widths():
    gpt3 = MODEL_PRESETS["GPT-3 175B"]
    assert gpt3.num_parameters == pytest.approx(175e9, rel=0.005)
    assert gpt3.n_embd // gpt3.n_head == 128  # d_head of Table 2.1
    assert [MODEL_PRESETS[k].d_ff for k in ("Llama 3 8B", "Llama 3 70B")] == [14336, 28672]


@pytest.mark.parametrize(
    "changes",
    [{}, {"bias": True}, {"mlp": "swiglu", "norm": "rmsnorm", "position": "rope"},
     {"tie_embeddings": False, "bias": True, "mlp": "swiglu"}],
)  # fmt: skip
def test_shape_of_a_config_counts_what_the_built_model_has(changes):
    config = small_config(**changes)
    n = ModelShape.from_config(config).num_parameters
    assert n == parameter_count(config).total == GPT(config).num_parameters()


# -- activations ----------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-training-memory")
@pytest.mark.parametrize("s, b", [(2048, 1), (1024, 4)])
def test_activation_count_is_korthikantis_for_a_gpt_layer(s, b):
    # Korthikanti et al. (2022), 16-bit activations, a GPT-3 layer: s b h (34 + 5 a s / h),
    # 34 s b h with selective recomputation, 2 s b h with full recomputation.
    gpt3 = MODEL_PRESETS["GPT-3 175B"]
    h, a = gpt3.n_embd, gpt3.n_head
    count = {r: activation_memory(gpt3, s, b, recompute=r).per_layer for r in
             ("none", "selective", "full")}  # fmt: skip
    assert count["none"] == s * b * h * (34 + 5 * a * s / h)
    assert count["selective"] == 34 * s * b * h
    assert count["full"] == 2 * s * b * h
    output = activation_memory(gpt3, s, b).output
    assert output == s * b * (4 * h + 4 * gpt3.vocab_size)


@pytest.mark.algorithm("alg-training-memory")
@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("checkpointed", [False, True])
def test_saved_activations_of_the_book_gpt_match_the_formula_within_1_percent(
    attention, mlp, checkpointed
):
    torch.manual_seed(0)
    config = small_config(attention=attention, mlp=mlp, checkpoint_activations=checkpointed)
    idx = torch.randint(65, (4, 64))
    measured = measure_saved_activations(GPT(config), idx, idx)
    formula = activation_memory(
        config, 64, 4, bytes_per_value=4, dropout=False,
        attention="fused" if attention == "sdpa" else "explicit",
        recompute="full" if checkpointed else "none",
    )  # fmt: skip
    # The formula leaves out terms of size s b (norm statistics, token ids, SDPA's
    # log-sum-exp): they make the measurement larger by well under 1%.
    assert 0 < measured - formula.total < 0.01 * formula.total


def test_the_book_layer_keeps_16_values_per_token_and_width():
    # fp32, no dropout, SDPA: 64 bytes = 16 values per s b h per layer, found by measuring
    # two depths (the difference is one layer).
    torch.manual_seed(0)
    idx = torch.randint(65, (2, 32))
    one, two = (measure_saved_activations(GPT(small_config(n_layer=n)), idx, idx) for n in (1, 2))
    s, b, h, a = 32, 2, 128, 4
    small = 4 * s * b * (4 + a)  # two norms' mean and 1/σ, and the log-sum-exp of each head
    assert two - one == 64 * s * b * h + small


# -- activation checkpointing ---------------------------------------------------------------------


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_checkpointing_gives_identical_loss_and_gradients_and_saves_less(dropout):
    results = []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        config = small_config(dropout=dropout, checkpoint_activations=checkpointed)
        model = GPT(config)
        idx = torch.randint(65, (3, 64))
        saved = measure_saved_activations(model, idx, idx)
        torch.manual_seed(1)  # the same dropout masks in both runs
        _, loss = model(idx, idx)
        loss.backward()
        results.append((saved, loss, [p.grad for p in model.parameters()]))
    (saved0, loss0, grads0), (saved1, loss1, grads1) = results
    assert torch.equal(loss0, loss1)
    assert all(torch.equal(g0, g1) for g0, g1 in zip(grads0, grads1, strict=True))
    assert saved1 < 0.2 * saved0


def test_checkpointing_is_off_by_default_and_leaves_inference_alone():
    assert GPTConfig(vocab_size=10, block_size=8).checkpoint_activations is False
    torch.manual_seed(0)
    plain = GPT(small_config())
    checkpointed = GPT(small_config(checkpoint_activations=True))
    checkpointed.load_state_dict(plain.state_dict())
    idx = torch.randint(65, (1, 5))
    assert torch.equal(
        plain.generate(idx, 6, temperature=0), checkpointed.generate(idx, 6, temperature=0)
    )
    with pytest.raises(TypeError, match="checkpoint_activations"):
        small_config(checkpoint_activations=1)


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"zero_stage": 4}, ValueError, "zero_stage"),
        ({"zero_stage": -1}, ValueError, "zero_stage"),
        ({"dp_degree": 0}, ValueError, "dp_degree"),
        ({"precision": "fp8"}, ValueError, "precision"),
        ({"optimizer": "adafactor"}, ValueError, "optimizer"),
        ({"recompute": "some"}, ValueError, "recompute"),
        ({"model": "GPT-5"}, ValueError, "model"),
        ({"model": 7}, TypeError, "model"),
        ({"seq_len": 0}, ValueError, "seq_len"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, name):
    args = {"model": "GPT-2 small (124M)", "seq_len": 1024, "micro_batch": 1, **kwargs}
    with pytest.raises(error, match=name):
        training_memory(args.pop("model"), args.pop("seq_len"), args.pop("micro_batch"), **args)


# -- the chapter's demo and exercises ------------------------------------------------------------


def test_the_demo_shows_the_calculator_and_moves_fast():
    import time

    from llmtrain.demos.pretraining.memory import PRESET_NAMES, memory_demo

    demo = memory_demo()
    demo.png()
    assert demo.result == training_memory(PRESET_NAMES[0], 1024, 4, dp_degree=8)
    demo.set(preset=len(PRESET_NAMES) - 1, zero_stage=3, dp_log2=6, recompute=2)
    expected = training_memory(
        PRESET_NAMES[-1], 1024, 4, zero_stage=3, dp_degree=64, recompute="full"
    )
    assert demo.result == expected
    start = time.perf_counter()
    demo.set(seq_len=4096)
    demo.png()
    assert time.perf_counter() - start < 2.0


def test_exercise_solutions():
    from chapters import run_solution

    chapter = "pretraining/memory.md"
    ns = run_solution(chapter, "ex-memory-sgd")
    assert (ns["sgd_bytes"], ns["sgd_zero2"]) == (12.0, 3.25)
    assert run_solution(chapter, "ex-memory-gpus")["min_gpus"] == 15
    # 2L + 1 = 5 norms, each keeping one more s b h tensor and one fewer s b statistic.
    extra = run_solution(chapter, "ex-memory-rmsnorm")["extra_per_sbh"]
    assert extra == pytest.approx(5 - 5 / 128, abs=1e-9)
