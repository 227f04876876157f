"""Decoding (Part IV): min-p and the repetition penalty against hand computations and Hugging
Face's rules, beam search against exhaustive search and greedy decoding, the likelihood of a
continuation against a step-by-step computation, and the KV cache's bytes against its formula."""

import itertools
import math

import pytest
import torch

from llmtrain._threads import one_torch_thread
from llmtrain.posttraining import (
    accuracy_and_diversity,
    beam_search,
    continuation_log_probs,
    continuation_perplexity,
    decode_answers,
    kv_cache_bytes,
    measured_kv_cache_bytes,
    min_p_filter,
    repetition_penalty_filter,
    top_k_filter,
    top_p_filter,
)
from llmtrain.pretraining import (
    GPT,
    MODEL_PRESETS,
    GPTConfig,
    KVCache,
    sample_next_token,
    sampling_distribution,
)

f64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def tiny_model(V=5, block_size=8, seed=0, **options):
    """A random GPT; a large init spreads its next-token distributions so that beams differ."""
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=V, block_size=block_size, n_layer=2, n_head=2, n_embd=16, init_std=0.5,
        **options,
    )  # fmt: skip
    return GPT(config).to(f64)


# -- the filters re-exported from Part III -----------------------------------------------------


def test_top_k_and_top_p_are_part_iiis_filters():
    from llmtrain import pretraining

    assert top_k_filter is pretraining.top_k_filter and top_p_filter is pretraining.top_p_filter


# -- min-p --------------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-min-p")
def test_min_p_keeps_exactly_the_tokens_above_the_scaled_threshold():
    g = torch.Generator().manual_seed(0)
    z = (
        torch.randn(200, 12, generator=g, dtype=f64)
        * torch.rand(200, 1, generator=g, dtype=f64)
        * 5
    )
    probs = torch.softmax(z, -1).tolist()
    for p_min in (0.0, 0.01, 0.1, 0.3, 0.7, 1.0):
        kept = torch.isfinite(min_p_filter(z, p_min)).tolist()
        for row, keep in zip(probs, kept, strict=True):
            threshold = p_min * max(row)
            assert keep == [q >= threshold for q in row]
            assert sum(keep) >= 1
    # The kept logits are unchanged.
    out = min_p_filter(z, 0.2)
    assert torch.equal(out[torch.isfinite(out)], z[torch.isfinite(out)])


@pytest.mark.algorithm("alg-min-p")
def test_min_p_on_a_hand_computed_example():
    # p_max = 0.5; p_min = 0.25 gives the threshold 0.125: 0.5, 0.2 and 0.15 pass, 0.1 and 0.05
    # do not. p_min = 0.3 gives 0.15, which 0.15 itself still reaches.
    z = torch.tensor([0.2, 0.5, 0.05, 0.15, 0.1], dtype=f64).log()
    assert torch.isfinite(min_p_filter(z, 0.25)).tolist() == [True, True, False, True, False]
    assert torch.isfinite(min_p_filter(z, 0.3)).tolist() == [True, True, False, True, False]
    assert torch.isfinite(min_p_filter(z, 0.41)).tolist() == [False, True, False, False, False]
    # Flat distributions keep many tokens, sharp ones few, at the same p_min.
    flat = torch.zeros(10, dtype=f64)
    sharp = torch.tensor([5.0] + [0.0] * 9, dtype=f64)
    assert torch.isfinite(min_p_filter(flat, 0.1)).sum() == 10
    assert torch.isfinite(min_p_filter(sharp, 0.1)).sum() == 1


def test_min_p_after_temperature_on_hand_computed_numbers():
    """Hugging Face's order (MinPLogitsWarper after TemperatureLogitsWarper): min-p compares
    the probabilities of the tempered logits z/τ. Worked out by hand."""
    # Probabilities 8/16, 4/16, 2/16, 1/16, 1/16: logits z = ln(8, 4, 2, 1, 1).
    z = torch.tensor([8.0, 4.0, 2.0, 1.0, 1.0], dtype=f64).log()
    # τ = 1: ratios to the largest 1, 1/2, 1/4, 1/8, 1/8; p_min = 0.4 keeps 8 and 4: 2/3, 1/3.
    got = sampling_distribution(z, temperature=1.0, min_p=0.4)
    torch.testing.assert_close(got, torch.tensor([2 / 3, 1 / 3, 0, 0, 0], dtype=f64))
    # τ = 2: weights e^(z/2) = √8, 2, √2, 1, 1; ratios 1, 1/√2, 1/2, 1/√8, 1/√8. p_min = 0.4
    # now keeps three: √8, 2, √2 over their sum 3√2 + 2, i.e. 0.45308, 0.32037, 0.22654.
    got = sampling_distribution(z, temperature=2.0, min_p=0.4)
    s = 3 * math.sqrt(2) + 2
    expected = torch.tensor([math.sqrt(8) / s, 2 / s, math.sqrt(2) / s, 0, 0], dtype=f64)
    torch.testing.assert_close(got, expected)
    assert got[:3].tolist() == pytest.approx([0.45308, 0.32037, 0.22654], abs=1e-5)


def test_the_chain_temperature_top_k_top_p_min_p_on_hand_computed_numbers():
    """Hugging Face's order: temperature, then top-k, top-p, min-p, each filter on what the
    one before left (renormalised). Raw weights e^z = 64, 36, 16, 9, 4, 1 and τ = 2 give the
    tempered weights 8, 6, 4, 3, 2, 1."""
    z = torch.tensor([64.0, 36.0, 16.0, 9.0, 4.0, 1.0], dtype=f64).log()
    chain = dict(temperature=2.0, top_k=5, top_p=0.78)
    # top-k 5 drops weight 1; the rest sum to 23. top-p 0.78 keeps a token while the mass
    # before it is < 0.78: 0, 8/23, 14/23 = 0.609 pass, 18/23 = 0.783 does not. Left: 8, 6, 4.
    # min-p 0.35: ratios 1, 3/4, 1/2 all pass, so the answer is 8, 6, 4 over 18.
    got = sampling_distribution(z, **chain, min_p=0.35)
    torch.testing.assert_close(got, torch.tensor([4 / 9, 3 / 9, 2 / 9, 0, 0, 0], dtype=f64))
    # min-p 0.6 also drops weight 4 (ratio 1/2): 8, 6 over 14.
    got = sampling_distribution(z, **chain, min_p=0.6)
    torch.testing.assert_close(got, torch.tensor([4 / 7, 3 / 7, 0, 0, 0, 0], dtype=f64))
    # Other orders give other numbers, so the values above pin the order down:
    # - top-p before top-k: the masses before are 0, 8/24, 14/24, 18/24 = 0.75 < 0.78, so
    #   weight 3 stays, and min-p 0.35 keeps it too (ratio 3/8): 8, 6, 4, 3 over 21;
    # - the filters before the temperature: top-p on 64, 36, 16, 9, 4 (sum 129) keeps 64, 36,
    #   16 (100/129 = 0.775 < 0.78), min-p 0.35 on ratios 1, 9/16, 1/4 drops 16: 8, 6 over 14.


# -- the repetition penalty --------------------------------------------------------------------


@pytest.mark.algorithm("alg-repetition-penalty")
def test_repetition_penalty_on_a_hand_computation():
    z = torch.tensor([[2.0, -1.0, 0.5, -3.0, 1.0]], dtype=f64)
    context = torch.tensor([[0, 1, 1, 3, 0]])  # tokens 0, 1 and 3 occurred; 1 and 0 twice
    out = repetition_penalty_filter(z, context, 2.0)
    # Positive logits are divided by 2, negative ones multiplied by 2, once per token.
    assert out.tolist() == [[1.0, -2.0, 0.5, -6.0, 1.0]]
    # A penalty below 1 favours repeats; 1 changes nothing.
    assert repetition_penalty_filter(z, context, 0.5).tolist() == [[4.0, -0.5, 0.5, -1.5, 1.0]]
    assert torch.equal(repetition_penalty_filter(z, context, 1.0), z)
    # 1-D logits and context.
    assert repetition_penalty_filter(z[0], context[0], 2.0).tolist() == out[0].tolist()


@pytest.mark.algorithm("alg-repetition-penalty")
def test_repetition_penalty_on_hand_computed_probabilities():
    """Hugging Face's RepetitionPenaltyLogitsProcessor rule, worked out by hand: a seen token's
    logit is divided by ρ if positive and multiplied by ρ if negative (0 stays 0)."""
    # Weights e^z = 4, 2, 1, 1/2: probabilities 8/15, 4/15, 2/15, 1/15.
    z = torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=f64).log()
    context = torch.tensor([0, 2, 3, 0])  # tokens 0, 2 and 3 seen; token 1 not
    # ρ = 2: ln 4 / 2 = ln 2, 0 stays 0, -ln 2 · 2 = -ln 4. Weights 2, 2, 1, 1/4 (sum 21/4):
    # probabilities 8/21, 8/21, 4/21, 1/21.
    got = sampling_distribution(z, repetition_penalty=2.0, context=context)
    torch.testing.assert_close(got, torch.tensor([8 / 21, 8 / 21, 4 / 21, 1 / 21], dtype=f64))
    # Against the unseen token 1, token 0 goes from 4/2 to 2/2, token 3 from 1/4 to 1/8, and
    # token 2 (logit 0) stays at 1/2.
    ratios = got / got[1]
    torch.testing.assert_close(ratios, torch.tensor([1.0, 1.0, 0.5, 0.125], dtype=f64))
    # CTRL's rule (divide every seen logit) would raise token 3 to weight e^(-ln 2 / 2) = 1/√2;
    # Hugging Face's lowers it to 1/4.
    assert torch.exp(repetition_penalty_filter(z, context, 2.0))[3].item() == pytest.approx(0.25)


def test_the_sampler_applies_the_penalty_first_and_greedy_respects_it():
    z = torch.tensor([[3.0, 2.5, -1.0]], dtype=f64)
    context = torch.tensor([[0]])
    # Greedy picks 0; penalised, 3/2 = 1.5 < 2.5, so 1.
    assert sample_next_token(z, temperature=0, context=context).item() == 0
    assert sample_next_token(z, temperature=0, repetition_penalty=2.0, context=context).item() == 1
    expected = torch.softmax(torch.tensor([[1.5, 2.5, -1.0]], dtype=f64) / 0.7, -1)
    got = sampling_distribution(z, temperature=0.7, repetition_penalty=2.0, context=context)
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="context"):
        sampling_distribution(z, repetition_penalty=2.0)


def test_generate_with_a_penalty_equals_the_penalised_greedy_loop():
    model = tiny_model(V=7)
    prompt = torch.tensor([[1, 2, 3]])
    out = model.generate(prompt, 6, temperature=0, repetition_penalty=1.5)
    idx = prompt
    for _ in range(6):
        with torch.no_grad():
            z = model.eval()(idx)[0][:, -1]
        token = repetition_penalty_filter(z, idx, 1.5).argmax(-1)
        idx = torch.cat((idx, token[:, None]), 1)
    assert torch.equal(out, idx)
    # min-p in generate: p_min = 1 keeps only the most likely token, which is greedy.
    g = torch.Generator().manual_seed(0)
    assert torch.equal(
        model.generate(prompt, 6, min_p=1.0, generator=g), model.generate(prompt, 6, temperature=0)
    )


# -- beam search --------------------------------------------------------------------------------


def all_continuations(model, prompt, n, eos_id=None):
    """Every continuation of ``prompt`` of n tokens, or shorter ending with ``eos_id``, with
    its log-probability from a full forward pass: the exhaustive reference."""
    V = model.config.vocab_size
    out = []
    for tokens in itertools.product(range(V), repeat=n):
        if eos_id is not None and eos_id in tokens:
            tokens = tokens[: tokens.index(eos_id) + 1]
        out.append(tuple(tokens))
    out = sorted(set(out))
    with torch.no_grad():
        lps = [continuation_log_probs(model, prompt, list(t)).sum().item() for t in out]
    return out, lps


@pytest.mark.algorithm("alg-beam-search")
def test_beam_search_wide_enough_equals_exhaustive_search():
    model = tiny_model(V=5)
    prompt = torch.tensor([3, 1])
    continuations, lps = all_continuations(model, prompt, 3)
    assert len(continuations) == 125
    ranked = sorted(zip(lps, continuations, strict=True), reverse=True)
    # Width V^2 = 25 keeps every prefix of two tokens, so the last step sees every sequence.
    result = beam_search(model, prompt, 3, beam_width=25, length_penalty=0.0)
    assert tuple(result.best[2:].tolist()) == ranked[0][1]
    assert result.log_probs[0].item() == pytest.approx(ranked[0][0], abs=1e-10)
    # Width V^3 = 125 keeps everything: the full ranking, best first.
    result = beam_search(model, prompt, 3, beam_width=125)
    assert [tuple(s[2:].tolist()) for s in result.sequences] == [c for _, c in ranked]
    torch.testing.assert_close(result.log_probs, torch.tensor([lp for lp, _ in ranked], dtype=f64))
    # Width V = 5 is exhaustive for two new tokens (every one-token prefix is kept).
    two, lps2 = all_continuations(model, prompt, 2)
    best = max(zip(lps2, two, strict=True))
    result = beam_search(model, prompt, 2, beam_width=5)
    assert tuple(result.best[2:].tolist()) == best[1]


@pytest.mark.algorithm("alg-beam-search")
def test_beam_search_with_an_end_token_equals_exhaustive_search_with_length_penalty():
    model = tiny_model(V=4, seed=1)
    prompt = torch.tensor([2])
    eos = 0
    continuations, lps = all_continuations(model, prompt, 3, eos_id=eos)
    assert len(continuations) == 1 + 3 + 9 + 27  # EOS at step 1, 2, 3, or never
    for α in (0.0, 1.0, 2.0):
        scores = [lp / len(c) ** α for lp, c in zip(lps, continuations, strict=True)]
        ranked = sorted(zip(scores, lps, continuations, strict=True), reverse=True)
        result = beam_search(model, prompt, 3, beam_width=64, eos_id=eos, length_penalty=α)
        assert [tuple(s[1:].tolist()) for s in result.sequences] == [c for *_, c in ranked]
        torch.testing.assert_close(result.scores, torch.tensor([s for s, *_ in ranked], dtype=f64))
        assert all(s[-1] == eos or len(s) == 4 for s in result.sequences)


@pytest.mark.algorithm("alg-beam-search")
@pytest.mark.parametrize("options", [{}, dict(position="rope", norm="rmsnorm", mlp="swiglu")])
def test_beam_width_one_is_greedy_decoding_also_past_the_context(options):
    model = tiny_model(V=9, block_size=6, seed=2, **options)
    prompt = torch.tensor([[4, 1, 7]])
    for n in (1, 4, 9):  # 3 + 9 > block_size: the window slides
        greedy = model.generate(prompt, n, temperature=0)
        result = beam_search(model, prompt, n, beam_width=1)
        assert torch.equal(result.best, greedy[0])
        assert len(result.sequences) == 1


@pytest.mark.algorithm("alg-beam-search")
def test_beam_search_breaks_ties_by_earlier_hypothesis_then_smaller_token():
    model = tiny_model(V=5)
    with torch.no_grad():  # a zero output layer: every next token has probability 1/5
        model.lm_head.weight.zero_()
    result = beam_search(model, torch.tensor([1]), 2, beam_width=3, length_penalty=0.0)
    # Step 1 keeps tokens 0, 1, 2 (all tie); step 2 extends hypothesis (0,) first, by 0, 1, 2.
    assert [s[1:].tolist() for s in result.sequences] == [[0, 0], [0, 1], [0, 2]]
    torch.testing.assert_close(result.log_probs, torch.full((3,), 2 * math.log(1 / 5), dtype=f64))
    # With an end token (0), the finished (0,) holds a place from step 1 on and loses no tie:
    # its ln(1/5) beats every two-token extension, 2 ln(1/5).
    result = beam_search(model, torch.tensor([1]), 2, beam_width=3, eos_id=0, length_penalty=0.0)
    assert [s[1:].tolist() for s in result.sequences] == [[0], [1, 0], [1, 1]]


@pytest.mark.algorithm("alg-beam-search")
def test_beam_search_log_probs_are_the_models_and_the_beam_is_full():
    model = tiny_model(V=6, block_size=16, seed=3)
    prompt = torch.tensor([1, 2, 3])
    for W in (1, 2, 4, 8, 36):
        result = beam_search(model, prompt, 4, beam_width=W, length_penalty=0.0)
        assert len(result.sequences) == W
        assert len({tuple(s.tolist()) for s in result.sequences}) == W
        for s, lp in zip(result.sequences, result.log_probs.tolist(), strict=True):
            assert lp == pytest.approx(continuation_log_probs(model, prompt, s[3:]).sum().item())
        assert torch.all(result.log_probs[:-1] >= result.log_probs[1:])


def test_beam_search_restores_the_training_flag_and_handles_edge_cases():
    model = tiny_model(dropout=0.3).train()
    result = beam_search(model, torch.tensor([1, 2]), 0, beam_width=3)
    assert model.training and len(result.sequences) == 1 and result.log_probs.item() == 0.0
    # An end token that is the only choice: every hypothesis ends after one token.
    result = beam_search(model, torch.tensor([1]), 5, beam_width=5, eos_id=2)
    assert all(s[-1] == 2 or len(s) == 6 for s in result.sequences)


# -- answers: accuracy and diversity ----------------------------------------------------------


def test_decode_answers_greedy_beam_and_sampled_against_direct_calls():
    model = tiny_model(V=6, block_size=12, seed=4)
    prompts = [[1, 2], [3, 4, 5], [2, 2], [5]]
    stop = 0
    greedy = decode_answers(model, prompts, 5, stop_id=stop, temperature=0)
    beams = decode_answers(model, prompts, 5, stop_id=stop, beam_width=1)
    for x, g, b in zip(prompts, greedy, beams, strict=True):
        out = model.generate(torch.tensor([x]), 5, temperature=0)[0, len(x) :].tolist()
        expected = tuple(out[: out.index(stop)] if stop in out else out)
        assert g == [expected] and b == [expected]
    # Sampling: prompts of equal length share a batch, n_samples rows each, in order.
    sampled = decode_answers(model, prompts, 4, n_samples=3, seed=7, temperature=1.5)
    assert [len(a) for a in sampled] == [3, 3, 3, 3]
    g = torch.Generator().manual_seed(7)  # groups by increasing length: [5] first
    first = model.generate(torch.tensor([[5]] * 3), 4, generator=g, temperature=1.5)
    assert sampled[3] == [tuple(r) for r in first[:, 1:].tolist()]
    batch = torch.tensor([[1, 2], [2, 2]]).repeat_interleave(3, dim=0)
    out = model.generate(batch, 4, generator=g, temperature=1.5)[:, 2:].tolist()
    assert sampled[0] == [tuple(r) for r in out[:3]] and sampled[2] == [tuple(r) for r in out[3:]]


def test_accuracy_and_diversity_count_exact_matches_and_distinct_answers():
    answers = [[(1, 2), (1, 2), (3,)], [(4,), (4,), (4,)]]
    accuracy, distinct = accuracy_and_diversity(answers, [(1, 2), (5,)])
    assert accuracy == pytest.approx(2 / 6) and distinct == pytest.approx(1.5)
    with pytest.raises(ValueError, match="answers and targets"):
        accuracy_and_diversity(answers, [(1, 2)])


# -- likelihood and perplexity -----------------------------------------------------------------


def test_continuation_log_probs_equal_the_step_by_step_chain_rule():
    model = tiny_model(V=7, block_size=12)
    prompt, continuation = [1, 5, 2], [6, 0, 3, 3]
    got = continuation_log_probs(model, prompt, continuation)
    ids = list(prompt)
    expected = []
    for y in continuation:
        with torch.no_grad():
            z = model(torch.tensor([ids]))[0][0, -1]
        expected.append(torch.log_softmax(z, -1)[y].item())
        ids.append(y)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=f64))
    pairs = [(prompt, continuation), ([2], [1, 1])]
    nll = -torch.cat([continuation_log_probs(model, x, y) for x, y in pairs])
    assert continuation_perplexity(model, pairs) == pytest.approx(math.exp(nll.mean().item()))
    # A model that predicts uniformly has perplexity V.
    uniform = tiny_model(V=7)
    for p in uniform.parameters():
        torch.nn.init.zeros_(p)
    assert continuation_perplexity(uniform, pairs) == pytest.approx(7.0)


# -- the KV cache's memory ----------------------------------------------------------------------


def test_kv_cache_bytes_formula_equals_the_measured_cache():
    for dtype, nbytes in ((torch.float32, 4), (torch.bfloat16, 2), (torch.float64, 8)):
        config = GPTConfig(vocab_size=11, block_size=24, n_layer=3, n_head=4, n_embd=32)
        for B in (1, 5):
            cache = KVCache(config, B, dtype=dtype)
            measured = measured_kv_cache_bytes(cache)
            assert measured == kv_cache_bytes(config, batch_size=B, bytes_per_value=nbytes)
            assert measured == 2 * 3 * 24 * 32 * nbytes * B
    # GPT-2 small in 16-bit numbers: 2 · 12 · 1024 · 768 · 2 bytes, about 37.7 MB.
    assert kv_cache_bytes("GPT-2 small (124M)") == 37_748_736
    # Grouped-query attention: Llama 2 70B keeps 8 key-value heads of its 64, so an eighth.
    llama = MODEL_PRESETS["Llama 2 70B"]
    assert kv_cache_bytes(llama) == 2 * 80 * 4096 * 1024 * 2
    from dataclasses import replace

    assert kv_cache_bytes(replace(llama, n_kv_head=64)) == 8 * kv_cache_bytes(llama)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda: top_p_filter(torch.zeros(3), 0.0), ValueError, r"p must be in \(0, 1\]"),
        (lambda: top_p_filter(torch.zeros(3), 1.5), ValueError, r"p must be in \(0, 1\]"),
        (lambda: top_k_filter(torch.zeros(3), 0), ValueError, r"k must be an integer in \[1"),
        (lambda: min_p_filter(torch.zeros(3), -0.1), ValueError, r"p_min must be in \[0, 1\]"),
        (lambda: min_p_filter(torch.zeros(3), 1.1), ValueError, r"p_min must be in \[0, 1\]"),
        (
            lambda: sample_next_token(torch.zeros(3), min_p=2.0),
            ValueError,
            r"min_p must be in \[0, 1\]",
        ),
        (
            lambda: repetition_penalty_filter(torch.zeros(3), torch.tensor([0]), 0.0),
            ValueError,
            r"penalty must be in \(0, inf\)",
        ),
        (
            lambda: sample_next_token(torch.zeros(3), repetition_penalty=-1.0),
            ValueError,
            r"repetition_penalty must be in \(0, inf\)",
        ),
        (
            lambda: repetition_penalty_filter(torch.zeros(2, 3), torch.tensor([0]), 1.2),
            ValueError,
            "context must have shape",
        ),
        (
            lambda: beam_search(tiny_model(), torch.tensor([1]), 2, beam_width=0),
            ValueError,
            r"beam_width must be an integer in \[1",
        ),
        (
            lambda: beam_search(tiny_model(), torch.tensor([1]), -1, beam_width=2),
            ValueError,
            "max_new_tokens",
        ),
        (
            lambda: beam_search(tiny_model(), torch.tensor([1]), 2, beam_width=2, eos_id=5),
            ValueError,
            r"eos_id must be an integer in \[0, 4\]",
        ),
        (
            lambda: beam_search(tiny_model(), torch.zeros(9, dtype=torch.long), 2, beam_width=2),
            ValueError,
            "block_size=8",
        ),
        (lambda: beam_search(None, torch.tensor([1]), 2, beam_width=2), TypeError, "model"),
        (lambda: continuation_perplexity(tiny_model(), []), ValueError, "pairs"),
        (lambda: kv_cache_bytes("GPT-5"), ValueError, "model must be one of"),
    ],
)
def test_bad_arguments_raise_errors_naming_them(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_generate_checks_the_new_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="min_p"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 2, min_p=1.5)
    with pytest.raises(ValueError, match="repetition_penalty"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 2, repetition_penalty=0.0)


# -- the chapter: exercises and demo ------------------------------------------------------------


def test_decoding_chapter_exercise_solutions():
    from chapters import run_solution

    ns = run_solution("posttraining/decoding.md", "ex-decoding-min-p")
    assert ns["kept"] == [True, True, True, False, False]
    assert ns["same"] == [0.75, 0.85]
    ns = run_solution("posttraining/decoding.md", "ex-decoding-greedy-miss")
    assert ns["greedy"] == pytest.approx(0.30) and ns["best"] == pytest.approx(0.36)
    ns = run_solution("posttraining/decoding.md", "ex-decoding-kv-memory")
    assert round(ns["gqa_gb"], 1) == 21.5 and round(ns["mha_gb"]) == 172


def test_decoding_demo_measures_sampling_and_beam_search():
    from llmtrain.demos.posttraining.decoding import (
        MAX_NEW_TOKENS,
        N_PROMPTS,
        N_SAMPLES,
        decoding_demo,
    )
    from llmtrain.posttraining.chat import chat_tokenizer, encode_chat
    from llmtrain.posttraining.task_world import make_examples

    tokenizer = chat_tokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=259, block_size=48, n_layer=1, n_head=2, n_embd=16))
    demo = decoding_demo(model, tokenizer)
    first = demo.png()
    demo.set(temperature=0.0, beam_width=2)
    assert demo.png() != first
    examples = make_examples("test", N_PROMPTS, seed=1)
    prompts = [encode_chat(tokenizer, ex.prompt)[0] for ex in examples]
    targets = [tokenizer.encode_ordinary(ex.response) for ex in examples]
    end = tokenizer.special_tokens["<|end|>"]
    greedy = decode_answers(model, prompts, MAX_NEW_TOKENS, stop_id=end, temperature=0)
    beams = decode_answers(model, prompts, MAX_NEW_TOKENS, stop_id=end, beam_width=2)
    assert demo.result["accuracy"] == accuracy_and_diversity(greedy, targets)[0]
    assert demo.result["beam_accuracy"] == accuracy_and_diversity(beams, targets)[0]
    assert demo.result["distinct"] == 1.0  # greedy: the same answer every time
    demo.set(temperature=2.0)
    assert demo.result["distinct"] > 1.0
    assert sum(c for _, c in demo.result["first_answers"]) == N_SAMPLES
