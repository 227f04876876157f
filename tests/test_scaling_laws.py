"""Scaling laws: the closed-form compute-optimal split against numerical minimisation, the
published predictions, the fit against synthetic data of known constants, and bad input."""

import math

import numpy as np
import pytest

from llmtrain.pretraining import (
    BESIROGLU_LAW,
    HOFFMANN_LAW,
    KAPLAN_LAW,
    PF_DAY,
    ChinchillaLaw,
    TrainConfig,
    bootstrap_scaling_fit,
    compute_optimal,
    fit_scaling_law,
    kaplan_allocation,
    ladder_choice,
    parameter_count,
    pretrain,
    scaling_ladder,
)

GOPHER_C = 5.76e23  # Gopher's training compute, the budget Chinchilla was sized for
LAWS = [HOFFMANN_LAW, BESIROGLU_LAW, ChinchillaLaw(E=0.5, A=30.0, B=2000.0, alpha=0.6, beta=0.2)]


def golden_section_log_N(law, C, lo=1.0, hi=1e20, tol=1e-12):
    """The N minimising law.loss(N, C / 6N), by golden-section search on log N."""
    f = lambda u: law.loss(math.exp(u), C / (6 * math.exp(u)))  # noqa: E731
    a, b = math.log(lo), math.log(hi)
    r = (math.sqrt(5) - 1) / 2
    c, d = b - r * (b - a), a + r * (b - a)
    while b - a > tol:
        if f(c) < f(d):
            b, d = d, c
            c = b - r * (b - a)
        else:
            a, c = c, d
            d = a + r * (b - a)
    return math.exp((a + b) / 2)


# -- the compute-optimal allocation ----------------------------------------------------------------


@pytest.mark.algorithm("alg-compute-optimal")
@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("C", [1e18, 5.76e23, 1e27])
def test_compute_optimal_matches_golden_section_search(law, C):
    opt = compute_optimal(law, C)
    N = golden_section_log_N(law, C)
    assert opt.N == pytest.approx(N, rel=1e-5)
    assert opt.D == pytest.approx(C / (6 * N), rel=1e-5)
    assert 6 * opt.N * opt.D == pytest.approx(C, rel=1e-12)
    assert opt.loss == pytest.approx(law.loss(N, C / (6 * N)), rel=1e-12)


@pytest.mark.algorithm("alg-compute-optimal")
def test_compute_optimal_beats_a_dense_grid_along_the_budget():
    C = 1e22
    N = np.geomspace(1e6, 1e13, 20_001)
    best = HOFFMANN_LAW.loss(N, C / (6 * N)).min()
    opt = compute_optimal(HOFFMANN_LAW, C)
    assert opt.loss <= best
    assert opt.loss == pytest.approx(best, abs=1e-8)


@pytest.mark.algorithm("alg-compute-optimal")
def test_optimal_N_and_D_grow_as_powers_of_C_whose_exponents_sum_to_one():
    law = HOFFMANN_LAW
    lo, hi = compute_optimal(law, 1e20), compute_optimal(law, 1e24)
    a = math.log(hi.N / lo.N) / math.log(1e4)
    b = math.log(hi.D / lo.D) / math.log(1e4)
    assert a == pytest.approx(law.beta / (law.alpha + law.beta), rel=1e-12)
    assert b == pytest.approx(law.alpha / (law.alpha + law.beta), rel=1e-12)
    # at the optimum the two marginal gains balance: α A / N^α = β B / D^β
    assert law.alpha * law.A / hi.N**law.alpha == pytest.approx(
        law.beta * law.B / hi.D**law.beta, rel=1e-10
    )


# -- the published predictions ---------------------------------------------------------------------


@pytest.mark.algorithm("alg-compute-optimal")
def test_besiroglu_constants_give_chinchilla_for_gophers_budget():
    # Chinchilla: 70B parameters on 1.4T tokens, about Gopher's budget
    assert 6 * 70e9 * 1.4e12 == pytest.approx(GOPHER_C, rel=0.03)
    opt = compute_optimal(BESIROGLU_LAW, GOPHER_C)
    assert opt.N == pytest.approx(70e9, rel=0.05)
    assert opt.D == pytest.approx(1.4e12, rel=0.06)
    assert 15 < opt.tokens_per_parameter < 25  # about 20 tokens per parameter


@pytest.mark.algorithm("alg-compute-optimal")
def test_hoffmanns_printed_constants_give_a_smaller_model_on_more_tokens():
    opt = compute_optimal(HOFFMANN_LAW, GOPHER_C)
    assert opt.N == pytest.approx(32.19e9, rel=0.002)
    assert opt.D == pytest.approx(2.98e12, rel=0.002)
    assert opt.tokens_per_parameter > 80


def test_kaplans_rule_gives_a_gopher_sized_model_for_gophers_budget():
    opt = kaplan_allocation(GOPHER_C)
    # Gopher itself: 280B parameters on 300B tokens
    assert 250e9 < opt.N < 330e9
    assert 280e9 < opt.D < 380e9
    assert 6 * opt.N * opt.D == pytest.approx(GOPHER_C, rel=1e-12)
    # eq. (6.7) at the critical batch size: C = 2 C_min, D = 4e10 (C_min / PF-day)^0.26
    assert opt.D == pytest.approx(4e10 * (GOPHER_C / 2 / PF_DAY) ** 0.26, rel=1e-12)
    slope = math.log(kaplan_allocation(1e25).N / kaplan_allocation(1e21).N) / math.log(1e4)
    assert slope == pytest.approx(0.74, abs=1e-12)
    assert math.isnan(opt.loss)


def test_kaplan_law_reduces_to_its_one_variable_power_laws():
    N, D = 1e9, 1e9
    inf = 1e300
    assert KAPLAN_LAW.loss(N, inf) == pytest.approx(
        (KAPLAN_LAW.N_c / N) ** KAPLAN_LAW.alpha_N, rel=1e-9
    )
    assert KAPLAN_LAW.loss(inf, D) == pytest.approx(
        (KAPLAN_LAW.D_c / D) ** KAPLAN_LAW.alpha_D, rel=1e-9
    )


@pytest.mark.algorithm("alg-compute-optimal")
def test_llama3_8b_overtrains_at_a_small_loss_penalty():
    C = 6 * 8e9 * 15e12
    for law in (HOFFMANN_LAW, BESIROGLU_LAW):
        opt = compute_optimal(law, C)
        llama = law.loss(8e9, 15e12)
        assert opt.N > 8e9 and opt.D < 15e12
        assert 0 < llama - opt.loss < 0.06
        N = golden_section_log_N(law, C)
        assert opt.loss == pytest.approx(law.loss(N, C / (6 * N)), rel=1e-12)


# -- the fit ---------------------------------------------------------------------------------------

TRUE = ChinchillaLaw(E=1.5, A=300.0, B=800.0, alpha=0.35, beta=0.3)


def synthetic(law=TRUE, noise=0.0, seed=0):
    N = np.repeat(np.geomspace(1e4, 1e6, 4), 3)
    D = np.tile(np.geomspace(5e4, 5e5, 3), 4)
    L = law.loss(N, D) * np.exp(np.random.default_rng(seed).normal(0, noise, N.shape))
    return N, D, L


@pytest.mark.algorithm("alg-scaling-law-fit")
def test_fit_recovers_the_constants_of_synthetic_data():
    N, D, L = synthetic()
    fit = fit_scaling_law(N, D, L, starts=2)
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(fit.law, name) == pytest.approx(getattr(TRUE, name), rel=1e-4), name
    assert fit.objective < 1e-12


@pytest.mark.algorithm("alg-scaling-law-fit")
def test_fit_objective_is_the_huber_loss_of_log_residuals():
    N, D, L = synthetic(noise=0.01, seed=1)
    fit = fit_scaling_law(N, D, L, starts=1)
    r = np.log(fit.law.loss(N, D)) - np.log(L)
    δ = 1e-3
    huber = np.where(np.abs(r) <= δ, 0.5 * r**2, δ * (np.abs(r) - 0.5 * δ)).sum()
    assert fit.objective == pytest.approx(huber, rel=1e-9)
    # and it is a minimum: nudging any constant makes it worse
    for name in ("E", "A", "B", "alpha", "beta"):
        for factor in (0.99, 1.01):
            law = ChinchillaLaw(**{**vars(fit.law), name: getattr(fit.law, name) * factor})
            r = np.log(law.loss(N, D)) - np.log(L)
            worse = np.where(np.abs(r) <= δ, 0.5 * r**2, δ * (np.abs(r) - 0.5 * δ)).sum()
            assert worse > fit.objective, name


@pytest.mark.algorithm("alg-scaling-law-fit")
def test_bootstrap_of_exact_data_returns_the_true_law_every_time():
    N, D, L = synthetic()
    laws = bootstrap_scaling_fit(N, D, L, resamples=3, seed=0)
    assert len(laws) == 3
    for law in laws:
        assert law.alpha == pytest.approx(TRUE.alpha, rel=1e-4)
        assert law.beta == pytest.approx(TRUE.beta, rel=1e-4)


@pytest.mark.algorithm("alg-scaling-law-fit")
def test_bootstrap_is_seeded():
    N, D, L = synthetic(noise=0.01, seed=2)
    a = bootstrap_scaling_fit(N, D, L, resamples=2, seed=5)
    b = bootstrap_scaling_fit(N, D, L, resamples=2, seed=5)
    assert a == b


# -- the ladder ------------------------------------------------------------------------------------


def test_a_two_run_ladder_measures_N_D_and_the_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMTRAIN_CACHE", str(tmp_path))
    text = "the quick brown fox jumps over the lazy dog. " * 200
    config = TrainConfig(
        n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, eval_iters=2, lr=5e-3
    )
    runs = scaling_ladder(text, widths=(16,), iters=(10, 20), config=config)
    assert [r.max_iters for r in runs] == [10, 20]
    for run in runs:
        assert run.D == run.max_iters * 4 * 16
        T = run.max_iters
        changes = {"max_iters": T, "warmup_iters": T // 10, "eval_interval": T}
        cfg = TrainConfig(**{**config.to_dict(), **changes})
        result = pretrain(text, cfg, progress=False)
        assert run.N == parameter_count(result.model.config).total
        assert run.loss == pytest.approx(result.val_loss, rel=1e-5)  # one thread or two
    assert runs[1].loss < runs[0].loss


def test_ladder_choice_picks_the_best_size_for_the_budget():
    sizes = np.array([1e4, 3e4, 1e5, 3e5])
    C = 6e10
    pick = ladder_choice(TRUE, sizes, C)
    losses = [TRUE.loss(n, C / (6 * n)) for n in sizes]
    assert pick.N == sizes[int(np.argmin(losses))]
    assert pick.loss == pytest.approx(min(losses), rel=1e-12)
    # a size that would see fewer than min_tokens is out of the running
    small = ladder_choice(TRUE, sizes, C, min_tokens=2e5)
    assert small.D >= 2e5


# -- bad input -------------------------------------------------------------------------------------


def test_budget_too_small_for_any_model_of_the_ladder_names_C():
    with pytest.raises(ValueError, match=r"^C must be at least"):
        ladder_choice(TRUE, [1e4, 1e5], 1e6, min_tokens=1e3)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_non_positive_sizes_and_tokens_name_the_argument(bad):
    with pytest.raises(ValueError, match=r"^N must be in \(0, inf\)"):
        HOFFMANN_LAW.loss([1e9, bad], 1e12)
    with pytest.raises(ValueError, match=r"^D must be in \(0, inf\)"):
        KAPLAN_LAW.loss(1e9, bad)
    with pytest.raises(ValueError, match=r"^C must be in \(0, inf\)"):
        compute_optimal(HOFFMANN_LAW, bad)
    with pytest.raises(ValueError, match=r"^C must be in \(0, inf\)"):
        kaplan_allocation(bad)
    N, D, L = synthetic()
    L[3] = bad
    with pytest.raises(ValueError, match=r"^L must be in \(0, inf\)"):
        fit_scaling_law(N, D, L)


def test_fit_rejects_too_few_runs_and_mismatched_shapes():
    N, D, L = synthetic()
    with pytest.raises(ValueError, match="at least 5 runs"):
        fit_scaling_law(N[:4], D[:4], L[:4])
    with pytest.raises(ValueError, match="one length"):
        fit_scaling_law(N, D[:-1], L)
    with pytest.raises(TypeError, match="law must be a ChinchillaLaw"):
        compute_optimal(KAPLAN_LAW, 1e20)


# -- the demo --------------------------------------------------------------------------------------


def test_demo_shows_each_laws_choice_for_the_budget():
    from llmtrain.demos.pretraining.scaling_laws import scaling_laws_demo

    demo = scaling_laws_demo()
    demo.set(C=10**23.76)
    result = demo.result
    assert result["Besiroglu"].N == pytest.approx(compute_optimal(BESIROGLU_LAW, 10**23.76).N)
    assert result["Kaplan"].N == pytest.approx(kaplan_allocation(10**23.76).N)
    assert demo.png()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the exercises ---------------------------------------------------------------------------------

# The published constants (A_N, A_D, α_N, α_D), written out again: the tests below redo the
# exercises' arithmetic from them, without the package.
PUBLISHED = {"Hoffmann": (406.4, 410.7, 0.34, 0.28), "Besiroglu": (482.01, 2085.43, 0.3478, 0.3658)}


def closed_form_N(constants, C):
    """N_opt = G (C/6)^(α_D/(α_N+α_D)), G = (α_N A_N / (α_D A_D))^(1/(α_N+α_D))."""
    A, B, a, b = constants
    return (a * A / (b * B)) ** (1 / (a + b)) * (C / 6) ** (b / (a + b))


def test_exercise_budget_of_1e24_flops():
    from chapters import run_solution

    allocations = run_solution("pretraining/scaling-laws.md", "ex-scaling-budget")["allocations"]
    for name, constants in PUBLISHED.items():
        N = closed_form_N(constants, 1e24)
        assert allocations[name].N == pytest.approx(N, rel=1e-9)
        assert allocations[name].D == pytest.approx(1e24 / (6 * N), rel=1e-9)
    # Kaplan's eq. (6.7) at C_min = C / 2, in PF-days of 10^15 · 86400 FLOPs.
    D_kaplan = 4e10 * (1e24 / 2 / 8.64e19) ** 0.26
    assert allocations["Kaplan"].D == pytest.approx(D_kaplan, rel=1e-12)
    assert allocations["Kaplan"].N == pytest.approx(1e24 / (6 * D_kaplan), rel=1e-12)
    # The numbers the solution's prose states.
    stated = {"Besiroglu": (96e9, 1.74e12, 18), "Hoffmann": (41e9, 4.0e12, 98),
              "Kaplan": (438e9, 0.38e12, 0.87)}  # fmt: skip
    for name, (N, D, ratio) in stated.items():
        a = allocations[name]
        assert a.N == pytest.approx(N, rel=0.01)
        assert a.D == pytest.approx(D, rel=0.01)
        assert a.tokens_per_parameter == pytest.approx(ratio, rel=0.02)


def test_exercise_tokens_per_parameter_is_a_power_of_the_budget():
    from chapters import run_solution

    solution = run_solution("pretraining/scaling-laws.md", "ex-scaling-ratio")
    for name, (A, B, a, b) in PUBLISHED.items():
        exponent = (a - b) / (a + b)
        assert solution["exponents"][name] == pytest.approx(exponent, rel=1e-12)
        small, large = solution["ratios"][name]
        for C, ratio in ((1e20, small), (1e26, large)):
            assert ratio == pytest.approx(C / 6 / closed_form_N((A, B, a, b), C) ** 2, rel=1e-9)
        assert large / small == pytest.approx(1e6**exponent, rel=1e-9)
    # The numbers the solution's prose states.
    assert solution["exponents"]["Besiroglu"] == pytest.approx(-0.025, abs=5e-4)
    assert solution["exponents"]["Hoffmann"] == pytest.approx(0.097, abs=5e-4)
    assert [round(r) for r in solution["ratios"]["Besiroglu"]] == [23, 16]
    assert [round(r) for r in solution["ratios"]["Hoffmann"]] == [40, 153]


def test_exercise_budget_at_which_15t_tokens_are_optimal():
    from chapters import run_solution

    solution = run_solution("pretraining/scaling-laws.md", "ex-scaling-llama-tokens")
    for name, (A, B, a, b) in PUBLISHED.items():
        # D_opt = (C/6)^(α_N/(α_N+α_D)) / G, solved for C.
        G = (a * A / (b * B)) ** (1 / (a + b))
        C = 6 * (G * 15e12) ** ((a + b) / a)
        optimum = solution["optimum"][name]
        assert optimum.C == pytest.approx(C, rel=1e-9)
        assert optimum.D == pytest.approx(15e12, rel=1e-9)
        assert optimum.N == pytest.approx(C / (6 * 15e12), rel=1e-9)
    # The numbers the solution's prose states.
    besiroglu, hoffmann = solution["optimum"]["Besiroglu"], solution["optimum"]["Hoffmann"]
    assert besiroglu.C == pytest.approx(8.3e25, rel=0.01)
    assert round(besiroglu.C / (6 * 8e9 * 15e12)) == 116
    assert besiroglu.N == pytest.approx(925e9, rel=0.001)
    assert solution["llama405"].flops < besiroglu.C / 2
    assert solution["llama405"].parameters < besiroglu.N / 2
    assert solution["llama405"].tokens / solution["llama405"].parameters == pytest.approx(
        38.5, abs=0.05
    )
    assert round(solution["optimal_ratio_405"]) == 17  # Besiroglu's D/N at 3.8e25 FLOPs
    assert hoffmann.C == pytest.approx(1.1e25, rel=0.01)
    assert hoffmann.N == pytest.approx(122e9, rel=0.005)
