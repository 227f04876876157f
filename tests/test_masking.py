"""BERT's masking rule and next-sentence pairs, RoBERTa's dynamic masking."""

import math

import numpy as np
import pytest
import torch

from llmtrain.objectives import cross_entropy
from llmtrain.objectives.masked_lm import mask_tokens, masked_epochs, nsp_pairs

V, MASK, CLS, SEP = 50, 1, 2, 3
SPECIAL = (CLS, SEP)


def batch(seed=0, rows=200, n=512):
    """Token ids that never equal [MASK], with [CLS] first and [SEP] last in every row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, V, (rows, n), generator=g)
    ids[:, 0], ids[:, -1] = CLS, SEP
    return ids


def within(observed, count, p, k=5.0):
    """|observed/count - p| within k binomial standard errors."""
    se = math.sqrt(p * (1 - p) / count)
    return abs(observed / count - p) <= k * se


@pytest.mark.algorithm("alg-mlm-masking")
@pytest.mark.parametrize("seed", range(3))
def test_selection_rate_and_the_80_10_10_split_match_their_probabilities(seed):
    ids = batch(seed)
    x̃, labels = mask_tokens(ids, vocab_size=V, mask_id=MASK, special_ids=SPECIAL, generator=seed)
    candidates = ids.numel() - 2 * ids.shape[0]
    selected = labels != -100
    n_sel = int(selected.sum())
    assert within(n_sel, candidates, 0.15)
    # A random replacement is uniform over V ids: it hits [MASK] or the original with
    # probability 1/V each, so the observable shares are exactly these.
    p_mask, p_same = 0.8 + 0.1 / V, 0.1 + 0.1 / V
    p_other = 1 - p_mask - p_same
    is_mask = int((x̃[selected] == MASK).sum())
    is_same = int((x̃[selected] == ids[selected]).sum())
    is_other = n_sel - is_mask - is_same
    assert within(is_mask, n_sel, p_mask)
    assert within(is_same, n_sel, p_same)
    assert within(is_other, n_sel, p_other)
    # The tolerance is tight enough to tell 0.15 from 0.16 on this batch.
    assert not within(n_sel, candidates, 0.16) or not within(n_sel, candidates, 0.14)


@pytest.mark.algorithm("alg-mlm-masking")
def test_labels_hold_the_originals_at_selected_positions_only_and_specials_are_never_selected():
    ids = batch(1, rows=50)
    x̃, labels = mask_tokens(
        ids, vocab_size=V, mask_id=MASK, special_ids=SPECIAL, mlm_probability=0.5, generator=7
    )
    selected = labels != -100
    torch.testing.assert_close(labels[selected], ids[selected])
    torch.testing.assert_close(x̃[~selected], ids[~selected])  # unselected never change
    assert not selected[:, 0].any() and not selected[:, -1].any()
    assert (x̃[:, 0] == CLS).all() and (x̃[:, -1] == SEP).all()
    assert 0 <= int(x̃.min()) and int(x̃.max()) < V


@pytest.mark.algorithm("alg-mlm-masking")
def test_masking_is_reproducible_for_a_seed_and_changes_with_it():
    ids = batch(2, rows=20)
    kw = dict(vocab_size=V, mask_id=MASK, special_ids=SPECIAL)
    a = mask_tokens(ids, generator=11, **kw)
    b = mask_tokens(ids, generator=torch.Generator().manual_seed(11), **kw)
    c = mask_tokens(ids, generator=12, **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


@pytest.mark.algorithm("alg-mlm-masking")
def test_random_replacements_are_uniform_over_the_vocabulary():
    ids = batch(6, rows=100, n=100)
    x̃, labels = mask_tokens(
        ids,
        vocab_size=V,
        mask_id=MASK,
        mlm_probability=1.0,
        mask_fraction=0.0,
        random_fraction=1.0,
        generator=4,
    )
    counts = np.bincount(x̃.flatten().numpy(), minlength=V)
    expected = ids.numel() / V
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 85.4  # the 0.999 quantile of chi-square with 49 degrees of freedom
    assert (labels == ids).all()


@pytest.mark.algorithm("alg-mlm-masking")
def test_extreme_probabilities_select_nothing_or_every_ordinary_token():
    ids = batch(3, rows=4, n=64)
    kw = dict(vocab_size=V, mask_id=MASK, special_ids=SPECIAL)
    x̃, labels = mask_tokens(ids, mlm_probability=0.0, **kw)
    assert torch.equal(x̃, ids) and (labels == -100).all()
    x̃, labels = mask_tokens(ids, mlm_probability=1.0, mask_fraction=1.0, random_fraction=0, **kw)
    assert (x̃[:, 1:-1] == MASK).all() and torch.equal(labels[:, 1:-1], ids[:, 1:-1])


@pytest.mark.algorithm("alg-mlm-masking")
def test_mlm_loss_is_minus_log_p_of_the_original_token_at_masked_positions():
    ids = batch(4, rows=3, n=40)
    x̃, labels = mask_tokens(ids, vocab_size=V, mask_id=MASK, mlm_probability=0.3, generator=3)
    logits = torch.randn(3, 40, V, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # -Σ_i log p(x_i | x̃) over the selected i, averaged: never the corrupted token x̃_i.
    log_p = torch.log_softmax(logits, -1)
    selected = labels != -100
    expected = -log_p[selected].gather(-1, ids[selected].unsqueeze(-1)).mean()
    loss = cross_entropy(logits.transpose(1, 2), labels)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        loss,
        torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels),
        rtol=1e-12,
        atol=1e-12,
    )
    # Scoring the corrupted tokens instead (the seed notes' error) gives another number.
    wrong = -log_p[selected].gather(-1, x̃[selected].unsqueeze(-1)).mean()
    assert (x̃[selected] != ids[selected]).any() and abs(wrong - expected) > 1e-3


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(mlm_probability=1.5), ValueError, r"mlm_probability must be in \[0, 1\]"),
        (dict(mlm_probability=-0.1), ValueError, r"mlm_probability must be in \[0, 1\]"),
        (dict(mask_id=V), ValueError, "mask_id"),
        (dict(mask_fraction=0.9, random_fraction=0.2), ValueError, "mask_fraction"),
        (dict(ids=[]), ValueError, "ids must not be empty"),
        (dict(ids=[[1, 2, V]]), ValueError, r"ids must be token ids in \[0, 49\]"),
        (dict(ids=[-1, 2]), ValueError, "ids must be token ids"),
        (dict(ids=[0.5, 2.0]), TypeError, "ids must hold integer"),
        (dict(generator=-3), ValueError, "generator"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    args = dict(ids=[[5, 6, 7]], vocab_size=V, mask_id=MASK) | kwargs
    with pytest.raises(error, match=match):
        mask_tokens(args.pop("ids"), **args)


def test_dynamic_masking_draws_a_new_mask_every_epoch_static_repeats_after_duplicates():
    ids = batch(5, rows=4, n=128)
    kw = dict(vocab_size=V, mask_id=MASK, special_ids=SPECIAL, generator=1)
    dynamic = [labels for _, labels in masked_epochs(ids, 12, **kw)]
    static = [labels for _, labels in masked_epochs(ids, 12, dynamic=False, duplicates=4, **kw)]
    assert len(dynamic) == len(static) == 12
    distinct = {tuple(m.flatten().tolist()) for m in dynamic}
    assert len(distinct) == 12
    assert len({tuple(m.flatten().tolist()) for m in static}) == 4
    for e in range(12):
        assert torch.equal(static[e], static[e % 4])
    # Same seed, same sequence of masks.
    again = [labels for _, labels in masked_epochs(ids, 12, **kw)]
    assert all(torch.equal(a, b) for a, b in zip(dynamic, again, strict=True))


def toy_corpus(docs=400, seed=0):
    """Documents of 2-8 segments; a segment is (document, index), so its origin is known."""
    rng = np.random.default_rng(seed)
    return [[(d, i) for i in range(rng.integers(2, 9))] for d in range(docs)]


@pytest.mark.algorithm("alg-nsp-pairs")
def test_nsp_pairs_are_true_successors_or_segments_of_another_document():
    corpus = toy_corpus()
    pairs = nsp_pairs(corpus, generator=3)
    assert len(pairs) == sum(len(doc) - 1 for doc in corpus)
    for (d, i), (d2, i2), is_next in pairs:
        if is_next:
            assert (d2, i2) == (d, i + 1)
        else:
            assert d2 != d and 0 <= i2 < len(corpus[d2])
    # Every segment with a successor is a first segment exactly once, in order.
    assert [p.first for p in pairs] == [s for doc in corpus for s in doc[:-1]]


@pytest.mark.algorithm("alg-nsp-pairs")
def test_nsp_labels_are_balanced_and_reproducible():
    corpus = toy_corpus(docs=1000, seed=1)
    pairs = nsp_pairs(corpus, generator=5)
    share = sum(p.is_next for p in pairs)
    assert within(share, len(pairs), 0.5)
    assert pairs == nsp_pairs(corpus, generator=5)
    assert pairs != nsp_pairs(corpus, generator=6)
    # NotNext documents are spread over the corpus, not always a neighbour.
    others = {p.second[0] for p in pairs if not p.is_next}
    assert len(others) > 500


def test_nsp_rejects_corpora_it_cannot_sample_from():
    with pytest.raises(ValueError, match="at least 2 documents"):
        nsp_pairs([["a", "b"]])
    with pytest.raises(ValueError, match=r"documents\[1\] must be a non-empty"):
        nsp_pairs([["a", "b"], []])


# -- the chapters' exercises and demos ------------------------------------------------------


def test_exercise_expected_counts_in_512_tokens():
    from chapters import run_solution

    ns = run_solution("objectives/encoders.md", "ex-encoders-counts")
    assert ns["expected_mask"] == pytest.approx(61.44)
    assert ns["expected_random"] == pytest.approx(7.68)
    assert ns["expected_unchanged"] == pytest.approx(7.68)
    assert ns["sd_chosen"] == pytest.approx(math.sqrt(512 * 0.15 * 0.85))
    # The closed form agrees with the implementation on many sequences.
    ids = torch.randint(4, V, (400, 512), generator=torch.Generator().manual_seed(9))
    _, labels = mask_tokens(ids, vocab_size=V, mask_id=MASK, generator=9)
    chosen = (labels != -100).sum(dim=1).double()
    assert abs(chosen.mean().item() - 76.8) < 5 * ns["sd_chosen"] / math.sqrt(400)


def test_exercise_static_and_dynamic_masking():
    from chapters import run_solution

    ns = run_solution("objectives/encoders.md", "ex-encoders-dynamic")
    assert ns["never_static"] == pytest.approx(0.19687, abs=1e-5)
    assert ns["never_dynamic"] == pytest.approx(0.0015023, rel=1e-4)


def test_exercise_prediction_targets_per_sequence():
    from chapters import run_solution

    ns = run_solution("objectives/self-supervised.md", "ex-self-supervised-targets")
    assert ns["causal_targets"] == 511
    assert ns["mlm_expected"] == pytest.approx(76.8)
    assert ns["t5_targets"] == 103


def test_mlm_masking_demo_recomputes_with_the_package_and_redraws():
    from llmtrain.demos.objectives.encoders import _IDS, _MASK, _VOCAB, mlm_masking_demo

    demo = mlm_masking_demo()
    before = demo.png()
    demo.set(p_mask=0.6, seed=3)
    tokens, kinds = demo.result
    x̃, labels = mask_tokens(
        _IDS, vocab_size=len(_VOCAB), mask_id=_MASK, mlm_probability=0.6, generator=3
    )
    assert sum(k != "plain" for k in kinds) == int((labels != -100).sum())
    assert tokens == [_VOCAB.token(int(i)) for i in x̃]
    assert demo.png() != before


def test_objective_comparison_demo_moves_with_its_sliders():
    from llmtrain.demos.objectives.encoders import objective_comparison_demo
    from llmtrain.objectives import compare_objectives

    demo = objective_comparison_demo(steps=8)
    before = demo.png()
    demo.set(lr=0.05, batch_size=8, momentum=0.5)
    expected = compare_objectives(lr=0.05, batch_size=8, momentum=0.5, steps=8)
    np.testing.assert_array_equal(demo.result.causal, expected.causal)
    assert demo.png() != before
