"""Plot routines shared by the demos: landscapes, optimizer paths and loss curves.

The algorithms never import this module; only demos and chapters do. Routines that draw
something a slider changes return the artists, so a demo's update function can move them
with ``set_data`` instead of drawing again.
"""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.text import Text
from matplotlib.ticker import LogFormatter, NullLocator

__all__ = [
    "FrozenBackground",
    "draw_landscape",
    "draw_path",
    "freeze_on_top",
    "log_axis",
    "set_path",
]


def draw_landscape(ax, problem, *, resolution: int = 100, levels: int = 18) -> None:
    """Contours of ``problem.loss`` over ``problem.window``, spaced evenly in log-loss."""
    (x0, x1), (y0, y1) = problem.window
    X, Y = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    Z = problem.loss(np.stack([X, Y], axis=-1))
    ax.contour(X, Y, np.log10(Z - Z.min() + 1e-3), levels=levels, cmap="Greys", linewidths=0.7)
    ax.plot(*problem.minimum, marker="*", color="black", markersize=11, linestyle="none")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("θ₁")
    ax.set_ylabel("θ₂")


def draw_path(ax, trajectory, *, label: str | None = None, color: str = "C0"):
    """An optimizer's path θ_0, θ_1, ... as connected dots; returns the line artist."""
    (line,) = ax.plot([], [], "-o", color=color, markersize=2.5, linewidth=1.2, label=label)
    thetas = trajectory.thetas
    ax.plot(*thetas[0], "o", color=color, markersize=6, markeredgecolor="black")
    set_path(line, trajectory)
    return line


def set_path(line, trajectory) -> None:
    """Move a line made by :func:`draw_path` to a new trajectory."""
    line.set_data(trajectory.thetas[:, 0], trajectory.thetas[:, 1])


def log_axis(ax) -> None:
    """A log-scale y axis with plain tick labels (1e-05), which render far faster than the
    default mathtext ones, and no minor tick labels."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_locator(NullLocator())


class FrozenBackground:
    """Draw the parts of a figure that no slider changes once, and reuse them as one image.

    Axis ticks, labels, contours and colour bars cost most of a redraw. After the first
    slider move, :meth:`capture` renders them (with the moving artists hidden) into a
    figure-sized image placed behind everything, and hides the originals; every later draw
    paints that image and the moving artists only. Call :meth:`capture` again after changing
    a static part (new contours when the problem changes).
    """

    def __init__(self, fig, axes, extra=()):
        self.fig = fig
        self.axes = list(axes)
        self.extra = list(extra)  # whole axes to freeze (colour bars)
        self.image = None

    def _static_artists(self, dynamic):
        keep = {id(a) for a in dynamic}
        artists = list(self.extra)
        for ax in self.axes:
            artists += [ax.patch, ax.xaxis, ax.yaxis, *ax.spines.values()]
            artists += [a for a in ax.get_children() if id(a) not in keep and a not in artists]
        return [a for a in artists if id(a) not in keep]

    def capture(self, dynamic) -> None:
        """Render everything except ``dynamic`` into the background image."""
        static = self._static_artists(dynamic)
        for a in dynamic:
            a.set_visible(False)
        for a in static:
            a.set_visible(True)
        if self.image is not None:
            self.image.set_visible(False)
        self.fig.canvas.draw()
        pixels = np.asarray(self.fig.canvas.buffer_rgba()).copy()
        for a in static:
            a.set_visible(False)
        for a in dynamic:
            a.set_visible(True)
        if self.image is None:
            self.image = self.fig.add_artist(_Pixels(pixels))
        else:
            self.image.pixels = pixels
            self.image.set_visible(True)


class _Pixels(Artist):
    """A figure-sized RGBA image drawn 1:1 at the figure's origin, behind everything (a
    ``figimage`` would resample it on every draw)."""

    def __init__(self, pixels: np.ndarray):
        super().__init__()
        self.pixels = pixels
        self.set_zorder(-10)

    def draw(self, renderer):
        if not self.get_visible():
            return
        gc = renderer.new_gc()
        renderer.draw_image(gc, 0, 0, self.pixels[::-1])  # rows bottom-up
        gc.restore()


def freeze_on_top(fig, artists):
    """Render ``artists`` that no slider changes but that must stay above the moving ones
    (legends) once, into a transparent figure-sized image, and hide them.

    The image is drawn above every axes (z-order 1) and below figure texts such as the demo
    helper's divergence message (z-order 3). A legend costs as much to draw as everything
    else a slider move redraws. Returns the image artist.
    """
    renderer = RendererAgg(round(fig.bbox.width), round(fig.bbox.height), fig.dpi)
    for artist in artists:
        artist.set_visible(True)
        artist.draw(renderer)
        artist.set_visible(False)
    image = _Pixels(np.asarray(renderer.buffer_rgba()).copy())
    image.set_zorder(1)
    return fig.add_artist(image)


def moving_title(ax, text: str = "", *, fontsize: float = 10):
    """A title that a slider changes: a plain text exactly where ``ax.set_title`` puts one.

    An axes title repositions itself on every draw, which costs time and would be frozen into
    a :class:`FrozenBackground`; this text uses the title's own transform and never moves.
    The real title, fully transparent, follows its text, so that the layout reserves the same
    room. Change the text with ``set_text``.
    """
    ax.set_title(text, fontsize=fontsize, color=(0.0, 0.0, 0.0, 0.0))
    title = _MovingTitle(
        ax.title,
        0.5,
        1.0,
        text,
        transform=ax.title.get_transform(),
        ha="center",
        va="baseline",
        fontsize=fontsize,
        fontweight=ax.title.get_fontweight(),
    )
    ax.add_artist(title)
    title.set_clip_on(False)
    title.set_in_layout(False)
    return title


class _MovingTitle(Text):
    """A text that keeps the transparent axes title equal to itself (see ``moving_title``)."""

    def __init__(self, axes_title, *args, **kwargs):
        self._axes_title = axes_title
        super().__init__(*args, **kwargs)

    def set_text(self, s):
        super().set_text(s)
        self._axes_title.set_text(s)
