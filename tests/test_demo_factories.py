"""Every demo of the book can be made again from its origin, and describes itself in words.

The static book rebuilds each demo in a worker process from ``demo.origin`` (recorded by
``@demo_factory``) and shows the demo's alt text to readers who cannot see the figure; these
tests hold every ``*_demo`` function of ``llmtrain.demos`` to both.
"""

import importlib
import inspect
import json
import pkgutil

import pytest

import llmtrain.demos
from llmtrain.demos import Demo, Slider, demo_factory


def _factories():
    for info in pkgutil.walk_packages(llmtrain.demos.__path__, prefix="llmtrain.demos."):
        module = importlib.import_module(info.name)
        for name, factory in inspect.getmembers(module, inspect.isfunction):
            if name.endswith("_demo") and factory.__module__ == module.__name__:
                yield pytest.param(
                    factory, id=f"{info.name.removeprefix('llmtrain.demos.')}.{name}"
                )


FACTORIES = list(_factories())


def test_the_walk_finds_the_books_demos():
    assert len(FACTORIES) >= 34


@pytest.fixture(scope="module")
def made():
    """Each factory called once, as a chapter calls it: no arguments."""
    cache = {}

    def make(factory):
        if factory not in cache:
            cache[factory] = factory()
        return cache[factory]

    return make


def _shown(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3g}"


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_demo_made_again_from_its_origin_is_the_same_demo(factory, made):
    demo = made(factory)
    assert isinstance(demo, Demo)
    origin = demo.origin
    assert origin is not None, f"{factory.__qualname__} is not decorated with @demo_factory"
    assert (origin.module, origin.qualname) == (factory.__module__, factory.__qualname__)
    json.dumps([list(origin.args), dict(origin.kwargs or {})])  # the build stores them as JSON
    again = origin.make()
    assert again.sliders == demo.sliders
    assert again.values == demo.values
    assert set(again.fixed) == set(demo.fixed)
    assert (again.figsize, again.dpi) == (demo.figsize, demo.dpi)
    assert again.origin == origin


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_demo_says_what_it_shows_and_at_which_values(factory, made):
    demo = made(factory)
    assert demo.alt is not None and len(demo.alt) >= 60, f"{factory.__qualname__}: no real alt"
    assert demo.alt.endswith(".") and not demo.alt.startswith("Demo figure")
    settings = ", ".join(
        f"{slider.label or name} = {_shown(slider.default)}"
        for name, slider in demo.sliders.items()
    )
    assert demo.alt_text() == f"{demo.alt} Shown for {settings}."


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_coarser_static_grid_says_why(factory, made):
    demo = made(factory)
    # The page reads "The static sliders are coarser here: <note>.", so the note finishes
    # that sentence: lower case, no full stop of its own.
    assert (demo.static_points is None) == (demo.static_note is None)
    if demo.static_note is not None:
        assert demo.static_note[0].islower() and not demo.static_note.endswith(".")
    if len(demo.sliders) <= 3:
        assert demo.static_main is None, "static_main only matters beyond three sliders"


def _tiny_demo(**options):
    return Demo(
        lambda *, a, b, c, d: a + b + c + d,
        lambda fig, result, **params: None,
        [Slider(name, 0.0, 1.0, 0.5) for name in "abcd"],
        **options,
    )


def test_demo_factory_records_the_call_and_rejects_anything_but_a_demo():
    @demo_factory
    def not_a_demo(steps: int = 3):
        return {"steps": steps}

    with pytest.raises(TypeError, match=r"not_a_demo must return a Demo, got dict"):
        not_a_demo()

    @demo_factory
    def tiny_demo(**options):
        return _tiny_demo(**options)

    demo = tiny_demo(static_points=3, static_note="each position is slow")
    assert demo.origin.qualname.endswith("tiny_demo")
    assert dict(demo.origin.kwargs) == {"static_points": 3, "static_note": "each position is slow"}


@pytest.mark.parametrize("main", [("a", "b"), ("a", "b", "e"), ("a", "b", "c", "d")])
def test_static_main_must_name_three_of_the_sliders(main):
    with pytest.raises(ValueError, match="static_main must name three of the sliders"):
        _tiny_demo(static_main=main)
    assert _tiny_demo(static_main=("d", "a", "c")).static_main == ("d", "a", "c")
