"""The demo mechanism, driven without a browser: move sliders, check recompute and redraw."""

import numpy as np
import pytest
from demo_checks import differing_fraction, pixels

from llmtrain.demos import Demo, Slider
from llmtrain.demos.overview import momentum_demo
from llmtrain.optim import Trajectory


class Recorder:
    """A compute function that remembers how it was called."""

    def __init__(self):
        self.calls = []

    def __call__(self, **params):
        self.calls.append(params)
        x = np.linspace(0, 1, 20)
        return x ** params["power"] * params["scale"]


def draw(fig, y, **params):
    fig.subplots().plot(y)


def make_demo(recorder):
    return Demo(
        recorder,
        draw,
        [Slider("power", 0.5, 4.0, 1.0), Slider("scale", 0.1, 10.0, 1.0, scale="log")],
        fixed={"offset": 3},
    )


def test_moving_a_widget_recomputes_with_the_new_value_and_changes_the_figure():
    recorder = Recorder()
    demo = make_demo(recorder)
    before = demo.png()
    assert recorder.calls[-1] == {"power": 1.0, "scale": 1.0, "offset": 3}
    demo.widgets()["power"].value = 3.0  # what dragging the slider does
    assert recorder.calls[-1] == {"power": 3.0, "scale": 1.0, "offset": 3}
    assert demo.png() != before


def test_set_moves_several_sliders_with_one_recompute():
    recorder = Recorder()
    demo = make_demo(recorder)
    demo.widgets()
    demo.set(power=2.0, scale=5.0)
    assert recorder.calls == [{"power": 2.0, "scale": 5.0, "offset": 3}]
    assert demo.widgets()["scale"].value == pytest.approx(5.0)


def test_out_of_range_values_name_the_slider_and_its_range():
    demo = make_demo(Recorder())
    with pytest.raises(ValueError, match=r"power must be in \[0.5, 4\], got 9"):
        demo.set(power=9)
    with pytest.raises(ValueError, match="unknown demo parameter"):
        demo.set(temperature=1.0)
    with pytest.raises(ValueError, match="default"):
        Slider("lr", 0.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="log slider needs low > 0"):
        Slider("lr", 0.0, 1.0, 0.5, scale="log")


def test_widgets_match_their_sliders():
    widgets = make_demo(Recorder()).widgets()
    assert type(widgets["power"]).__name__ == "FloatSlider"
    assert type(widgets["scale"]).__name__ == "FloatLogSlider"
    assert (widgets["scale"].min, widgets["scale"].max) == pytest.approx((-1.0, 1.0))
    integer = Slider("batch_size", 1, 64, 8, integer=True).widget()
    assert type(integer).__name__ == "IntSlider" and integer.value == 8


def test_a_diverged_result_is_labelled_on_the_figure():
    def compute(lr):
        return Trajectory(np.zeros((3, 2)), np.ones(3), diverged_at=3 if lr > 1 else None)

    def draw_losses(fig, trajectory, **params):
        fig.subplots().plot(trajectory.losses)

    demo = Demo(compute, draw_losses, [Slider("lr", 0.1, 2.0, 0.5)])
    demo.redraw()
    assert not [t for t in demo.figure.texts if "diverged" in t.get_text()]
    demo.set(lr=1.5)
    assert [t.get_text() for t in demo.figure.texts] == [
        "diverged at step 3\n(the loss blew up: lower the learning rate)"
    ]
    demo.set(lr=0.5)
    assert demo.figure.texts == []


def test_a_slider_grid_spans_its_range():
    assert Slider("batch_size", 1, 64, 8, integer=True).grid(4) == [1, 22, 43, 64]
    np.testing.assert_allclose(Slider("lr", 0.01, 1.0, 0.1, scale="log").grid(3), [0.01, 0.1, 1])


def test_the_overview_demo_runs_the_package_and_updates_in_place():
    demo = momentum_demo()
    first = demo.png()
    path = demo.figure.axes[0].lines[-2]
    demo.set(momentum=0.0)
    assert demo.png() != first
    assert demo.result.thetas.shape == (81, 2)
    np.testing.assert_array_equal(path.get_xydata(), demo.result.thetas)  # the same artist moved
    demo.set(lr=0.3)
    assert demo.result.diverged


def test_a_demo_draws_the_same_image_twice():
    # Two builds of the book must show the same figures.
    assert momentum_demo().png() == momentum_demo().png()


def test_the_overview_demo_after_moves_draws_what_a_fresh_demo_draws():
    # Its layout is fixed at the first draw and its static parts are frozen into an image
    # after the first move: the result must not depend on the moves that led to the values.
    moved = momentum_demo()
    moved.png()
    for values in ({"lr": 0.01}, {"momentum": 0.9}, {"lr": 0.3}, {"lr": 0.02, "momentum": 0.3}):
        moved.set(**values)
    fresh = momentum_demo()
    fresh.set(lr=0.02, momentum=0.3)  # drawn for the first time at these values
    a, b = pixels(moved), pixels(fresh)
    assert a.shape == b.shape
    assert differing_fraction(a, b) < 1e-3
