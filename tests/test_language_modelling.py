"""Causal language modelling: the shifted loss, its units, coding, the corpus and a tiny run."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmtrain.objectives import (
    DEFAULT_SOURCE,
    BigramLM,
    CharVocab,
    MarkovSource,
    arithmetic_decode,
    arithmetic_encode,
    bits_per_byte,
    bits_per_character,
    causal_lm_loss,
    code_length,
    generate,
    perplexity,
    random_windows,
    shift_tokens,
    synthetic_corpus,
    train_bigram_lm,
)

f64 = torch.float64


class TinyCausalModel(torch.nn.Module):
    """Embedding, a causal running mean over the prefix, and a linear read-out."""

    def __init__(self, V, d=5, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.E = torch.nn.Parameter(torch.randn(V, d, generator=g, dtype=f64))
        self.W = torch.nn.Parameter(torch.randn(d, V, generator=g, dtype=f64))

    def forward(self, ids):
        h = self.E[ids].cumsum(1) / torch.arange(1, ids.shape[1] + 1, dtype=f64)[:, None]
        return torch.tanh(h) @ self.W


@pytest.mark.algorithm("alg-causal-lm-loss")
def test_causal_lm_loss_by_hand():
    # A bigram model with known conditionals q(next | current) over 3 tokens.
    q = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]], dtype=f64)
    model = BigramLM(3)
    with torch.no_grad():
        model.W.copy_(q.log())
    ids = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 1]])
    # Chain rule: -ln p(x_2..x_4 | x_1) = -Σ_t ln q(x_{t+1} | x_t).
    first = -(math.log(0.25) + math.log(0.8) + math.log(1 / 3))
    second = -(math.log(1 / 3) + math.log(1 / 3) + math.log(0.1))
    assert causal_lm_loss(model, ids).item() == pytest.approx((first + second) / 6, rel=1e-6)
    per_token = causal_lm_loss(model, ids, reduction="none")
    assert per_token.shape == (2, 3)
    np.testing.assert_allclose(per_token.sum(1).detach().numpy(), [first, second], rtol=1e-6)
    # Padding the last token of the second sequence drops its term -ln 0.1 from the mean.
    padding = torch.tensor([[True] * 4, [True, True, True, False]])
    expected = (first + second + math.log(0.1)) / 5
    assert causal_lm_loss(model, ids, padding).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.algorithm("alg-causal-lm-loss")
@pytest.mark.parametrize("seed", range(8))
def test_causal_lm_loss_matches_torch_on_shifted_logits(seed):
    rng = np.random.default_rng(seed)
    V, B, n = int(rng.integers(3, 12)), int(rng.integers(1, 5)), int(rng.integers(2, 10))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, n), generator=g)
    lengths = torch.randint(1, n + 1, (B,), generator=g)
    padding = torch.arange(n)[None, :] < lengths[:, None]  # right padding
    padding[0] = True  # at least one full sequence
    ε = float(rng.choice([0.0, 0.1]))
    ours_model, torch_model = TinyCausalModel(V, seed=seed), TinyCausalModel(V, seed=seed)
    ours = causal_lm_loss(ours_model, ids, padding, label_smoothing=ε)
    # Reference: logits of the whole sequence, drop the last position, targets drop the first.
    logits = torch_model(ids)[:, :-1]
    targets = ids[:, 1:].masked_fill(~padding[:, 1:], -100)
    theirs = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), label_smoothing=ε)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    ours.backward()
    theirs.backward()
    for a, b in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-11, atol=1e-12)
    assert ours_model.E.grad.abs().max() > 1e-4


@pytest.mark.algorithm("alg-causal-lm-loss")
def test_the_loss_is_the_joint_negative_log_likelihood_by_the_chain_rule():
    # Sum of per-token losses = -ln p(x_{2:n} | x_1); summed over all continuations of one
    # start token, the probabilities must add to 1.
    V, n = 3, 4
    model = TinyCausalModel(V, seed=4)
    grid = torch.cartesian_prod(*[torch.arange(V)] * (n - 1))
    ids = torch.cat([torch.zeros(len(grid), 1, dtype=torch.long), grid], 1)
    nll = causal_lm_loss(model, ids, reduction="none").sum(1)
    assert torch.exp(-nll).sum().item() == pytest.approx(1.0, abs=1e-12)


def test_shift_tokens_and_bad_arguments():
    ids = torch.tensor([[5, 6, 7, 8]])
    x, y = shift_tokens(ids, torch.tensor([[True, True, True, False]]), ignore_index=-1)
    assert x.tolist() == [[5, 6, 7]] and y.tolist() == [[6, 7, -1]]
    model = BigramLM(10)
    with pytest.raises(ValueError, match=r"ids must have shape \(B, n\)"):
        causal_lm_loss(model, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="n >= 2"):
        causal_lm_loss(model, torch.tensor([[1]]))
    with pytest.raises(TypeError, match="ids must hold integer"):
        causal_lm_loss(model, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="padding must have the shape of ids"):
        causal_lm_loss(model, ids, torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"model must return logits of shape \(B, n - 1, V\)"):
        causal_lm_loss(lambda x: torch.zeros(1, 4, 10), ids)
    with pytest.raises(ValueError, match=r"targets must be in \[0, 9\]"):
        causal_lm_loss(model, torch.tensor([[1, 12]]))
    with pytest.raises(TypeError, match="model must be callable"):
        causal_lm_loss(3, ids)


def test_perplexity_and_bits_closed_forms():
    # A uniform model over V tokens: loss ln V, perplexity V, log2 V bits per token.
    for V in (2, 65, 50_257):
        assert perplexity(math.log(V)) == pytest.approx(V, rel=1e-12)
        assert bits_per_character(math.log(V)) == pytest.approx(math.log2(V), rel=1e-12)
    # At initialisation a zero-logit model has loss ln 65 = 4.174 on 65 characters.
    ids = torch.randint(0, 65, (4, 50), generator=torch.Generator().manual_seed(0))
    loss = causal_lm_loss(BigramLM(65), ids)
    assert loss.item() == pytest.approx(4.174387, abs=1e-6)
    assert perplexity(loss) == pytest.approx(65.0, rel=1e-6)
    # Per-token losses are averaged first.
    assert perplexity(torch.tensor([1.0, 3.0])) == pytest.approx(math.exp(2.0))
    # 1000 tokens at 2 nats each, over 4000 characters and 5000 bytes.
    assert bits_per_character(2.0, 1000, 4000) == pytest.approx(0.5 / math.log(2))
    text = "é" * 2500  # 2500 characters, 5000 UTF-8 bytes
    assert bits_per_byte(2.0, 1000, text) == pytest.approx(0.4 / math.log(2))
    with pytest.raises(ValueError, match=r"loss must be in \[0, inf\)"):
        perplexity(-1.0)
    with pytest.raises(ValueError, match="n_tokens and n_chars must be given together"):
        bits_per_character(1.0, n_tokens=3)


def test_code_length_and_arithmetic_coding_within_two_bits():
    assert code_length(0.5) == 1.0 and code_length(1.0) == 0.0
    assert code_length(1 / 1024) == pytest.approx(10.0)
    torch.testing.assert_close(code_length(torch.tensor([0.25, 0.125])), torch.tensor([2.0, 3.0]))
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\]"):
        code_length(0.0)
    rng = np.random.default_rng(0)
    for trial in range(30):
        n, V = int(rng.integers(0, 25)), int(rng.integers(2, 6))
        distributions = rng.dirichlet(np.ones(V), size=n).tolist()
        symbols = [int(rng.choice(V, p=np.array(q) / sum(q))) for q in distributions]
        code = arithmetic_encode(symbols, distributions)
        ideal = sum(code_length(q[x] / sum(q)) for q, x in zip(distributions, symbols, strict=True))
        assert ideal <= len(code) < ideal + 2, trial
        assert len(code) <= math.ceil(ideal - 1e-12) + 1
        assert arithmetic_decode(code, distributions) == symbols


def test_synthetic_corpus_is_seeded_and_has_its_entropy_rate():
    a, b = synthetic_corpus(5000, seed=3), synthetic_corpus(5000, seed=3)
    assert a == b and a != synthetic_corpus(5000, seed=4) and len(a) == 5000
    assert set(a) <= set(DEFAULT_SOURCE.alphabet)
    π, A = DEFAULT_SOURCE.stationary(), DEFAULT_SOURCE.transitions
    np.testing.assert_allclose(π @ A, π, atol=1e-12)
    # The empirical conditional entropy of a long sample approaches the entropy rate, and so
    # do the empirical character frequencies the stationary distribution.
    text = synthetic_corpus(200_000, seed=0)
    vocab = CharVocab(DEFAULT_SOURCE.alphabet)
    ids = vocab.encode(text).numpy()
    counts = np.zeros_like(A)
    np.add.at(counts, (ids[:-1], ids[1:]), 1)
    freq = counts / counts.sum()
    cond = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    H = -(freq[counts > 0] * np.log(cond[counts > 0])).sum()
    assert H == pytest.approx(DEFAULT_SOURCE.entropy_rate(), abs=0.01)
    np.testing.assert_allclose(np.bincount(ids, minlength=len(vocab)) / len(ids), π, atol=0.005)
    # Closed form: a chain that ignores its state is i.i.d., with the entropy of a row.
    row = np.array([0.5, 0.25, 0.25])
    iid = MarkovSource("abc", np.tile(row, (3, 1)))
    assert iid.entropy_rate() == pytest.approx(1.5 * math.log(2), rel=1e-12)
    with pytest.raises(ValueError, match="transitions must be non-negative"):
        MarkovSource("ab", np.array([[0.5, 0.6], [0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"n_chars must be an integer in \[1, inf\]"):
        synthetic_corpus(0)


def test_char_vocab_and_random_windows():
    vocab = CharVocab.from_text("banana")
    assert vocab.chars == "abn" and len(vocab) == 3
    assert vocab.decode(vocab.encode("nab")) == "nab"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("bandana")
    with pytest.raises(ValueError, match=r"ids must be in \[0, 2\]"):
        vocab.decode([3])
    with pytest.raises(ValueError, match="chars must be distinct"):
        CharVocab("aa")
    ids = torch.arange(100)
    w = random_windows(ids, 8, 10, generator=5)
    assert w.shape == (8, 10)
    assert (w[:, 1:] - w[:, :-1] == 1).all()  # consecutive tokens
    torch.testing.assert_close(w, random_windows(ids, 8, 10, generator=5))
    with pytest.raises(ValueError, match=r"length must be an integer in \[1, 100\]"):
        random_windows(ids, 2, 101)


def test_bigram_training_matches_a_plain_torch_loop_and_is_seeded():
    kw = dict(lr=20.0, batch_size=8, momentum=0.5, steps=40, length=16, n_chars=3000, seed=2)
    run = train_bigram_lm(**kw)
    again = train_bigram_lm(**kw)
    np.testing.assert_array_equal(run.losses, again.losses)
    # The same run written with torch.optim.SGD and F.cross_entropy.
    vocab = CharVocab(DEFAULT_SOURCE.alphabet)
    ids = vocab.encode(DEFAULT_SOURCE.sample(3000, 2))
    W = torch.zeros(len(vocab), len(vocab), requires_grad=True)
    opt = torch.optim.SGD([W], lr=20.0, momentum=0.5)
    g = torch.Generator().manual_seed(2)
    reference = []
    for _ in range(40):
        batch = random_windows(ids, 8, 16, g)
        loss = F.cross_entropy(W[batch[:, :-1]].reshape(-1, len(vocab)), batch[:, 1:].reshape(-1))
        reference.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(run.losses, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(run.model.W.detach(), W.detach(), rtol=1e-4, atol=1e-5)


def test_bigram_training_starts_at_ln_V_and_approaches_the_entropy_rate():
    run = train_bigram_lm(lr=10.0, momentum=0.9, batch_size=32, steps=300)
    V = DEFAULT_SOURCE.vocab_size
    assert run.losses[0] == pytest.approx(math.log(V), rel=1e-6)
    assert run.population_losses[0] == pytest.approx(math.log(V), rel=1e-12)
    assert run.diverged_at is None and len(run.population_losses) == 301
    # Gibbs' inequality: no model beats the entropy rate; this one gets close.
    assert (run.population_losses >= run.entropy_rate - 1e-12).all()
    assert run.population_losses[-1] < run.entropy_rate + 0.05
    assert run.model.population_loss(DEFAULT_SOURCE) == pytest.approx(run.population_losses[-1])


def test_a_diverging_run_is_reported():
    run = train_bigram_lm(lr=3000.0, momentum=0.9, steps=100)
    assert run.diverged_at is not None and run.diverged_at < 100
    assert np.isfinite(run.losses).all() and len(run.losses) == run.diverged_at - 1


# -- generation, the chapter's exercises and demo --------------------------------------------


def test_generate_is_seeded_and_follows_the_model():
    # A model that always predicts "current + 1 mod 5" with certainty.
    W = torch.full((5, 5), -1e4)
    W[torch.arange(5), (torch.arange(5) + 1) % 5] = 0.0
    model = BigramLM(5)
    with torch.no_grad():
        model.W.copy_(W)
    out = generate(model, torch.tensor([[2]]), 6)
    assert out.tolist() == [[2, 3, 4, 0, 1, 2, 3]]
    # A uniform model samples every token about equally often, reproducibly.
    prompt = torch.zeros(1000, 1, dtype=torch.long)
    sample = generate(BigramLM(4), prompt, 4, seed=1)
    assert sample.shape == (1000, 5)
    assert torch.equal(sample, generate(BigramLM(4), prompt, 4, seed=1))
    counts = torch.bincount(sample[:, 1:].flatten(), minlength=4) / 4000
    assert (counts - 0.25).abs().max() < 0.03
    with pytest.raises(ValueError, match=r"temperature must be in \(0, inf\)"):
        generate(model, torch.tensor([[0]]), 3, temperature=0.0)


def test_exercise_answers():
    from chapters import run_solution

    ns = run_solution("objectives/language-modelling.md", "ex-language-modelling-units")
    assert ns["ppl"] == pytest.approx(6.5535, abs=1e-3)
    assert ns["bpc"] == pytest.approx(2.7123, abs=1e-3)
    ns = run_solution("objectives/language-modelling.md", "ex-language-modelling-bpb")
    assert ns["a"] == pytest.approx(1.7312, abs=1e-3)
    assert ns["b"] == pytest.approx(1.0305, abs=1e-3)
    ns = run_solution("objectives/language-modelling.md", "ex-language-modelling-entropy-rate")
    expected = 5 / 6 * -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) + 1 / 6 * math.log(2)
    assert ns["answer"] == pytest.approx(expected, rel=1e-10)
    assert ns["answer"] == pytest.approx(0.3864, abs=1e-4)
    assert ns["unigram"] == pytest.approx(0.4506, abs=1e-4)
    ns = run_solution("objectives/language-modelling.md", "ex-language-modelling-predictions")
    assert ns["answer"] == 758


def test_bigram_training_demo_calls_the_package_and_updates_in_place():
    from llmtrain.demos.objectives.language_modelling import bigram_training_demo

    demo = bigram_training_demo(steps=60)
    first = demo.png()
    curve = demo.figure.axes[0].lines[1]
    demo.set(lr=30.0, batch_size=8, momentum=0.2)
    assert demo.png() != first
    expected = train_bigram_lm(lr=30.0, batch_size=8, momentum=0.2, steps=60, length=32, seed=0)
    np.testing.assert_array_equal(demo.result.losses, expected.losses)
    np.testing.assert_array_equal(curve.get_ydata(), expected.population_losses)
    demo.set(lr=300.0, momentum=0.99)
    assert demo.result.diverged_at is not None
    assert [t for t in demo.figure.texts if "diverged" in t.get_text()]


def test_bigram_training_demo_extremes_behave_as_the_chapter_says():
    # The chapter: at the slider's smallest learning rate the loss barely leaves ln V in the
    # demo's 100 steps, whatever the batch size; at its largest, with high momentum, it diverges.
    from llmtrain.demos.objectives.language_modelling import bigram_training_demo

    demo = bigram_training_demo()
    lr, momentum = demo.sliders["lr"], demo.sliders["momentum"]
    for batch_size in (1, 16, 64):
        for mu in (0.0, 0.5):
            run = demo.compute(lr=lr.low, batch_size=batch_size, momentum=mu)
            assert run.diverged_at is None
            assert run.uniform_loss - 0.1 < run.population_losses[-1] < run.uniform_loss
    assert demo.compute(lr=lr.high, momentum=momentum.high).diverged_at is not None
    # The default learning rate, by contrast, gets most of the way to the entropy rate.
    run = demo.compute()
    assert run.population_losses[-1] < run.entropy_rate + 0.2


def test_markov_source_from_text_is_the_cyclic_bigram_frequencies():
    source = MarkovSource.from_text("abab")
    assert source.alphabet == "ab"
    np.testing.assert_array_equal(source.transitions, [[0.0, 1.0], [1.0, 0.0]])
    assert source.entropy_rate() == 0.0  # deterministic alternation
    assert source.sample(6, seed=3) in ("ababab", "bababa")
    source = MarkovSource.from_text("aab")  # a->a, a->b, b->a (cyclic)
    np.testing.assert_allclose(source.transitions, [[0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(source.stationary(), [2 / 3, 1 / 3], atol=1e-12)
    assert source.entropy_rate() == pytest.approx(2 / 3 * math.log(2), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 distinct characters"):
        MarkovSource.from_text("aaaa")
