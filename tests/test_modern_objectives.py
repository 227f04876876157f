"""Fill-in-the-middle, multi-token prediction and UL2's mixture of denoisers."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from llmtrain.objectives import (
    UL2_DENOISERS,
    Denoiser,
    fim_format,
    fim_transform,
    fim_undo,
    multi_token_loss,
    multi_token_targets,
    prefix_lm_mask,
    ul2_denoise,
    ul2_sample,
)

SENT = {"prefix_id": 1000, "suffix_id": 1001, "middle_id": 1002}
P, S, M = 1000, 1001, 1002


def within_binomial(k, n, p, z=4.5):
    """k successes in n trials are within z standard deviations of the mean n p."""
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


# -- fill-in-the-middle ----------------------------------------------------------------------


@pytest.mark.algorithm("alg-fim-transform")
def test_fim_undo_inverts_fim_transform_exactly_on_random_documents():
    g = torch.Generator().manual_seed(0)
    modes = set()
    for seed in range(300):
        n = int(torch.randint(1, 40, (), generator=g))
        x = torch.randint(0, 1000, (n,), generator=g)
        y = fim_transform(x, **SENT, fim_rate=0.8, spm_rate=0.5, generator=seed)
        assert torch.equal(fim_undo(y, **SENT), x)
        assert y.numel() == n + (3 if y[0] == P else 0)  # three sentinels when transformed
        modes.add("none" if y[0] != P else "spm" if y[1] == S else "psm")
    assert modes == {"none", "psm", "spm"}


@pytest.mark.algorithm("alg-fim-transform")
def test_fim_format_token_orders_psm_and_spm():
    x = [10, 11, 12, 13, 14, 15]  # prefix 10 11, middle 12 13 14, suffix 15
    psm = fim_format(x, 2, 5, mode="psm", **SENT).tolist()
    spm = fim_format(x, 2, 5, mode="spm", **SENT).tolist()
    assert psm == [P, 10, 11, S, 15, M, 12, 13, 14]
    assert spm == [P, S, 15, M, 10, 11, 12, 13, 14]
    for y in (psm, spm):
        assert fim_undo(y, **SENT).tolist() == x


@pytest.mark.algorithm("alg-fim-transform")
def test_fim_rate_and_spm_rate_match_their_probabilities():
    x = torch.arange(50)
    g = torch.Generator().manual_seed(1)
    outs = [fim_transform(x, **SENT, fim_rate=0.3, spm_rate=0.7, generator=g) for _ in range(3000)]
    fim = [y for y in outs if y[0] == P]
    spm = [y for y in fim if y[1] == S]
    assert within_binomial(len(fim), 3000, 0.3)
    # PSM with an empty prefix is the same sequence as SPM: P(prefix empty) = 1 - (50/51)^2.
    assert within_binomial(len(spm), len(fim), 0.7 + 0.3 * (1 - (50 / 51) ** 2))
    assert all(torch.equal(y, x) for y in outs if y[0] != P)


@pytest.mark.algorithm("alg-fim-transform")
def test_fim_cut_points_are_uniform_so_the_middle_averages_n_n_plus_2_over_3_n_plus_1():
    n, g = 30, torch.Generator().manual_seed(6)
    lengths = []
    for _ in range(1500):
        y = fim_transform(torch.arange(n), **SENT, fim_rate=1.0, spm_rate=0.0, generator=g)
        lengths.append(len(y) - 1 - int((y == M).nonzero()[0, 0]))
    # Independent reference: the mean of |i - j| over all (n + 1)^2 equally likely pairs.
    exact = sum(abs(i - j) for i in range(n + 1) for j in range(n + 1)) / (n + 1) ** 2
    t = torch.tensor(lengths, dtype=torch.float64)
    assert abs(float(t.mean()) - exact) < 4.5 * float(t.std()) / math.sqrt(len(t))
    # Both extremes occur: empty middles, and middles of almost the whole document.
    assert min(lengths) == 0 and max(lengths) >= n - 2


def test_fim_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fim_rate must be in"):
        fim_transform([1, 2], **SENT, fim_rate=1.5)
    with pytest.raises(ValueError, match="must not contain the FIM sentinel"):
        fim_transform([1, P], **SENT)
    with pytest.raises(ValueError, match="must differ"):
        fim_transform([1, 2], prefix_id=5, suffix_id=5, middle_id=6)
    with pytest.raises(ValueError, match="mode must be one of"):
        fim_format([1, 2], 0, 1, mode="pms", **SENT)
    with pytest.raises(ValueError, match="b must be an integer in"):
        fim_format([1, 2, 3], 2, 1, mode="psm", **SENT)
    with pytest.raises(ValueError, match="once each"):
        fim_undo([P, 1, M, 2, S], **SENT)


# -- multi-token prediction ------------------------------------------------------------------


@pytest.mark.algorithm("alg-multi-token-loss")
def test_multi_token_targets_match_a_direct_loop():
    ids = torch.randint(0, 50, (3, 9), generator=torch.Generator().manual_seed(2))
    y = multi_token_targets(ids, 4)
    assert y.shape == (3, 4, 9)
    for b in range(3):
        for k in range(1, 5):
            for t in range(9):
                want = int(ids[b, t + k]) if t + k < 9 else -100
                assert int(y[b, k - 1, t]) == want


@pytest.mark.algorithm("alg-multi-token-loss")
def test_multi_token_loss_matches_a_weighted_sum_of_torch_cross_entropies():
    g = torch.Generator().manual_seed(3)
    B, D, n, V = 2, 3, 11, 17
    ids = torch.randint(0, V, (B, n), generator=g)
    z = torch.randn(B, D, n, V, generator=g, dtype=torch.float64)
    w = [1.0, 0.3, 0.15]
    want = sum(
        w[k - 1] * F.cross_entropy(z[:, k - 1, : n - k].reshape(-1, V), ids[:, k:].reshape(-1))
        for k in range(1, D + 1)
    )
    got = multi_token_loss(z, ids, weights=w)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # A list of per-depth logits gives the same; D = 1 is the causal LM loss.
    torch.testing.assert_close(multi_token_loss(list(z.unbind(1)), ids, weights=w), want)
    one = F.cross_entropy(z[:, 0, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(multi_token_loss(z[:, :1], ids), one)


def test_multi_token_rejects_bad_arguments():
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="n_future must be an integer in"):
        multi_token_targets(ids, 5)
    with pytest.raises(ValueError, match="one weight per depth"):
        multi_token_loss(torch.zeros(2, 2, 5, 3), ids, weights=[1.0])
    with pytest.raises(ValueError, match="weights must be in"):
        multi_token_loss(torch.zeros(2, 1, 5, 3), ids, weights=[-1.0])
    with pytest.raises(ValueError, match="logits_per_depth must have shape"):
        multi_token_loss(torch.zeros(2, 1, 4, 3), ids)


# -- UL2 -------------------------------------------------------------------------------------

V = 1000  # ids 0..896 ordinary tokens, 897..899 the mode tokens, 900..999 the sentinels
MODES = {"R": 897, "S": 898, "X": 899}


def test_ul2_mixture_is_the_seven_denoisers_of_the_paper():
    table = [(d.mode, d.mean_span_length, d.noise_density) for d in UL2_DENOISERS]
    assert table == [
        ("R", 3, 0.15),
        ("R", 8, 0.15),
        ("S", 0, 0.25),
        ("X", 3, 0.5),
        ("X", 8, 0.5),
        ("X", 64, 0.15),
        ("X", 64, 0.5),
    ]


@pytest.mark.algorithm("alg-ul2-mixture")
@pytest.mark.parametrize("denoiser", [d for d in UL2_DENOISERS if d.mode != "S"])
def test_ul2_span_denoisers_have_their_noise_density_and_mean_span_length(denoiser):
    n = 512
    x = torch.randint(0, 897, (n,), generator=torch.Generator().manual_seed(4))
    spans = []
    for seed in range(10):
        e = ul2_denoise(x, denoiser, vocab_size=V, mode_ids=MODES, generator=seed)
        assert int(e.inputs[0]) == MODES[denoiser.mode]
        sentinel = e.targets >= 900
        n_noise = int((~sentinel).sum())
        assert abs(n_noise / n - denoiser.noise_density) <= 0.5 / n  # round(r n) tokens
        cuts = [*sentinel.nonzero().flatten().tolist(), len(e.targets)]
        spans += [b - a - 1 for a, b in itertools.pairwise(cuts)]
    # Span lengths average n_noise / n_span with n_span = round(n_noise / μ): within the
    # rounding of n_span, that is within μ² / (2 n_noise) + 1 of μ.
    μ = denoiser.mean_span_length
    mean = sum(spans) / len(spans)
    assert abs(mean - μ) <= μ * μ / (2 * denoiser.noise_density * n) + 1


@pytest.mark.algorithm("alg-ul2-mixture")
def test_ul2_s_denoiser_is_the_prefix_lm_split():
    s = next(d for d in UL2_DENOISERS if d.mode == "S")
    x = torch.arange(100)
    e = ul2_denoise(x, s, vocab_size=V, mode_ids=MODES)
    k = 100 - 25
    assert e.inputs.tolist() == [MODES["S"], *range(k)] and e.targets.tolist() == list(
        range(k, 100)
    )
    # As a decoder-only sequence, mode + prefix is read bidirectionally and the rest causally.
    mask = prefix_lm_mask(101, len(e.inputs))
    assert mask[: len(e.inputs), : len(e.inputs)].all()
    assert not mask[len(e.inputs), len(e.inputs) + 1 :].any()


@pytest.mark.algorithm("alg-ul2-mixture")
def test_ul2_sample_draws_denoisers_with_their_weights():
    x = torch.arange(64)
    g = torch.Generator().manual_seed(5)
    w = [1, 1, 2, 0, 0, 0, 4]  # P(R) = 2/8, P(S) = 2/8, P(X) = 4/8
    modes = [
        ul2_sample(x, vocab_size=V, mode_ids=MODES, weights=w, generator=g).denoiser.mode
        for _ in range(400)
    ]
    assert within_binomial(modes.count("S"), 400, 0.25)
    assert within_binomial(modes.count("X"), 400, 0.5)


def test_ul2_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode_ids must map"):
        ul2_denoise([1, 2, 3], UL2_DENOISERS[0], vocab_size=V, mode_ids={"R": 1})
    with pytest.raises(TypeError, match="denoiser must be a Denoiser"):
        ul2_denoise([1, 2, 3], Denoiser("Q", 3, 0.15), vocab_size=V, mode_ids=MODES)
    with pytest.raises(ValueError, match="one non-negative weight per denoiser"):
        ul2_sample([1, 2, 3], vocab_size=V, mode_ids=MODES, weights=[1.0])


# -- the chapter's exercise and demos --------------------------------------------------------


def test_exercise_fim_middle_length():
    from chapters import run_solution

    ns = run_solution("objectives/modern-objectives.md", "ex-modern-fim-middle")
    assert ns["closed_form"] == pytest.approx(2600 / 153)
    assert ns["by_sum"] == pytest.approx(ns["closed_form"])
    sd = float(torch.tensor(ns["lengths"], dtype=torch.float64).std()) / math.sqrt(4000)
    assert abs(ns["simulated"] - ns["closed_form"]) < 4.5 * sd


def test_fim_demo_shows_the_package_orders():
    from llmtrain.demos.objectives.modern_objectives import _FIM_IDS, _MID, _PRE, _SUF, fim_demo

    demo = fim_demo()
    before = demo.png()
    demo.set(start=2, length=4)
    kw = {"prefix_id": _PRE, "suffix_id": _SUF, "middle_id": _MID}
    assert demo.result["psm"] == fim_format(_FIM_IDS, 2, 6, mode="psm", **kw).tolist()
    assert demo.result["spm"] == fim_format(_FIM_IDS, 2, 6, mode="spm", **kw).tolist()
    assert demo.png() != before


def test_ul2_demo_applies_the_chosen_denoiser():
    from llmtrain.demos.objectives.modern_objectives import _IDS, _MODES, _SENTINELS, _V, ul2_demo

    demo = ul2_demo()
    demo.set(denoiser=2, seed=3)
    e = ul2_denoise(
        _IDS,
        UL2_DENOISERS[2],
        vocab_size=_V,
        mode_ids=_MODES,
        num_sentinels=_SENTINELS,
        generator=3,
    )
    assert demo.result["inputs"] == e.inputs.tolist()
    assert demo.result["targets"] == e.targets.tolist()


@pytest.mark.parametrize(
    "moves", [("fim_demo", {"start": 9, "length": 3}), ("ul2_demo", {"denoiser": 6, "seed": 2})]
)
def test_demos_after_moves_draw_what_a_fresh_demo_draws(moves):
    from demo_checks import differing_fraction, pixels

    import llmtrain.demos.objectives.modern_objectives as mod

    name, values = moves
    moved = getattr(mod, name)()
    moved.png()
    moved.set(**{k: 1 for k in values})
    moved.png()
    moved.set(**values)
    fresh = getattr(mod, name)()
    fresh.set(**values)
    assert differing_fraction(pixels(moved), pixels(fresh)) < 0.005
