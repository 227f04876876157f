"""Attention masks against torch.tril and scaled_dot_product_attention; the training demo."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from demo_checks import pixels

from llmtrain.objectives.attention_masks import (
    causal_mask,
    encoder_decoder_masks,
    prefix_lm_mask,
)


def qkv(n_q, n_k, seed=0, batch=2, d_k=8):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, m, d_k, generator=g, dtype=torch.float64) for m in (n_q, n_k, n_k)]


@pytest.mark.algorithm("alg-attention-masks")
@pytest.mark.parametrize("n", [1, 2, 7, 33])
def test_causal_mask_is_tril_and_reproduces_is_causal(n):
    M = causal_mask(n)
    assert M.dtype == torch.bool
    assert torch.equal(M, torch.tril(torch.ones(n, n, dtype=torch.bool)))
    q, k, v = qkv(n, n, seed=n)
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=M)
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-13)
    if n > 1:  # the mask matters: full attention gives different outputs
        assert not torch.allclose(ours, F.scaled_dot_product_attention(q, k, v))


@pytest.mark.algorithm("alg-attention-masks")
@pytest.mark.parametrize("n", [1, 5, 16])
def test_prefix_mask_interpolates_between_causal_and_full(n):
    assert torch.equal(prefix_lm_mask(n, 0), causal_mask(n))
    assert prefix_lm_mask(n, n).all()
    for k in range(n + 1):
        M = prefix_lm_mask(n, k)
        for i in range(n):
            for j in range(n):
                assert bool(M[i, j]) == (j <= i or j < k)
        # A prefix of 1 is the same as causal: position 0 is visible to everyone anyway.
        if k == 1:
            assert torch.equal(M, causal_mask(n))
        assert int(M.sum()) == n * (n + 1) // 2 + k * (k - 1) // 2


@pytest.mark.algorithm("alg-attention-masks")
def test_prefix_tokens_do_not_see_the_continuation():
    # Changing a token after the prefix must not change any prefix output.
    n, k = 10, 4
    q, key, v = qkv(n, n, seed=1, batch=1)
    M = prefix_lm_mask(n, k)
    before = F.scaled_dot_product_attention(q, key, v, attn_mask=M)
    key2, v2 = key.clone(), v.clone()
    key2[:, 7] += 1.0
    v2[:, 7] += 1.0
    after = F.scaled_dot_product_attention(q, key2, v2, attn_mask=M)
    torch.testing.assert_close(before[:, :7], after[:, :7], rtol=0, atol=0)
    assert not torch.allclose(before[:, 7:], after[:, 7:])


@pytest.mark.algorithm("alg-attention-masks")
def test_encoder_decoder_masks_have_the_right_shapes_and_pattern():
    masks = encoder_decoder_masks(6, 4)
    assert masks.encoder.shape == (6, 6) and masks.encoder.all()
    assert torch.equal(masks.decoder, torch.tril(torch.ones(4, 4, dtype=torch.bool)))
    assert masks.cross.shape == (4, 6) and masks.cross.all()
    q, k, v = qkv(4, 6, seed=2)
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=masks.cross),
        F.scaled_dot_product_attention(q, k, v),
        rtol=1e-13,
        atol=1e-13,
    )


@pytest.mark.algorithm("alg-attention-masks")
def test_padded_keys_get_no_attention():
    # Right padding: attention with the padding mask equals attention on the real tokens only.
    n, real = 9, [9, 6, 3]
    padding = torch.tensor([[j < r for j in range(n)] for r in real])
    q, k, v = qkv(n, n, seed=3, batch=3)
    for M in (causal_mask(n, padding=padding), prefix_lm_mask(n, 2, padding=padding)):
        assert M.shape == (3, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=M)
        for b, r in enumerate(real):
            ref = F.scaled_dot_product_attention(
                q[b : b + 1, :r], k[b : b + 1, :r], v[b : b + 1, :r], attn_mask=M[b, :r, :r]
            )
            torch.testing.assert_close(out[b : b + 1, :r], ref, rtol=1e-13, atol=1e-13)
    enc_pad = torch.tensor([True, True, True, False])
    masks = encoder_decoder_masks(4, 3, encoder_padding=enc_pad)
    assert not masks.cross[:, 3].any() and masks.cross[:, :3].all()
    assert not masks.encoder[:, 3].any()


@pytest.mark.algorithm("alg-attention-masks")
def test_fully_masked_rows_of_left_padding_are_nan_in_a_plain_softmax_and_zero_in_sdpa():
    # The chapter's claim: with left padding and a causal mask, padded queries have no key;
    # a plain softmax over -inf scores gives NaN there, scaled_dot_product_attention zeros.
    n = 5
    padding = torch.tensor([[False, False, True, True, True]])
    M = causal_mask(n, padding=padding)
    empty = ~M.any(-1)
    assert empty.tolist() == [[True, True, False, False, False]]
    q, k, v = qkv(n, n, seed=5, batch=1)
    scores = (q @ k.transpose(-1, -2) / 8**0.5).masked_fill(~M, float("-inf"))
    plain = torch.softmax(scores, dim=-1) @ v
    assert torch.isnan(plain[empty]).all() and torch.isfinite(plain[~empty]).all()
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=M)
    assert (out[empty] == 0).all()
    torch.testing.assert_close(out[~empty], plain[~empty], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: causal_mask(0), ValueError, r"n must be an integer in \[1, inf\]"),
        (lambda: prefix_lm_mask(4, 5), ValueError, r"prefix_length must be an integer in \[0, 4\]"),
        (lambda: prefix_lm_mask(4, -1), ValueError, "prefix_length"),
        (lambda: causal_mask(3, padding=torch.ones(3, 4, dtype=torch.bool)), ValueError, "padding"),
        (lambda: causal_mask(3, padding=torch.ones(3)), TypeError, "padding must be a boolean"),
        (lambda: encoder_decoder_masks(3, 0), ValueError, "n_decoder"),
    ],
)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- the same model, two objectives ----------------------------------------------------------


def test_objective_comparison_is_reproducible_and_both_objectives_learn():
    from llmtrain.objectives.objective_comparison import compare_objectives

    a = compare_objectives(lr=0.3, batch_size=16, momentum=0.9, steps=60, seed=3)
    assert a.diverged_at is None and a.causal.shape == a.masked.shape == (60,)
    assert a.causal[-10:].mean() < a.causal[:5].mean() - 1.0
    # MLM learns from the 15% of tokens it hides, so it improves more slowly per step.
    assert a.masked[-10:].mean() < a.masked[0] - 0.4
    # Initial losses are about ln V for both: the models start equal and uninformed.
    assert abs(a.causal[0] - np.log(a_vocab())) < 0.6
    # Recompute without the cache: identical numbers.
    from llmtrain.objectives import objective_comparison as oc

    fresh = oc._cached.__wrapped__(0.3, 16, 0.9, 60, 24, 3)
    np.testing.assert_array_equal(fresh.causal, a.causal)
    np.testing.assert_array_equal(fresh.masked, a.masked)


def test_objective_comparison_pair_matches_two_separately_trained_models():
    # The package trains both models as one stacked pair; the reference trains two
    # TinyTransformers with two torch.optim.SGD optimizers and F.cross_entropy.
    from llmtrain.objectives import mask_tokens, random_windows
    from llmtrain.objectives import objective_comparison as oc

    lr, B, μ, steps, n, seed = 0.3, 8, 0.9, 12, 24, 1
    got = oc._cached.__wrapped__(lr, B, μ, steps, n, seed)
    vocab, ids = oc._data(20_000, seed)
    V = len(vocab)
    causal_model = oc.TinyTransformer(V + 1, n, seed=seed)
    masked_model = oc.TinyTransformer(V + 1, n, seed=seed)
    opts = [
        torch.optim.SGD(m.parameters(), lr=lr, momentum=μ) for m in (causal_model, masked_model)
    ]
    causal, full = causal_mask(n), torch.ones(n, n, dtype=torch.bool)
    g = torch.Generator().manual_seed(seed)
    reference = []
    for _ in range(steps):
        batch = random_windows(ids, B, n + 1, generator=g)
        x̃, labels = mask_tokens(batch[:, 1:], vocab_size=V + 1, mask_id=V, generator=g)
        z = causal_model(batch[:, :-1], causal)
        loss_c = F.cross_entropy(z.reshape(-1, V + 1), batch[:, 1:].reshape(-1))
        z = masked_model(x̃, full)
        loss_m = F.cross_entropy(z.reshape(-1, V + 1), labels.reshape(-1), ignore_index=-100)
        for opt in opts:
            opt.zero_grad()
        (loss_c + loss_m).backward()
        for opt in opts:
            opt.step()
        reference.append((loss_c.item(), loss_m.item()))
    reference = np.array(reference)
    np.testing.assert_allclose(got.causal, reference[:, 0], rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(got.masked, reference[:, 1], rtol=2e-4, atol=1e-5)
    assert reference[-1, 0] < reference[0, 0] - 0.5  # the runs compared did train


def a_vocab():
    from llmtrain.objectives.synthetic_text import DEFAULT_SOURCE

    return DEFAULT_SOURCE.vocab_size + 1


def test_objective_comparison_reports_divergence_and_names_bad_arguments():
    from llmtrain.objectives.objective_comparison import compare_objectives

    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        compare_objectives(momentum=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        compare_objectives(batch_size=0)


def test_exercise_mask_sizes():
    from chapters import run_solution

    ns = run_solution("objectives/attention-masks.md", "ex-masks-sizes")
    n = 512
    assert ns["causal_pairs"] == n * (n + 1) // 2 == 131_328
    assert ns["prefix_pairs"] == 131_328 + 128 * 127 // 2 == 139_456
    assert ns["encoder_decoder_pairs"] == n * n + n * (n + 1) // 2 + n * n == 655_616
    assert ns["causal_fraction"] == pytest.approx((n + 1) / (2 * n))


def test_attention_mask_demo_recomputes_with_the_package_and_redraws():
    from llmtrain.demos.objectives.attention_masks import attention_mask_demo

    demo = attention_mask_demo()
    before = demo.png()
    demo.set(n=12, prefix_length=5)
    causal, prefix, combined, n0 = demo.result
    assert n0 == 5
    assert np.array_equal(causal, causal_mask(12).numpy())
    assert np.array_equal(prefix, prefix_lm_mask(12, 5).numpy())
    # Laid side by side, the encoder-decoder's visibility is the prefix decoder's.
    assert np.array_equal(combined == 1, prefix_lm_mask(12, 5).numpy())
    assert demo.png() != before
    demo.set(prefix_length=20)  # capped at n: an encoder only
    assert demo.result[3] == 12 and demo.result[1].all()


def test_reference_entropies_of_the_comparison_match_a_direct_count():
    from llmtrain.objectives.objective_comparison import _entropies
    from llmtrain.objectives.synthetic_text import DEFAULT_SOURCE, MarkovSource

    for source in (DEFAULT_SOURCE, MarkovSource("ab", np.array([[0.9, 0.1], [0.5, 0.5]]))):
        π, P = source.stationary(), source.transitions
        V = len(π)
        unigram, bidirectional = _entropies(source)
        assert unigram == pytest.approx(-sum(p * np.log(p) for p in π if p > 0), rel=1e-12)
        # H(X_i | X_{i-1}=a, X_{i+1}=c), averaged over (a, c), one pair at a time.
        total = 0.0
        for a in range(V):
            for c in range(V):
                w = np.array([π[a] * P[a, b] * P[b, c] for b in range(V)])
                if w.sum() == 0:
                    continue
                q = w[w > 0] / w.sum()
                total += w.sum() * -(q * np.log(q)).sum()
        assert bidirectional == pytest.approx(total, rel=1e-12)
        assert bidirectional <= source.entropy_rate() <= unigram


def test_attention_mask_demo_after_moves_draws_what_a_fresh_demo_draws():
    """Backgrounds are frozen per sequence length n (and reused when n comes back): after
    moves of both sliders the figure is the one a new demo draws for the final values, up to
    anti-aliasing where a tick mark meets a mask, and back at the defaults it is the default
    figure."""

    from llmtrain.demos.objectives.attention_masks import attention_mask_demo

    def assert_same(a, b):
        diff = np.abs(a - b).sum(axis=-1)
        assert (diff > 30).sum() == 0 and (diff > 0).mean() < 1e-3

    moved = attention_mask_demo()
    default = pixels(moved)
    moves = [
        {"n": 16},  # the first move freezes the background for n = 16
        {"prefix_length": 9},
        {"n": 6},
        {"n": 16, "prefix_length": 0},  # n = 16's background again
        {"prefix_length": 3},
    ]
    final = {}
    for move in moves:
        moved.set(**move)
        moved.png()
        final.update(move)
    after = pixels(moved)
    assert_same(after, pixels(attention_mask_demo().set(**final)))
    assert moved.figure.axes[1].get_title() == "prefix decoder, n₀ = 3\n139 allowed"
    assert np.abs(after - default).sum(axis=-1).max() > 0
    moved.set(n=10, prefix_length=4)
    assert_same(pixels(moved), default)
