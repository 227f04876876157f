"""The GPT: attention against PyTorch's, causality, norms, RoPE, SwiGLU, initialisation, and
the parameter and FLOP formulas against the built model."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from llmtrain._threads import one_torch_thread
from llmtrain.pretraining import (
    GPT,
    GPTConfig,
    RMSNorm,
    causal_self_attention,
    flops_per_token,
    parameter_count,
    rope_rotate,
)
from llmtrain.pretraining.gpt import rope_angles

f64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: a second thread only adds waiting, the more so on a busy machine."""
    with one_torch_thread():
        yield


# Every combination of the options, on a tiny shape.
OPTIONS = [
    dict(position=pos, norm=norm, mlp=mlp, attention=att, bias=bias, tie_embeddings=tie)
    for pos, norm, mlp, att, bias, tie in itertools.product(
        ("learned", "rope"),
        ("layernorm", "rmsnorm"),
        ("gelu", "swiglu"),
        ("sdpa", "explicit"),
        (False, True),
        (True, False),
    )
]


def tiny(seed=0, dtype=f64, **options):
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=13, block_size=12, n_layer=2, n_head=2, n_embd=16, **options)
    return GPT(config).to(dtype).eval()


# -- attention --------------------------------------------------------------------------------


def naive_attention(q, k, v):
    """One query at a time, one head at a time, over the keys it may see: no mask at all."""
    B, H, T, d_h = q.shape
    out = torch.zeros_like(q)
    for b, h, i in itertools.product(range(B), range(H), range(T)):
        scores = torch.stack([q[b, h, i] @ k[b, h, j] / math.sqrt(d_h) for j in range(i + 1)])
        w = torch.softmax(scores, dim=0)
        out[b, h, i] = sum(w[j] * v[b, h, j] for j in range(i + 1))
    return out


@pytest.mark.algorithm("alg-causal-self-attention")
def test_causal_self_attention_equals_a_per_query_loop_and_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g, dtype=f64) for _ in range(3))
    y = causal_self_attention(q, k, v)
    torch.testing.assert_close(y, naive_attention(q, k, v), rtol=1e-12, atol=1e-12)
    sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(y, sdpa, rtol=1e-12, atol=1e-12)


@pytest.mark.algorithm("alg-causal-self-attention")
def test_causal_self_attention_with_cached_keys_equals_the_last_rows():
    """Queries 5..6 against keys 0..6 (start=5) are the last two rows of the full attention."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g, dtype=f64) for _ in range(3))
    full = causal_self_attention(q, k, v)
    last = causal_self_attention(q[:, :, 5:], k, v, start=5)
    torch.testing.assert_close(last, full[:, :, 5:], rtol=1e-12, atol=1e-12)


@pytest.mark.algorithm("alg-causal-self-attention")
def test_attention_module_equals_torch_multihead_attention_with_copied_weights():
    model = tiny(attention="explicit")
    attn = model.transformer.h[0].attn
    d, H = model.config.n_embd, model.config.n_head
    mha = torch.nn.MultiheadAttention(d, H, bias=False, batch_first=True, dtype=f64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.c_attn.weight)  # rows: Q, K, V, as in c_attn's split
        mha.out_proj.weight.copy_(attn.c_proj.weight)
    x = torch.randn(3, 9, d, dtype=f64)
    blocked = torch.ones(9, 9, dtype=torch.bool).triu(1)  # True = may not attend
    expected, _ = mha(x, x, x, attn_mask=blocked, need_weights=False)
    torch.testing.assert_close(attn(x), expected, rtol=1e-10, atol=1e-12)
    # The explicit module uses causal_self_attention; SDPA gives the same numbers.
    model.config.attention = "sdpa"
    torch.testing.assert_close(attn(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.algorithm("alg-gpt-forward")
@pytest.mark.parametrize("options", OPTIONS[::2], ids=lambda o: "-".join(map(str, o.values())))
def test_explicit_and_sdpa_models_give_the_same_logits(options):
    explicit = tiny(**{**options, "attention": "explicit"})
    sdpa = GPT(GPTConfig(**{**explicit.config.to_dict(), "attention": "sdpa"})).to(f64).eval()
    sdpa.load_state_dict(explicit.state_dict())
    idx = torch.randint(0, 13, (2, 12))
    torch.testing.assert_close(sdpa(idx)[0], explicit(idx)[0], rtol=1e-10, atol=1e-10)


@pytest.mark.algorithm("alg-gpt-forward")
def test_changing_a_token_never_changes_the_logits_before_it():
    g = torch.Generator().manual_seed(2)
    for options in OPTIONS[::4]:  # every position, norm, MLP and attention (bias, tying: no role)
        model = tiny(**options)
        idx = torch.randint(0, 13, (1, 12), generator=g)
        logits, _ = model(idx)
        for t in range(11):  # change token t + 1
            changed = idx.clone()
            changed[0, t + 1] = (idx[0, t + 1] + 1) % 13
            new, _ = model(changed)
            assert torch.equal(new[0, : t + 1], logits[0, : t + 1]), (options, t)
            assert not torch.allclose(new[0, t + 1], logits[0, t + 1]), (options, t)


@pytest.mark.algorithm("alg-gpt-forward")
def test_loss_at_initialisation_is_close_to_ln_V():
    torch.manual_seed(0)
    V = 512
    for options in ({}, dict(position="rope", norm="rmsnorm", mlp="swiglu")):
        model = GPT(
            GPTConfig(vocab_size=V, block_size=64, n_layer=4, n_head=4, n_embd=64, **options)
        )
        idx, targets = torch.randint(0, V, (2, 8, 64))
        logits, loss = model(idx, targets)
        assert logits.shape == (8, 64, V)
        assert abs(loss.item() - math.log(V)) < 0.1
        ref = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_targets_equal_to_minus_100_are_ignored():
    model = tiny()
    idx = torch.randint(0, 13, (2, 10))
    targets = torch.randint(0, 13, (2, 10))
    targets[:, :4] = -100
    logits, loss = model(idx, targets)
    ref = F.cross_entropy(logits[:, 4:].reshape(-1, 13), targets[:, 4:].reshape(-1))
    torch.testing.assert_close(loss, ref)


@pytest.mark.algorithm("alg-gpt-forward")
def test_cached_forward_equals_the_full_forward():
    from llmtrain.pretraining import KVCache

    for options in OPTIONS[::4]:
        model = tiny(**options)
        idx = torch.randint(0, 13, (2, 12))
        full, _ = model(idx)
        cache = KVCache(model.config, 2, dtype=f64)
        parts = [model(idx[:, :5], cache=cache)[0]]  # a prefill of 5, then 3, then 1 at a time
        parts.append(model(idx[:, 5:8], cache=cache)[0])
        parts += [model(idx[:, t : t + 1], cache=cache)[0] for t in range(8, 12)]
        torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-10, atol=1e-10)
        assert cache.length == 12
        with pytest.raises(ValueError, match="block_size"):
            model(idx[:, :1], cache=cache)


# -- norms, RoPE, MLP ----------------------------------------------------------------------


def test_rmsnorm_equals_torch_rms_norm():
    x = torch.randn(4, 5, 32, dtype=f64)
    norm = RMSNorm(32).to(f64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    expected = F.rms_norm(x, (32,), norm.weight, eps=norm.eps)
    torch.testing.assert_close(norm(x), expected, rtol=1e-12, atol=1e-12)


def test_layernorm_of_the_model_is_the_formula():
    model = tiny(bias=True)
    ln = model.transformer.h[0].ln_1
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(3, 16, dtype=f64)
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias
    torch.testing.assert_close(ln(x), expected, rtol=1e-12, atol=1e-12)
    assert isinstance(tiny(norm="rmsnorm").transformer.ln_f, RMSNorm)


@pytest.mark.algorithm("alg-rope")
def test_rope_is_the_complex_rotation_of_the_roformer_paper():
    T, d_h = 9, 8
    angles = rope_angles(T, d_h).to(f64)
    x = torch.randn(2, T, d_h, dtype=f64)
    y = rope_rotate(x, angles.cos(), angles.sin())
    # Pairs (x_{2i}, x_{2i+1}) as complex numbers, multiplied by e^{i m θ_i}.
    z = torch.complex(x[..., 0::2], x[..., 1::2]) * torch.polar(torch.ones_like(angles), angles)
    torch.testing.assert_close(y, torch.stack((z.real, z.imag), dim=-1).flatten(-2))
    θ = 10000.0 ** (-torch.arange(0, d_h, 2, dtype=f64) / d_h)
    torch.testing.assert_close(angles[3], 3 * θ, rtol=1e-6, atol=0)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-12, atol=1e-12)


@pytest.mark.algorithm("alg-rope")
def test_rope_dot_products_depend_only_on_the_offset():
    T, d_h = 20, 16
    θ = 10000.0 ** (-torch.arange(0, d_h, 2, dtype=f64) / d_h)
    angles = torch.outer(torch.arange(T, dtype=f64), θ)  # in float64, unlike rope_angles
    cos, sin = angles.cos(), angles.sin()
    q, k = torch.randn(2, d_h, dtype=f64)
    # The same q and k placed at every position: row m of Q is q rotated by position m.
    Q = rope_rotate(q.expand(T, d_h), cos, sin)
    K = rope_rotate(k.expand(T, d_h), cos, sin)
    dots = Q @ K.T  # dots[m, n] = <R_m q, R_n k>
    for offset in range(-5, 6):
        diagonal = torch.diagonal(dots, offset)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal))
    assert not torch.allclose(dots[0, 0], dots[0, 3])


def test_swiglu_mlp_is_silu_gate_times_value():
    model = tiny(mlp="swiglu", bias=False)
    mlp = model.transformer.h[0].mlp
    h = model.config.mlp_hidden
    assert h == 48  # 2/3 · 4 · 16 = 42.7, rounded up to a multiple of 8
    W, V = mlp.c_fc.weight[:h], mlp.c_fc.weight[h:]
    x = torch.randn(4, 16, dtype=f64)
    expected = (F.silu(x @ W.T) * (x @ V.T)) @ mlp.c_proj.weight.T
    torch.testing.assert_close(mlp(x), expected, rtol=1e-12, atol=1e-12)
    gelu = tiny(mlp="gelu").transformer.h[0].mlp
    torch.testing.assert_close(
        gelu(x),
        F.gelu(x @ gelu.c_fc.weight.T, approximate="tanh") @ gelu.c_proj.weight.T,
    )


# -- initialisation and tying ----------------------------------------------------------------


def test_initialisation_statistics_follow_gpt2():
    torch.manual_seed(0)
    L = 6
    config = GPTConfig(vocab_size=1000, block_size=64, n_layer=L, n_head=4, n_embd=256, bias=True)
    model = GPT(config)
    residual = torch.cat([p.flatten() for n, p in model.named_parameters() if "c_proj.w" in n])
    assert residual.std().item() == pytest.approx(0.02 / math.sqrt(2 * L), rel=0.01)
    assert abs(residual.mean().item()) < 1e-4
    others = torch.cat(
        [p.flatten() for n, p in model.named_parameters() if p.dim() == 2 and "c_proj" not in n]
    )
    assert others.std().item() == pytest.approx(0.02, rel=0.01)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.all(p == 0), name
        if name.endswith("ln_1.weight") or name.endswith("ln_f.weight"):
            assert torch.all(p == 1), name


def test_tied_embeddings_are_one_tensor():
    tied, untied = tiny(tie_embeddings=True), tiny(tie_embeddings=False)
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    _, loss = tied(torch.randint(0, 13, (1, 5)), torch.randint(0, 13, (1, 5)))
    loss.backward()
    assert tied.transformer.wte.weight.grad is tied.lm_head.weight.grad


def test_parameter_groups_decay_only_the_weight_matrices():
    model = tiny(bias=True, tie_embeddings=False)
    decay, no_decay = model.parameter_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    n_decay = sum(p.numel() for p in decay["params"])
    c = model.config
    assert n_decay == parameter_count(c).attention + parameter_count(
        c
    ).mlp + 13 * 16 - c.n_layer * (4 * 16 + 4 * 16 + 16)
    assert n_decay + sum(p.numel() for p in no_decay["params"]) == model.num_parameters()


# -- the formulas ------------------------------------------------------------------------------


def test_parameter_count_formula_equals_the_model_for_every_option():
    for options in OPTIONS:
        for shape in (dict(n_layer=1, n_head=1, n_embd=8), dict(n_layer=3, n_head=4, n_embd=40)):
            config = GPTConfig(vocab_size=29, block_size=11, **shape, **options)
            model = GPT(config)
            count = parameter_count(config)
            assert count.total == model.num_parameters(), options
            assert count.non_embedding == model.num_parameters(non_embedding=True), options
            attention = sum(p.numel() for n, p in model.named_parameters() if ".attn." in n)
            mlp = sum(p.numel() for n, p in model.named_parameters() if ".mlp." in n)
            assert (count.attention, count.mlp) == (attention, mlp), options


def test_parameter_count_of_gpt2_small_is_the_published_124m():
    """Hugging Face's gpt2 checkpoint has 124,439,808 parameters (wte tied to lm_head)."""
    config = GPTConfig(
        vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=True
    )
    assert parameter_count(config).total == 124_439_808


def count_flops(model, idx, backward=False):
    with FlopCounterMode(display=False) as counter:
        _, loss = model(idx, idx)
        if backward:
            loss.backward()
    return counter.get_total_flops()


def test_flops_per_token_equals_pytorchs_count_of_the_matmuls():
    for options in OPTIONS[1::3]:
        torch.manual_seed(0)
        config = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=24, **options)
        model = GPT(config)
        B, T = 3, 10
        idx = torch.randint(0, 37, (B, T))
        flops = flops_per_token(config, T)
        if config.attention == "explicit":
            assert count_flops(model, idx) == B * T * flops.forward, options
            assert count_flops(model, idx, backward=True) == B * T * flops.training, options
        else:
            # PyTorch's CPU SDPA kernel is not in the FLOP counter's table on some versions.
            assert count_flops(model, idx) in (
                B * T * flops.forward,
                B * T * (flops.forward - flops.attention),
            ), options


def test_flops_per_token_is_2N_plus_attention_plus_unembedding():
    """Without biases, N - norms is the weights of the matrices: 2 FLOPs per weight."""
    config = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    N = parameter_count(config)
    L, T, d, V = 12, 1024, 768, 50257
    flops = flops_per_token(config)
    assert flops.forward == 2 * (N.attention + N.mlp) + 4 * L * T * d + 2 * V * d
    assert flops.training == 3 * flops.forward
    assert flops_per_token(config, 8).attention == 4 * L * 8 * d


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_embd=10, n_head=3), "n_embd"),
        (dict(block_size=0), "block_size"),
        (dict(block_size=-4), "block_size"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(n_layer=0), "n_layer"),
        (dict(dropout=1.0), "dropout"),
        (dict(position="alibi"), "position"),
        (dict(norm="batchnorm"), "norm"),
        (dict(mlp="relu"), "mlp"),
        (dict(attention="flash"), "attention"),
        (dict(position="rope", n_embd=12, n_head=4), "RoPE"),
    ],
)
def test_bad_configs_raise_errors_naming_the_argument(kwargs, name):
    base = dict(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8)
    with pytest.raises(ValueError, match=name):
        GPTConfig(**{**base, **kwargs})


def test_bad_sizes_raise_errors_naming_the_argument():
    model = tiny()
    with pytest.raises(ValueError, match="block_size=12"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="context"):
        flops_per_token(model.config, 0)
    with pytest.raises(TypeError, match="config"):
        parameter_count({"n_embd": 8})


# -- the chapter: exercises and demo ------------------------------------------------------------


def test_model_chapter_exercise_solutions():
    from chapters import run_solution

    ns = run_solution("pretraining/model.md", "ex-model-gpt2-params")
    assert ns["small"] == 124_439_808 == parameter_count(_gpt2()).total
    assert ns["medium"] == 354_823_168  # Hugging Face's gpt2-medium
    untied = GPTConfig(**{**_gpt2().to_dict(), "tie_embeddings": False})
    assert ns["untied"] == parameter_count(untied).total
    ns = run_solution("pretraining/model.md", "ex-model-attention-flops")
    assert ns["crossover"] == 4608
    assert ns["f"].attention == ns["f"].projections + ns["f"].mlp
    ns = run_solution("pretraining/model.md", "ex-model-swiglu-width")
    assert ns["d_ff"] == 11008  # LLaMA-7B's published hidden width
    assert 1.0 < ns["swiglu"] / ns["gelu"] < 1.01
    ns = run_solution("pretraining/model.md", "ex-model-gpt3-compute")
    assert abs(ns["N"].total / 175e9 - 1) < 0.005
    assert 3.05e23 < ns["six_nd"] < 3.15e23
    assert 1.01 < ns["dense"] / ns["six_nd"] < 1.06
    f = flops_per_token(ns["gpt3"])  # "a few percent higher, mostly for attention"
    assert f.attention > 5 * f.unembedding


def _gpt2():
    return GPTConfig(
        vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=True
    )


def test_model_size_demo_shows_the_formulas_and_moves_its_bars():
    from llmtrain.demos.pretraining.gpt_model import model_size_demo

    demo = model_size_demo()
    first = demo.png()
    assert demo.result["total"] == 124_439_808
    bars = list(demo.figure.axes[0].patches)
    demo.set(n_embd=4096, n_layer=32, block_size=4096, vocab_size=32000)
    assert demo.png() != first
    config = GPTConfig(
        vocab_size=32000, block_size=4096, n_layer=32, n_head=1, n_embd=4096, bias=True
    )
    assert demo.result["total"] == parameter_count(config).total
    f = flops_per_token(config)
    assert demo.result["flops"][1] == pytest.approx(f.attention / f.forward)
    assert list(demo.figure.axes[0].patches) == bars  # the same artists, moved
    assert sum(b.get_width() for b in bars[:4]) == pytest.approx(1.0)
