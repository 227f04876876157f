"""The chapter encoders.md describes what objective_comparison_demo shows at its sliders'
positions; these tests run the demo's computation at those positions and check each claim."""

import math

import numpy as np
import pytest

from llmtrain.demos.objectives.encoders import objective_comparison_demo


@pytest.fixture(scope="module")
def demo():
    return objective_comparison_demo()


def lr_positions(demo):
    """The learning rates the log slider can take: 10^(log10(low) + k step)."""
    s = demo.sliders["lr"]
    k = round((math.log10(s.high) - math.log10(s.low)) / s.step)
    return [10 ** (math.log10(s.low) + i * s.step) for i in range(k + 1)]


def end(curve, n=10):
    return float(np.mean(curve[-n:]))


def test_slider_positions_are_the_ones_the_chapter_names(demo):
    assert [round(lr, 3) for lr in lr_positions(demo)][-3:] == [0.316, 0.562, 1.0]
    assert demo.values["momentum"] == 0.9 and demo.fixed["steps"] == 80


def test_reference_levels(demo):
    curves = demo.compute()
    assert round(curves.entropy_rate, 2) == 1.40
    assert round(curves.bidirectional_entropy, 2) == 0.59
    assert round(curves.unigram_entropy, 2) == 2.60


def test_default_run_causal_nears_its_floor_masked_stays_at_no_context_level(demo):
    curves = demo.compute()
    assert end(curves.causal, 30) < curves.entropy_rate + 0.25
    assert abs(float(np.mean(curves.masked[10:])) - curves.unigram_entropy) < 0.15
    # "Trained for 300 steps, it does break away and reaches about 2.0."
    long = demo.compute_fn(**{**demo.params(), "steps": 300})
    assert abs(float(np.mean(long.masked[10:200])) - long.unigram_entropy) < 0.15
    assert 1.8 < end(long.masked, 20) < 2.2


def test_learning_rate_claims_at_momentum_09(demo):
    *small, middle, top = lr_positions(demo)
    for lr in small:  # up to 0.316 both models train and neither blows up
        c = demo.compute(lr=lr)
        assert c.causal.max() <= c.causal[0] + 0.5 and end(c.causal) < c.causal[0] - 1.0
        assert c.masked.max() <= c.masked[0] + 0.5 and end(c.masked) < c.masked[0] - 0.8
    # 0.562: the masked model blows up, the causal one trains as well as ever.
    c = demo.compute(lr=middle)
    assert c.masked.max() > c.masked[0] + 5.0 and end(c.masked) > c.masked[0] + 2.0
    best_causal = min(end(demo.compute(lr=lr).causal) for lr in small)
    assert end(c.causal) < best_causal + 0.05
    # 1.0: the causal loss jumps above its start, falls back, ends far above the smaller rates.
    c = demo.compute(lr=top)
    assert c.causal.max() > c.causal[0] + 1.0
    assert end(c.causal) < c.causal.max() - 1.0 and end(c.causal) > best_causal + 1.0
    assert end(c.masked) > end(c.causal) + 5.0


def test_without_momentum_causal_is_slower_masked_hardly_changes(demo):
    for lr in lr_positions(demo)[:-2]:
        with_momentum, without = demo.compute(lr=lr), demo.compute(lr=lr, momentum=0.0)
        assert end(without.causal) > end(with_momentum.causal) + 0.1
        assert abs(end(without.masked, 20) - end(with_momentum.masked, 20)) < 0.2


def test_masked_curve_is_the_noisier_at_every_batch_size(demo):
    for batch_size in (4, 32, 64):
        c = demo.compute(batch_size=batch_size)
        assert np.std(np.diff(c.masked[20:])) > 1.5 * np.std(np.diff(c.causal[20:]))
