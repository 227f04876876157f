"""Interactive demos and plotting, kept apart from the algorithms.

:class:`Demo` turns a package function, a plot and a few :class:`Slider` s into a figure that
a reader can move in a live kernel and that the static book shows for the default values.
"""

from .demo import Demo, DemoOrigin, Slider, demo_factory

__all__ = ["Demo", "DemoOrigin", "Slider", "demo_factory"]
