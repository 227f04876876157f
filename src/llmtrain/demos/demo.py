"""One mechanism for every interactive figure in the book.

A :class:`Demo` joins three things:

- ``compute(**params)``: a call into the package (an optimizer run, a loss, a mask), a pure
  function of its parameters;
- ``draw(fig, result, **params)``: a plot of that result on a blank figure;
- the :class:`Slider` s that name the parameters, with their ranges and defaults.

In a notebook, :meth:`Demo.show` displays the figure for the current values as an ordinary
image output (so the static web page shows a real figure) and, under it, the sliders; moving
a slider recomputes, redraws and replaces that image in place. The static book moves the same
sliders over a grid of values at build time and keeps each figure (see
:mod:`llmtrain.demos.static`), so its sliders move on a web page with no kernel behind it; a
figure must therefore depend on its slider values only. A demo made by a function decorated
with :func:`demo_factory` records how it was made, which is what lets the build make the same
demo again in another process.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .._checks import check_int, check_real

__all__ = ["Demo", "DemoOrigin", "Slider", "demo_factory"]


def format_value(value) -> str:
    """A slider value as the live slider shows it: three significant digits."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.3g}"


@dataclass(frozen=True)
class DemoOrigin:
    """The factory call that made a demo: ``module.qualname(*args, **kwargs)``."""

    module: str
    qualname: str
    args: tuple = ()
    kwargs: Mapping[str, Any] | None = None

    def make(self) -> Demo:
        """Call the factory again: a fresh demo, as the original was when it was made."""
        import importlib

        factory = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            factory = getattr(factory, part)
        return factory(*self.args, **(self.kwargs or {}))


def demo_factory(make: Callable[..., Demo]) -> Callable[..., Demo]:
    """Decorate a function that returns a :class:`Demo`, so the demo knows how it was made.

    The static book rebuilds every demo in worker processes to precompute its frames; a
    record of the call (module, name and arguments) is all it needs, where pickling the
    demo would drag its figure, and sometimes a model, along.
    """

    @functools.wraps(make)
    def factory(*args, **kwargs) -> Demo:
        demo = make(*args, **kwargs)
        if not isinstance(demo, Demo):
            raise TypeError(f"{make.__qualname__} must return a Demo, got {type(demo).__name__}")
        demo.origin = DemoOrigin(make.__module__, make.__qualname__, args, dict(kwargs))
        return demo

    return factory


@dataclass(frozen=True)
class Slider:
    """A named numeric parameter of a demo, with its valid range and default.

    ``scale="log"`` gives a slider that moves in powers of ten (for learning rates);
    ``integer=True`` gives whole numbers (for batch sizes and step counts).
    """

    name: str
    low: float
    high: float
    default: float
    step: float | None = None
    scale: str = "linear"
    integer: bool = False
    label: str | None = None

    def __post_init__(self):
        if self.scale not in ("linear", "log"):
            raise ValueError(f"scale must be 'linear' or 'log', got {self.scale!r}")
        if not self.low < self.high:
            raise ValueError(
                f"slider {self.name!r}: low must be < high, got {self.low}, {self.high}"
            )
        if self.scale == "log" and self.low <= 0:
            raise ValueError(f"slider {self.name!r}: a log slider needs low > 0, got {self.low}")
        if not self.low <= self.default <= self.high:
            raise ValueError(
                f"slider {self.name!r}: default must be in [{self.low:g}, {self.high:g}], "
                f"got {self.default!r}"
            )

    def check(self, value):
        """Return ``value`` if it lies in [low, high], else raise an error naming the slider."""
        if self.integer:
            return check_int(self.name, value, int(self.low), int(self.high))
        return check_real(self.name, value, self.low, self.high)

    def grid(self, n: int) -> list:
        """``n`` values spanning the range (log-spaced on a log slider), for static grids."""
        n = check_int("n", n, 2)
        if self.scale == "log":
            values = np.geomspace(self.low, self.high, n)
        else:
            values = np.linspace(self.low, self.high, n)
        if self.integer:
            return sorted({round(v) for v in values})
        return [float(v) for v in values]

    def widget(self):
        """The ipywidgets slider for this parameter."""
        import ipywidgets as w

        common = dict(
            value=self.default,
            description=self.label or self.name,
            continuous_update=False,
            style={"description_width": "initial"},
            layout=w.Layout(width="420px"),
        )
        if self.integer:
            return w.IntSlider(
                min=int(self.low), max=int(self.high), step=int(self.step or 1), **common
            )
        if self.scale == "log":
            return w.FloatLogSlider(
                min=math.log10(self.low),
                max=math.log10(self.high),
                step=self.step or 0.05,
                base=10,
                readout_format=".3g",
                **common,
            )
        return w.FloatSlider(
            min=self.low,
            max=self.high,
            step=self.step or (self.high - self.low) / 100,
            readout_format=".3g",
            **common,
        )


class Demo:
    """An interactive figure: sliders -> ``compute`` (package code) -> ``draw`` -> image.

    Parameters
    ----------
    compute : callable
        ``compute(**params)`` returns the result to draw; ``params`` are the slider values
        together with ``fixed``.
    draw : callable
        ``draw(fig, result, **params)`` draws ``result`` on the blank figure ``fig``. It may
        return an update function ``update(result, **params)`` that changes the artists it
        made in place (``set_data`` and the like); later slider moves then call that instead
        of drawing from scratch, which is what keeps a move under 100 ms. Without one, every
        move redraws the whole figure.
    sliders : sequence of Slider
        The parameters a reader can move.
    fixed : mapping, optional
        Further keyword arguments passed to ``compute`` and ``draw`` unchanged.
    figsize : tuple, optional
        Figure size in inches.
    dpi : int, optional
        Resolution of the image shown in the page.
    alt : str, optional
        What the figure shows, in a sentence or two, for readers who cannot see it (the
        image's alt text); the slider values are appended by :meth:`alt_text`.
    static_points : int, optional
        Positions per slider on the static page, instead of the usual rule (see
        :func:`llmtrain.demos.static.static_grid`): a coarser grid for a demo whose
        ``compute`` is slow, such as a training run.
    static_note : str, optional
        Why the static grid is coarser, said on the page (``"each position trains a model"``).
    static_main : sequence of str, optional
        With more than three sliders: the three whose every combination the static page
        holds (default: the first three); each other slider moves on its own.

    Notes
    -----
    If the result has a ``diverged_at`` attribute that is not ``None`` (as
    :class:`llmtrain.optim.Trajectory` has), the figure says so in red, so that a run that
    blew up is never shown as an empty or NaN-filled plot.
    """

    def __init__(
        self,
        compute: Callable[..., Any],
        draw: Callable[..., None],
        sliders: Sequence[Slider],
        *,
        fixed: Mapping[str, Any] | None = None,
        figsize: tuple[float, float] = (9.0, 3.6),
        dpi: int = 80,
        alt: str | None = None,
        static_points: int | None = None,
        static_note: str | None = None,
        static_main: Sequence[str] | None = None,
    ):
        names = [s.name for s in sliders]
        if len(set(names)) != len(names):
            raise ValueError(f"sliders must have distinct names, got {names}")
        self.compute_fn = compute
        self.draw_fn = draw
        self.sliders = {s.name: s for s in sliders}
        self.fixed = dict(fixed or {})
        overlap = set(self.fixed) & set(self.sliders)
        if overlap:
            raise ValueError(f"fixed and sliders must not share names, got {sorted(overlap)}")
        self.values = {s.name: s.default for s in sliders}
        self.alt = alt
        self.static_points = (
            None if static_points is None else check_int("static_points", static_points, 2)
        )
        self.static_note = static_note
        self.static_main = None if static_main is None else tuple(static_main)
        if self.static_main is not None and (
            len(self.static_main) != 3 or not set(self.static_main) <= set(self.sliders)
        ):
            raise ValueError(
                f"static_main must name three of the sliders {sorted(self.sliders)}, "
                f"got {static_main!r}"
            )
        self.origin: DemoOrigin | None = None  # set by demo_factory
        self.figsize, self.dpi = tuple(figsize), int(dpi)
        self.figure = Figure(figsize=figsize, dpi=dpi)
        self._canvas = FigureCanvasAgg(self.figure)
        self.result = None
        self._update_fn = None
        self._message = None
        self._widgets: dict | None = None
        self._holding = False
        self._handle = None

    # -- computing and drawing -------------------------------------------------------------

    def params(self, **overrides) -> dict:
        """The keyword arguments of ``compute`` for the current values and ``overrides``."""
        unknown = set(overrides) - set(self.sliders)
        if unknown:
            raise ValueError(
                f"unknown demo parameter(s) {sorted(unknown)}; "
                f"the sliders are {sorted(self.sliders)}"
            )
        values = {**self.values, **overrides}
        checked = {name: self.sliders[name].check(v) for name, v in values.items()}
        return {**self.fixed, **checked}

    def compute(self, **overrides):
        """Call the package function for the current values (and ``overrides``)."""
        return self.compute_fn(**self.params(**overrides))

    def redraw(self) -> Figure:
        """Recompute for the current values and redraw ``self.figure`` in place."""
        params = self.params()
        self.result = self.compute_fn(**params)
        if self._message is not None:
            self._message.remove()
            self._message = None
        if self._update_fn is None:
            self._draw_from_scratch(params)
        else:
            self._update_fn(self.result, **params)
        diverged_at = getattr(self.result, "diverged_at", None)
        if diverged_at is not None:
            self._message = self.figure.text(
                0.5,
                0.5,
                f"diverged at step {diverged_at}\n(the loss blew up: lower the learning rate)",
                ha="center",
                va="center",
                fontsize=13,
                color="#b00020",
                bbox=dict(boxstyle="round", facecolor="white", edgecolor="#b00020", alpha=0.9),
            )
        return self.figure

    def _draw_from_scratch(self, params: dict) -> None:
        """Call ``draw`` on a blank figure. When it returns an update function, the layout is
        computed once for the default values and then frozen (re-running it on every move
        costs more than the rest of an update), and the update function moves the figure to
        ``params``: so a figure depends only on its values, never on the moves before."""
        self.figure.clear()
        self.figure.set_layout_engine("constrained")
        self._update_fn = self.draw_fn(self.figure, self.result, **params)
        if self._update_fn is None:
            return
        if not callable(self._update_fn):
            raise TypeError(f"draw must return None or an update function, got {self._update_fn!r}")
        defaults = self.params(**{name: s.default for name, s in self.sliders.items()})
        if defaults != params:
            self.figure.clear()
            self._update_fn = self.draw_fn(self.figure, self.compute_fn(**defaults), **defaults)
        self.figure.get_layout_engine().execute(self.figure)
        self.figure.set_layout_engine(None)
        if defaults != params:
            self._update_fn(self.result, **params)

    def png(self) -> bytes:
        """The current figure as PNG bytes."""
        if self.result is None:
            self.redraw()
        # One draw of the canvas and a fast compression: savefig would draw twice and
        # compress hard, and this runs on every slider move.
        self._canvas.draw()
        buffer = io.BytesIO()
        PIL.Image.fromarray(np.asarray(self._canvas.buffer_rgba())).save(
            buffer, format="png", compress_level=1
        )
        return buffer.getvalue()

    def alt_text(self, values: Mapping[str, Any] | None = None) -> str:
        """The image's alt text: what the figure shows, and at which slider values."""
        values = {**self.values, **(values or {})}
        settings = ", ".join(
            f"{s.label or s.name} = {format_value(values[name])}"
            for name, s in self.sliders.items()
        )
        return f"{self.alt or 'Demo figure.'} Shown for {settings}."

    # -- moving the sliders ----------------------------------------------------------------

    def set(self, **values) -> Demo:
        """Move sliders programmatically (as a reader would), then recompute and redraw."""
        self.params(**values)  # validate everything before changing anything
        if self._widgets is not None:
            with self._hold():
                for name, v in values.items():
                    self._widgets[name].value = v
        self.values.update(values)
        self._update()
        return self

    def widgets(self) -> dict:
        """The ipywidgets sliders, created on first use and wired to redraw."""
        if self._widgets is None:
            self._widgets = {name: s.widget() for name, s in self.sliders.items()}
            for name, widget in self._widgets.items():
                widget.observe(self._on_change(name), names="value")
        return self._widgets

    def _on_change(self, name: str):
        def handler(change):
            self.values[name] = change["new"]
            if not self._holding:
                self._update()

        return handler

    @contextlib.contextmanager
    def _hold(self):
        """Move several widgets without redrawing after each one."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def _update(self) -> None:
        self.redraw()
        if self._handle is not None:
            from IPython.display import Image

            self._handle.update(Image(data=self.png(), format="png"))

    # -- showing ---------------------------------------------------------------------------

    def show(self) -> None:
        """Display the figure (a plain image output) and the sliders that redraw it.

        In the book's build (``LLMTRAIN_STATIC_DEMOS=1``) it displays the image alone, with a
        description of the demo in the output's metadata, from which the build makes static
        sliders (:mod:`llmtrain.demos.static_page`); live widgets would need a kernel.
        """
        from IPython.display import Image, display
        from ipywidgets import VBox

        from . import static

        self.redraw()
        if os.environ.get(static.ENV_FLAG) == "1":
            display(
                {"image/png": base64.b64encode(self.png()).decode(), "text/plain": self.alt_text()},
                raw=True,
                metadata={static.METADATA_KEY: static.static_spec(self).to_json()},
            )
            return
        self._handle = display(Image(data=self.png(), format="png"), display_id=True)
        display(VBox(list(self.widgets().values())))
