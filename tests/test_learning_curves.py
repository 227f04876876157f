"""Early stopping with patience, and the learning curves of the toy polynomial task."""

import numpy as np
import pytest
from demo_checks import differing_fraction, pixels

from chapters import run_solution
from llmtrain.demos.optimization.learning_curves import capacity_sweep, early_stopping_demo
from llmtrain.optim import EarlyStopping, polynomial_regression_data, train


def run_rule(values, **kwargs):
    """Feed ``values`` to a fresh rule until it stops; return (stop index, best index, rule)."""
    rule = EarlyStopping(**kwargs)
    for i, v in enumerate(values):
        if rule.step(v, params={"epoch": i}):
            return i, rule.best_step, rule
    return None, rule.best_step, rule


@pytest.mark.algorithm("alg-early-stopping")
@pytest.mark.parametrize(
    ("values", "kwargs", "stop", "best"),
    [
        # Falls, bottoms out at index 3, rises: with P = 2 the rule stops two evaluations later.
        ([5.0, 4.0, 3.0, 2.0, 2.5, 3.0, 3.5], dict(patience=2), 5, 3),
        # P = 0 stops at the first evaluation that does not improve.
        ([5.0, 4.0, 4.0, 3.0], dict(patience=0), 2, 1),
        # A tie is not an improvement.
        ([1.0, 1.0, 1.0], dict(patience=2), 2, 0),
        # A dip after a plateau resets the count: never stops within the sequence.
        ([3.0, 3.1, 3.2, 2.9, 3.0, 3.1], dict(patience=3), None, 3),
        # min_delta: 9.95 and 9.92 do not beat 10 by more than 0.1, so they count as waiting.
        ([10.0, 9.95, 9.92, 9.5, 9.45], dict(patience=3, min_delta=0.1), None, 3),
        ([10.0, 9.95, 9.92, 9.91], dict(patience=3, min_delta=0.1), 3, 0),
        # A diverged (NaN) evaluation never improves.
        ([2.0, float("nan"), float("inf")], dict(patience=2), 2, 0),
        # mode="max" for accuracies.
        ([0.5, 0.7, 0.8, 0.79, 0.81, 0.6, 0.6], dict(patience=2, mode="max"), 6, 4),
    ],
)
def test_early_stopping_on_hand_made_curves(values, kwargs, stop, best):
    stopped, best_step, rule = run_rule(values, **kwargs)
    assert (stopped, best_step) == (stop, best)
    assert rule.best_params == {"epoch": best}  # restore-best: the params of the best step
    assert rule.stopped == (stop is not None) and rule.stopped_step == stop


def _reference_stop(values, patience):
    """With min_delta = 0 the best index is the first argmin of the prefix; the rule stops at
    the first t that is ``patience`` (≥ 1) evaluations past it."""
    for t in range(len(values)):
        if t - int(np.argmin(values[: t + 1])) >= patience:
            return t
    return None


@pytest.mark.algorithm("alg-early-stopping")
@pytest.mark.parametrize("seed", range(30))
def test_early_stopping_matches_an_argmin_reference_on_random_curves(seed):
    rng = np.random.default_rng(seed)
    # A noisy U-shaped validation curve, as in training too long.
    t = np.arange(60)
    values = (t / 30.0 - 1.0) ** 2 + rng.uniform(0.0, 0.2) * rng.standard_normal(60)
    patience = int(rng.integers(1, 10))
    stopped, best, _ = run_rule(values, patience=patience)
    expected = _reference_stop(values, patience)
    assert stopped == expected
    end = len(values) if expected is None else expected + 1
    assert best == int(np.argmin(values[:end]))


@pytest.mark.algorithm("alg-early-stopping")
def test_the_rule_keeps_a_copy_of_the_best_parameters():
    rule = EarlyStopping(patience=1)
    θ = np.array([1.0, 2.0])
    rule.step(0.5, θ)
    θ += 10.0  # the training loop updates the parameters in place
    assert rule.step(0.7, θ)
    np.testing.assert_array_equal(rule.best_params, [1.0, 2.0])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(patience=-1), ValueError, r"patience must be an integer in \[0, inf\], got -1"),
        (dict(patience=2.5), TypeError, "patience must be an integer"),
        (dict(min_delta=-0.1), ValueError, r"min_delta must be in \[0, inf\), got -0.1"),
        (dict(mode="lowest"), ValueError, "mode must be 'min' or 'max', got 'lowest'"),
    ],
)
def test_bad_settings_are_rejected(kwargs, error, message):
    with pytest.raises(error, match=message):
        EarlyStopping(**kwargs)
    with pytest.raises(TypeError, match="value must be a real number"):
        EarlyStopping().step("0.3")


@pytest.mark.algorithm("alg-early-stopping")
def test_train_with_early_stopping_returns_the_best_epoch():
    task = polynomial_regression_data(20, 12, seed=0)
    full = train(task.train, lr=0.2, batch_size=5, epochs=300, val=task.val, seed=0)
    rule = EarlyStopping(patience=10)
    run = train(
        task.train, lr=0.2, batch_size=5, epochs=300, val=task.val, seed=0, early_stopping=rule
    )
    stop, best = _reference_stop(full.val_losses, 10), int(np.argmin(full.val_losses[:300]))
    assert run.stopped_epoch == stop and run.best_epoch == int(
        np.argmin(full.val_losses[: stop + 1])
    )
    assert 0 < run.best_epoch < stop < 300
    # The curves up to the stop are those of the full run, and θ is the best epoch's.
    np.testing.assert_array_equal(run.val_losses, full.val_losses[: stop + 1])
    again = train(task.train, lr=0.2, batch_size=5, epochs=run.best_epoch, val=task.val, seed=0)
    np.testing.assert_array_equal(run.theta, again.theta)
    assert task.val.loss(run.theta) == run.val_losses.min() < full.val_losses[-1]
    assert best <= stop  # the full run's minimum came before early stopping fired


def test_a_high_degree_model_on_little_data_overfits_with_training_time():
    # Training loss keeps falling while the validation loss turns up: the U that early
    # stopping cuts. A degree-3 fit on the same data shows no such turn.
    task = polynomial_regression_data(20, 12, noise=0.3, seed=0)
    run = train(task.train, lr=0.2, batch_size=5, epochs=300, val=task.val, seed=0)
    best = int(np.argmin(run.val_losses))
    assert 0 < best < 100
    assert run.val_losses[-1] > 1.3 * run.val_losses[best]
    assert run.train_losses[-1] < run.train_losses[best] < run.val_losses[best]
    # The training loss ends below the noise floor ½σ² that no model can beat on new data.
    assert run.train_losses[-1] < 0.5 * 0.3**2 < run.val_losses[-1]
    small = polynomial_regression_data(20, 3, noise=0.3, seed=0)
    run3 = train(small.train, lr=0.2, batch_size=5, epochs=300, val=small.val, seed=0)
    assert run3.val_losses[-1] < 1.05 * run3.val_losses.min()


def test_train_records_the_parameters_of_every_epoch():
    task = polynomial_regression_data(12, 4, seed=1)
    run = train(task.train, lr=0.1, batch_size=4, epochs=5, val=task.val)
    assert run.thetas.shape == (6, 5)
    for e in range(6):
        assert task.val.loss(run.thetas[e]) == pytest.approx(run.val_losses[e], rel=1e-14)


def test_exercise_patience():
    ns = run_solution("optimization/learning-curves.md", "ex-learning-curves-patience")
    assert ns["plain"] == (7, 5) and ns["strict"] == (5, 3)


def test_exercise_capacity():
    ns = run_solution("optimization/learning-curves.md", "ex-learning-curves-capacity")
    assert ns["best_20"][0] == 3 and ns["best_60"][0] == 3
    assert 0.035 < ns["best_60"][1] < ns["best_20"][1] < 0.06


def test_early_stopping_demo_uses_the_rule_and_moves_its_artists():
    demo = early_stopping_demo()
    first = demo.png()
    result = demo.result
    # The demo's stop and kept epoch are what the rule says on the run's validation curve.
    assert (result.stop, result.best) == (
        _reference_stop(result.run.val_losses, 10),
        int(np.argmin(result.run.val_losses[: result.stop + 1])),
    )
    stop_line = demo.figure.axes[0].lines[-1]
    demo.set(patience=30)
    assert demo.png() != first
    assert demo.result.stop > result.stop
    assert stop_line.get_xdata()[0] == demo.result.stop
    demo.set(degree=3, patience=10)
    kept = demo.figure.axes[1].lines[2]
    task = demo.result.task
    np.testing.assert_allclose(
        kept.get_ydata(), task.predict(demo.result.run.thetas[demo.result.best], kept.get_xdata())
    )


def test_capacity_sweep_shows_under_and_overfitting():
    from matplotlib.figure import Figure

    _degrees, train_losses, val_losses = capacity_sweep(Figure().subplots(), n=20)
    assert np.all(np.diff(train_losses) <= 1e-12)  # more capacity never fits worse
    assert int(np.argmin(val_losses)) == 3
    assert val_losses[0] > 5 * val_losses[3] < val_losses[-1] / 100
    assert val_losses[3] < train_losses[3]  # a validation loss below the training loss


def test_a_reused_rule_is_reset_by_train():
    task = polynomial_regression_data(20, 12, seed=0)
    rule = EarlyStopping(patience=10)
    kwargs = dict(lr=0.2, batch_size=5, epochs=300, val=task.val, seed=0, early_stopping=rule)
    first = train(task.train, **kwargs)
    second = train(task.train, **kwargs)
    assert (first.stopped_epoch, first.best_epoch) == (second.stopped_epoch, second.best_epoch)
    np.testing.assert_array_equal(first.theta, second.theta)


def test_early_stopping_demo_after_moves_draws_what_a_fresh_demo_draws():
    # After the first move the static parts are one frozen image and the training runs are
    # cached by slider values; neither may change what the figure shows.

    moved = early_stopping_demo()
    moved.png()
    for values in [dict(patience=30), dict(degree=5), dict(n=40, lr=0.05), dict(patience=3)]:
        moved.set(**values)
        moved.png()
    final = dict(degree=5, n=40, lr=0.05, patience=3)
    fresh = early_stopping_demo().set(**final)
    assert (moved.result.stop, moved.result.best) == (fresh.result.stop, fresh.result.best)
    np.testing.assert_array_equal(moved.result.run.val_losses, fresh.result.run.val_losses)
    differ = differing_fraction(pixels(moved), pixels(fresh))
    assert differ < 0.002  # only anti-aliasing where moving curves cross static lines
    # A different final state does differ, so the comparison can fail.
    other = early_stopping_demo().set(**{**final, "patience": 20})
    assert differing_fraction(pixels(moved), pixels(other)) > 0.002


def test_the_legendre_features_are_legendre_and_far_better_conditioned_than_monomials():
    task = polynomial_regression_data(20, 12, seed=0)
    x = task.x_val
    legendre = task.features(x)
    np.testing.assert_allclose(legendre[:, 2], (3 * x**2 - 1) / 2, atol=1e-12)  # P_2
    monomials = np.vander(x, 13, increasing=True)
    assert np.linalg.cond(monomials) > 1000 * np.linalg.cond(legendre)
