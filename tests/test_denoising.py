"""T5 span corruption and BART's noising functions: counts, inverses, invariants."""

import math

import contract
import jupytext
import numpy as np
import pytest
import torch

from llmtrain.objectives.bart_noise import (
    document_rotation,
    sentence_permutation,
    text_infilling,
    token_deletion,
    token_masking,
)
from llmtrain.objectives.span_noise import (
    noise_span_counts,
    random_spans_noise_mask,
    raw_length_for_inputs,
    span_corruption,
    undo_span_corruption,
)

V = 1000  # ids 0..899 are ordinary tokens, 900..999 the 100 sentinels


def runs(mask):
    """Lengths of the maximal runs of True in a boolean sequence."""
    out, length = [], 0
    for m in [*mask.tolist(), False]:
        if m:
            length += 1
        elif length:
            out.append(length)
            length = 0
    return out


def t5_counts(n, r, s):
    """The counts as T5's random_spans_noise_mask writes them (tf.round = half to even)."""
    noise = int(np.clip(np.round(n * r), 1, n - 1))
    return noise, max(int(np.round(noise / s)), 1)


@pytest.mark.algorithm("alg-span-corruption")
def test_noise_counts_follow_t5s_formula():
    assert noise_span_counts(512, 0.15, 3.0) == (77, 26)
    rng = np.random.default_rng(0)
    for _ in range(500):
        n, r, s = int(rng.integers(2, 600)), float(rng.uniform(0, 0.5)), float(rng.uniform(1, 8))
        assert noise_span_counts(n, r, s) == t5_counts(n, r, s)
        mask = random_spans_noise_mask(n, noise_density=r, mean_span_length=s, generator=1)
        noise, n_span = t5_counts(n, r, s)
        assert mask.shape == (n,) and int(mask.sum()) == noise
        assert len(runs(mask)) == n_span  # n_span spans of noise, separated by non-noise
        assert not mask[0] and mask[-1]  # starts with non-noise, as in T5


def t5_random_spans_helper(inputs_length, r, s):
    """T5's random_spans_helper (one sentinel per span, EOS appended), rewritten by hand."""

    def lengths(n):
        noise = round(n * r)
        spans = round(noise / s)
        return n - noise + spans + 1, noise + spans + 1

    n = inputs_length - 1
    while lengths(n + 1)[0] <= inputs_length:
        n += 1
    return n, lengths(n)[1]


def test_raw_length_for_t5s_512_token_inputs():
    # T5's pretraining: encoder inputs of 512 tokens come from raw chunks of 568 tokens
    # (85 noise tokens in 28 spans), with targets of 114 tokens, EOS included.
    assert raw_length_for_inputs(512, 0.15, 3.0) == (568, 114)
    assert noise_span_counts(568, 0.15, 3.0) == (85, 28)
    for length in (64, 128, 256, 1024):
        for r, s in ((0.15, 3.0), (0.3, 2.0), (0.1, 8.0)):
            assert raw_length_for_inputs(length, r, s) == t5_random_spans_helper(length, r, s)
    with pytest.raises(ValueError, match="inputs_length"):
        raw_length_for_inputs(2)


def run_cell_with(chapter, text):
    """Execute the one code cell of chapters/<chapter>.md that contains ``text``."""
    notebook = jupytext.read(contract.ROOT / "chapters" / f"{chapter}.md")
    (source,) = [c.source for c in notebook.cells if c.cell_type == "code" and text in c.source]
    namespace = {}
    exec(compile(source, chapter, "exec"), namespace)
    return namespace


def test_denoising_chapter_glues_t5s_lengths():
    ns = run_cell_with("objectives/denoising", "raw_length_for_inputs(")
    assert (ns["t5_raw"], ns["t5_noise"], ns["t5_spans"], ns["t5_targets"]) == (568, 85, 28, 114)


@pytest.mark.algorithm("alg-span-corruption")
def test_every_noise_span_layout_is_possible_and_spans_vary():
    # n = 10, r = 0.3 (3 noise tokens), s̄ = 1.5 (2 spans): noise lengths (1, 2) or (2, 1).
    seen = {
        tuple(
            runs(random_spans_noise_mask(10, noise_density=0.3, mean_span_length=1.5, generator=s))
        )
        for s in range(200)
    }
    assert seen == {(1, 2), (2, 1)}


@pytest.mark.algorithm("alg-span-corruption")
def test_all_noise_masks_with_the_counts_are_equally_likely():
    # n = 10, 3 noise tokens in 2 spans: 2 splits of the noise times 6 splits of the 7 other
    # tokens into 2 non-empty runs, 12 masks; T5 draws each with probability 1/12.
    counts = {}
    g = torch.Generator().manual_seed(0)
    draws = 2400
    for _ in range(draws):
        m = random_spans_noise_mask(10, noise_density=0.3, mean_span_length=1.5, generator=g)
        key = tuple(m.tolist())
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 12
    expected = draws / 12
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 31.3  # the 0.999 quantile of chi-square with 11 degrees of freedom


@pytest.mark.algorithm("alg-span-corruption")
@pytest.mark.parametrize("seed", range(30))
def test_span_corruption_is_inverted_exactly(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    r = float(rng.uniform(0.0, 0.6))
    s = float(rng.uniform(1.0, 6.0))
    ids = torch.as_tensor(rng.integers(0, 900, n))
    inputs, targets = span_corruption(
        ids, vocab_size=V, noise_density=r, mean_span_length=s, generator=seed
    )
    noise, n_span = noise_span_counts(n, r, s)
    assert inputs.numel() == n - noise + n_span and targets.numel() == noise + n_span
    sentinels = inputs[inputs >= 900].tolist()
    assert sentinels == list(range(999, 999 - n_span, -1))  # <extra_id_0>, <extra_id_1>, ...
    assert targets[targets >= 900].tolist() == sentinels and int(targets[0]) == 999
    assert torch.equal(undo_span_corruption(inputs, targets, vocab_size=V), ids)
    again = span_corruption(ids, vocab_size=V, noise_density=r, mean_span_length=s, generator=seed)
    assert torch.equal(again[0], inputs) and torch.equal(again[1], targets)


@pytest.mark.algorithm("alg-span-corruption")
def test_span_corruption_matches_a_hand_worked_example():
    ids = torch.arange(10, 30)
    mask = random_spans_noise_mask(20, noise_density=0.3, mean_span_length=2, generator=4)
    inputs, targets = span_corruption(
        ids, vocab_size=V, noise_density=0.3, mean_span_length=2, generator=4
    )
    # Build the expected pair directly from the mask.
    exp_in, exp_t, k = [], [], -1
    for i in range(20):
        if mask[i] and (i == 0 or not mask[i - 1]):
            k += 1
            exp_in.append(999 - k)
            exp_t.append(999 - k)
        (exp_t if mask[i] else exp_in).append(10 + i)
    assert inputs.tolist() == exp_in and targets.tolist() == exp_t


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(noise_density=1.5), r"noise_density must be in \[0, 1\]"),
        (dict(mean_span_length=0.5), r"mean_span_length must be in \[1, inf\)"),
        (dict(ids=[1, 950]), r"ids must be token ids in \[0, 899\]"),
        (dict(ids=[[1, 2]]), "ids must have 1 dimension"),
        (dict(ids=[3]), "ids must hold at least 2 tokens"),
        (dict(ids=list(range(300)), num_sentinels=3, vocab_size=303), "num_sentinels"),
    ],
)
def test_span_corruption_names_bad_arguments(kwargs, match):
    args = dict(ids=list(range(20)), vocab_size=V) | kwargs
    with pytest.raises(ValueError, match=match):
        span_corruption(args.pop("ids"), **args)


# -- BART ---------------------------------------------------------------------------------


def doc(n=400, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).permutation(np.arange(10, 10 + n)))


@pytest.mark.algorithm("alg-bart-noise")
def test_token_masking_masks_the_expected_fraction_and_nothing_else():
    x = doc(4000)
    y = token_masking(x, mask_id=0, probability=0.3, generator=1)
    hit = y == 0
    assert abs(hit.float().mean().item() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / 4000)
    assert torch.equal(y[~hit], x[~hit])
    assert torch.equal(y, token_masking(x, mask_id=0, probability=0.3, generator=1))


@pytest.mark.algorithm("alg-bart-noise")
def test_token_deletion_keeps_the_order_of_the_kept_tokens():
    x = doc(4000)  # distinct ids, so a kept token's original position is known
    y = token_deletion(x, probability=0.2, generator=2)
    position = {int(t): i for i, t in enumerate(x)}
    kept = [position[int(t)] for t in y]
    assert kept == sorted(kept) and len(set(kept)) == len(kept)
    assert abs(1 - len(y) / 4000 - 0.2) < 5 * math.sqrt(0.2 * 0.8 / 4000)
    assert torch.equal(y, token_deletion(x, probability=0.2, generator=2))


@pytest.mark.algorithm("alg-bart-noise")
def test_sentence_permutation_reorders_whole_sentences():
    x = torch.tensor([5, 6, 1, 7, 1, 8, 9, 10, 1, 11, 12, 1, 13])  # 1 = full stop
    sentences = [[5, 6, 1], [7, 1], [8, 9, 10, 1], [11, 12, 1], [13]]
    orders = set()
    for seed in range(60):
        y = sentence_permutation(x, end_ids=[1], generator=seed).tolist()
        # Read y back as sentences: every one is an original sentence, each used once.
        pieces, rest = [], y
        while rest:
            match = [s for s in sentences if rest[: len(s)] == s]
            assert match, (y, rest)
            pieces.append(match[0])
            rest = rest[len(match[0]) :]
        assert sorted(pieces) == sorted(sentences)
        orders.add(tuple(map(tuple, pieces)))
    assert len(orders) > 30  # 5! = 120 orders; 60 draws hit many of them


@pytest.mark.algorithm("alg-bart-noise")
def test_document_rotation_is_a_rotation_with_a_uniform_start():
    x = doc(10)
    starts = []
    for seed in range(2000):
        y = document_rotation(x, generator=seed)
        k = int((x == y[0]).nonzero())
        assert torch.equal(y, torch.cat([x[k:], x[:k]]))
        starts.append(k)
    counts = np.bincount(starts, minlength=10)
    chi2 = ((counts - 200) ** 2 / 200).sum()
    assert chi2 < 27.9  # the 0.999 quantile of chi-square with 9 degrees of freedom


@pytest.mark.algorithm("alg-text-infilling")
@pytest.mark.parametrize("seed", range(10))
def test_text_infilling_replaces_each_span_by_one_mask_and_can_be_undone(seed):
    x = doc(200, seed)
    out = text_infilling(x, mask_id=0, mask_ratio=0.3, span_rate=3.0, generator=seed)
    assert int(out.lengths.sum()) == 60  # ceil(0.3 * 200) tokens covered
    assert int((out.ids == 0).sum()) == len(out.lengths)  # one mask per span
    assert len(out.ids) == 200 - 60 + len(out.lengths)
    # Put each span back where its mask is: the original returns.
    restored, k = [], 0
    for t in out.ids.tolist():
        if t == 0:
            a = int(out.starts[k])
            restored += x[a : a + int(out.lengths[k])].tolist()
            k += 1
        else:
            restored.append(t)
    assert restored == x.tolist()
    again = text_infilling(x, mask_id=0, mask_ratio=0.3, span_rate=3.0, generator=seed)
    assert torch.equal(again.ids, out.ids)


@pytest.mark.algorithm("alg-text-infilling")
@pytest.mark.parametrize("w̄", [1.0, 3.0, 5.0])
def test_infilling_span_lengths_are_poisson(w̄):
    lengths = []
    for seed in range(300):
        out = text_infilling(doc(300, seed), mask_id=0, mask_ratio=0.3, span_rate=w̄, generator=seed)
        lengths += out.lengths[:-1].tolist()  # the last span is cut short to hit the budget
    lengths = np.array(lengths)
    k = len(lengths)
    assert abs(lengths.mean() - w̄) < 5 * math.sqrt(w̄ / k)  # Poisson variance is w̄
    p0 = math.exp(-w̄)
    assert abs((lengths == 0).mean() - p0) < 5 * math.sqrt(p0 * (1 - p0) / k)
    # Zero-length spans insert a mask without removing anything.
    assert (lengths == 0).any()


def test_bart_functions_name_bad_arguments():
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\]"):
        token_masking([1, 2], mask_id=0, probability=2)
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\]"):
        token_deletion([1, 2], probability=-1)
    with pytest.raises(ValueError, match=r"span_rate must be in \(0, 100\]"):
        text_infilling([1, 2], mask_id=0, span_rate=0)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\]"):
        text_infilling([1, 2], mask_id=0, mask_ratio=1.2)
    with pytest.raises(ValueError, match="end_ids must name"):
        sentence_permutation([1, 2], end_ids=[])
    with pytest.raises(ValueError, match="ids must not be empty"):
        document_rotation([])


# -- the chapter's exercises and demos -------------------------------------------------------


def test_exercise_t5_counts():
    from chapters import run_solution

    ns = run_solution("objectives/denoising.md", "ex-denoising-t5-counts")
    assert (ns["n_noise"], ns["spans"]) == (77, 26)
    assert (ns["input_length"], ns["target_length"]) == (461, 103)


def test_exercise_empty_infilling_spans():
    from chapters import run_solution

    ns = run_solution("objectives/denoising.md", "ex-denoising-empty-spans")
    assert ns["p_empty"] == pytest.approx(math.exp(-3))
    assert ns["m"] == 154
    assert abs(ns["mean_spans"] - 154 / 3) < 1.5


def test_span_corruption_demo_recomputes_with_the_package_and_redraws():
    from llmtrain.demos.objectives.denoising import _IDS, _V, span_corruption_demo

    demo = span_corruption_demo()
    before = demo.png()
    demo.set(noise_density=0.4, mean_span_length=2.0, seed=5)
    inputs, targets, counts = demo.result
    exp_in, exp_t = span_corruption(
        _IDS, vocab_size=_V, noise_density=0.4, mean_span_length=2.0, generator=5
    )
    assert inputs == exp_in.tolist() and targets == exp_t.tolist()
    assert counts == noise_span_counts(len(_IDS), 0.4, 2.0)
    assert demo.png() != before


def test_text_infilling_demo_recomputes_with_the_package_and_redraws():
    from llmtrain.demos.objectives.denoising import _IDS, _MASK, text_infilling_demo

    demo = text_infilling_demo()
    before = demo.png()
    demo.set(mask_ratio=0.5, span_rate=1.0, seed=2)
    expected = text_infilling(_IDS, mask_id=_MASK, mask_ratio=0.5, span_rate=1.0, generator=2)
    assert torch.equal(demo.result.ids, expected.ids)
    assert demo.png() != before


def test_undo_span_corruption_names_bad_pairs():
    with pytest.raises(ValueError, match="targets must start with a sentinel"):
        undo_span_corruption([1, 999, 2], [5, 999, 3], vocab_size=V)
    with pytest.raises(ValueError, match="inputs hold sentinel 998"):
        undo_span_corruption([1, 998, 2], [999, 3], vocab_size=V)
