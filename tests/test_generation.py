"""Generation: the sampling filters against brute force, and KV-cache generation against
recomputing the whole prefix at every step."""

import itertools

import pytest
import torch

from llmtrain._threads import one_torch_thread
from llmtrain.pretraining import (
    GPT,
    GPTConfig,
    KVCache,
    sample_next_token,
    sampling_distribution,
    top_k_filter,
    top_p_filter,
)

f64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: a second thread only adds waiting, the more so on a busy machine."""
    with one_torch_thread():
        yield


def random_logits(rows, V, seed):
    """Random rows, a third of them with many ties (logits from a few integer levels)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, V, generator=g, dtype=f64) * torch.rand(rows, 1, generator=g) * 4
    tied = torch.randint(0, 4, (rows, V), generator=g).to(f64)
    return torch.where(torch.arange(rows)[:, None] % 3 == 0, tied, z)


# -- top-k ------------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-top-k")
def test_top_k_keeps_the_k_largest_and_ties_with_the_kth():
    z = random_logits(60, 9, seed=0)
    for k in range(1, 12):
        kept = torch.isfinite(top_k_filter(z, k))
        for row, keep in zip(z.tolist(), kept.tolist(), strict=True):
            kth = sorted(row, reverse=True)[min(k, len(row)) - 1]
            assert keep == [x >= kth for x in row]
            assert sum(keep) >= min(k, 9)
    distinct = torch.randn(5, 20, dtype=f64)
    filtered = top_k_filter(distinct, 4)
    assert torch.equal(torch.isfinite(filtered).sum(-1), torch.full((5,), 4))
    kept_values = filtered[torch.isfinite(filtered)].view(5, 4)
    expected = torch.topk(distinct, 4).values
    torch.testing.assert_close(kept_values.sort(-1).values, expected.sort(-1).values)


# -- top-p ------------------------------------------------------------------------------------


def brute_force_nucleus_size(probs, p):
    """The smallest n such that the n most probable tokens have total probability >= p."""
    ordered = sorted(probs, reverse=True)
    for n in range(1, len(ordered) + 1):
        if sum(ordered[:n]) >= p:
            return n, sum(ordered[:n])
    return len(ordered), 1.0


@pytest.mark.algorithm("alg-top-p")
def test_top_p_keeps_exactly_the_smallest_nucleus():
    z = random_logits(300, 8, seed=1)
    probs = torch.softmax(z, -1)
    checked = 0
    for p in (0.05, 0.3, 0.5, 0.75, 0.9, 0.99):
        kept = torch.isfinite(top_p_filter(z, p))
        for row, keep in zip(probs.tolist(), kept.tolist(), strict=True):
            n, _ = brute_force_nucleus_size(row, p)
            # A prefix sum within rounding of p could go either way; skip those rows.
            ordered = sorted(row, reverse=True)
            if any(abs(sum(ordered[:m]) - p) < 1e-6 for m in range(1, 9)):
                continue
            checked += 1
            assert sum(keep) == n
            # The kept tokens are n of the most probable: none dropped is more probable.
            dropped = [q for q, k in zip(row, keep, strict=True) if not k]
            assert min(q for q, k in zip(row, keep, strict=True) if k) >= max(dropped, default=0)
    assert checked > 0.95 * 6 * 300


@pytest.mark.algorithm("alg-top-p")
def test_top_p_on_a_worked_example_and_at_the_ends():
    z = torch.log(torch.tensor([[0.1, 0.5, 0.25, 0.15]], dtype=f64))
    assert torch.isfinite(top_p_filter(z, 0.5)).tolist() == [[False, True, False, False]]
    # 0.5 + 0.25 = 0.75 < 0.8, so 0.15 (which crosses 0.8) is kept too.
    assert torch.isfinite(top_p_filter(z, 0.8)).tolist() == [[False, True, True, True]]
    assert torch.isfinite(top_p_filter(z, 0.75 + 1e-9)).tolist() == [[False, True, True, True]]
    assert torch.isfinite(top_p_filter(z, 1.0)).all()
    assert torch.isfinite(top_p_filter(z, 1e-9)).sum() == 1
    # Ties: with p = 0.5 over four equal tokens, two are kept, the smaller ids first.
    assert torch.isfinite(top_p_filter(torch.zeros(1, 4), 0.5)).tolist() == [
        [True, True, False, False]
    ]
    # The kept logits are unchanged.
    torch.testing.assert_close(top_p_filter(z, 0.8)[0, 1:], z[0, 1:])


def test_sampling_distribution_composes_temperature_top_k_and_top_p():
    z = random_logits(40, 10, seed=2)
    for τ, k, p in itertools.product((0.5, 1.0, 2.0), (None, 3), (None, 0.7)):
        probs = sampling_distribution(z, temperature=τ, top_k=k, top_p=p)
        expected = z / τ
        if k is not None:
            expected = top_k_filter(expected, k)
        if p is not None:
            expected = top_p_filter(expected, p)
        torch.testing.assert_close(probs, torch.softmax(expected, -1))
        torch.testing.assert_close(probs.sum(-1), torch.ones(40, dtype=f64))
    torch.testing.assert_close(sampling_distribution(z, temperature=0.5), torch.softmax(2 * z, -1))


def test_sample_next_token_draws_from_the_distribution():
    z = torch.log(torch.tensor([0.1, 0.5, 0.25, 0.15], dtype=f64)).expand(20000, 4)
    g = torch.Generator().manual_seed(0)
    tokens = sample_next_token(z, generator=g)
    frequencies = torch.bincount(tokens, minlength=4) / 20000
    # Standard errors are at most sqrt(0.25/20000) = 0.0035.
    torch.testing.assert_close(
        frequencies, torch.tensor([0.1, 0.5, 0.25, 0.15]), atol=0.015, rtol=0
    )
    nucleus = sample_next_token(z, top_p=0.7, generator=g)
    assert set(nucleus.tolist()) == {1, 2}
    assert sample_next_token(z[0], top_k=1, generator=g).shape == ()


def test_temperature_zero_is_greedy_and_draws_no_random_numbers():
    z = random_logits(50, 7, seed=3)
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    assert torch.equal(sample_next_token(z, temperature=0, generator=g), z.argmax(-1))
    assert torch.equal(g.get_state(), state)
    greedy = sampling_distribution(z, temperature=0.0)
    assert torch.equal(greedy.argmax(-1), z.argmax(-1)) and torch.all(greedy.max(-1).values == 1)
    # A small temperature approaches greedy.
    # Seeded, so that no two top logits of a row lie within 0.01 of each other, where
    # exp(-gap / temperature) would still be visible at temperature 1e-4.
    distinct = torch.randn(50, 7, dtype=f64, generator=torch.Generator().manual_seed(0))
    top2 = distinct.topk(2, dim=-1).values
    assert (top2[:, 0] - top2[:, 1]).min() > 0.01
    torch.testing.assert_close(
        sampling_distribution(distinct, temperature=1e-4),
        sampling_distribution(distinct, temperature=0),
    )


# -- generation with the KV cache ------------------------------------------------------------


def tiny_model(seed=0, **options):
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, **options)
    return GPT(config).to(f64)


def recompute_reference(model, idx, n, **sampling):
    """Generation without a cache: the whole (cropped) prefix through the model each step."""
    generator = sampling.pop("generator", None)
    for _ in range(n):
        with torch.no_grad():
            logits, _ = model.eval()(idx[:, -model.config.block_size :])
        token = sample_next_token(logits[:, -1], generator=generator, **sampling)
        idx = torch.cat((idx, token[:, None]), dim=1)
    return idx


@pytest.mark.algorithm("alg-kv-cache-generate")
@pytest.mark.parametrize("options", [{}, dict(position="rope", norm="rmsnorm", mlp="swiglu")])
def test_kv_cache_generation_equals_recomputing_the_prefix(options):
    model = tiny_model(**options)
    prompt = torch.randint(0, 11, (3, 5))
    settings = [
        dict(temperature=0.0),
        dict(temperature=1.0),
        dict(temperature=0.7, top_k=4),
        dict(temperature=1.3, top_p=0.8),
    ]
    for sampling, n in itertools.product(settings, (1, 3, 12)):  # 5 + 12 > block_size = 8
        g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
        out = model.generate(prompt, n, generator=g1, **sampling)
        ref = recompute_reference(model, prompt, n, generator=g2, **sampling)
        assert out.shape == (3, 5 + n)
        assert torch.equal(out, ref), (sampling, n)
        assert torch.equal(out[:, :5], prompt)


@pytest.mark.algorithm("alg-kv-cache-generate")
def test_generate_reads_the_prompt_in_one_pass_then_one_token_per_step():
    model = tiny_model()
    lengths = []
    hook = model.transformer.wte.register_forward_hook(
        lambda m, i, o: lengths.append(i[0].shape[1])
    )
    model.generate(torch.randint(0, 11, (2, 3)), 8, temperature=0)
    hook.remove()
    # Prefill 3 tokens, then 1 token per step until 8 are cached, then windows of 8.
    assert lengths == [3, 1, 1, 1, 1, 1, 8, 8]
    cache = KVCache(model.config, 2)
    assert cache.k[0].shape == (2, 2, 8, 8) and len(cache.v) == 2


def test_generate_is_reproducible_restores_training_and_records_no_graph():
    model = tiny_model(dropout=0.5).train()
    prompt = torch.randint(0, 11, (2, 4))
    a = model.generate(prompt, 6, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and model.training and not a.requires_grad
    assert torch.equal(model.generate(prompt, 0), prompt)
    # Dropout is off while generating: the result equals the eval-mode reference.
    ref = recompute_reference(model, prompt, 6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, ref)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(temperature=-0.5), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
    ],
)
def test_bad_sampling_arguments_raise_errors_naming_them(kwargs, name):
    model = tiny_model()
    kwargs = {"max_new_tokens": 2, **kwargs}
    with pytest.raises(ValueError, match=name):
        model.generate(torch.zeros(1, 3, dtype=torch.long), **kwargs)
    if name != "max_new_tokens":
        with pytest.raises(ValueError, match=name):
            kwargs.pop("max_new_tokens")
            sample_next_token(torch.zeros(2, 5), **kwargs)


def test_bad_prompts_and_filter_arguments_raise_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="block_size=8"):
        model.generate(torch.zeros(1, 9, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="idx"):
        model.generate(torch.zeros(1, 3), 1)
    with pytest.raises(TypeError, match="top_k"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), 1, top_k=2.5)
    with pytest.raises(ValueError, match="k must"):
        top_k_filter(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="p must"):
        top_p_filter(torch.zeros(3), 0.0)
    with pytest.raises(TypeError, match="logits"):
        top_p_filter(torch.zeros(3, dtype=torch.long), 0.5)


# -- the chapter: exercises and demo ------------------------------------------------------------


def test_generation_chapter_exercise_solutions():
    from chapters import run_solution

    ns = run_solution("pretraining/generation.md", "ex-generation-nucleus")
    assert ns["sizes"] == {0.6: 2, 0.75: 3, 0.85: 4}
    assert ns["top3"] == 4
    ns = run_solution("pretraining/generation.md", "ex-generation-cache-positions")
    assert (ns["with_cache"], ns["without_cache"]) == (119, 6950)
    ns = run_solution("pretraining/generation.md", "ex-generation-cache-memory")
    assert ns["gpt2_bytes"] == 2 * 12 * 1024 * 768 * 2 and round(ns["gpt2_bytes"] / 1e6) == 38
    assert round(ns["gpt3_bytes"] / 1e9, 1) == 9.7


def test_sampling_demo_shows_the_filtered_distribution_and_a_sample():
    from llmtrain.demos.pretraining.generation import SHOWN, sampling_demo
    from llmtrain.pretraining import CharTokenizer

    tokenizer = CharTokenizer.train("the quick brown fox jumps over the lazy dog. " * 3)
    torch.manual_seed(0)
    V = tokenizer.vocab_size
    model = GPT(GPTConfig(vocab_size=V, block_size=32, n_layer=1, n_head=2, n_embd=16))
    demo = sampling_demo(model, tokenizer, prompt="the qu")
    first = demo.png()
    demo.set(temperature=0.7, top_k=5, top_p=0.5)
    assert demo.png() != first
    ids = torch.tensor([tokenizer.encode("the qu")])
    with torch.no_grad():
        z = model(ids)[0][0, -1].double()
    expected = sampling_distribution(z, temperature=0.7, top_k=5, top_p=0.5)
    assert demo.result["n_kept"] == int((expected > 0).sum())
    order = torch.argsort(z, descending=True, stable=True)[:SHOWN]
    torch.testing.assert_close(torch.from_numpy(demo.result["after"]), expected[order])
    out = model.generate(
        ids, 60, temperature=0.7, top_k=5, top_p=0.5, generator=torch.Generator().manual_seed(0)
    )
    assert demo.result["continuation"] == tokenizer.decode(out[0, 6:].tolist())
    demo.set(temperature=0.0)
    assert demo.result["n_kept"] == 1
