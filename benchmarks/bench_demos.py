"""Slider-move latency of every demo in the book: recompute, redraw and re-encode the image.

A demo is any function named ``*_demo`` in a module of ``llmtrain.demos`` or of its
subpackages (one per part of the book); it is called with
no arguments. Each slider is moved through a grid of values, one at a time, and the median
over all moves is reported, with the slowest single demo flagged against the 100 ms target.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import statistics
import time

import llmtrain.demos

TARGET_MS = 100.0


def all_demos():
    for info in pkgutil.walk_packages(llmtrain.demos.__path__, prefix="llmtrain.demos."):
        module = importlib.import_module(info.name)
        for name, factory in inspect.getmembers(module, inspect.isfunction):
            if name.endswith("_demo") and factory.__module__ == module.__name__:
                yield f"{info.name.removeprefix('llmtrain.demos.')}.{name}", factory


def latency_ms(demo, points: int = 6, rounds: int = 2) -> list[float]:
    demo.png()  # the first draw builds the figure; moves after it are what a reader feels
    times = []
    for _ in range(rounds):
        for name, slider in demo.sliders.items():
            for value in slider.grid(points):
                start = time.perf_counter()
                demo.set(**{name: value})
                demo.png()
                times.append((time.perf_counter() - start) * 1e3)
            demo.set(**{name: slider.default})
    return times


def main() -> None:
    print(f"{'demo':45s} {'moves':>5s} {'median ms':>10s} {'p90 ms':>8s}")
    medians = []
    for name, factory in all_demos():
        times = sorted(latency_ms(factory()))
        median = statistics.median(times)
        medians.append(median)
        flag = "" if median <= TARGET_MS else f"  (over the {TARGET_MS:.0f} ms target)"
        print(
            f"{name:45s} {len(times):5d} {median:10.1f} {times[int(0.9 * len(times))]:8.1f}{flag}"
        )
    if medians:
        print(f"median over demos: {statistics.median(medians):.1f} ms")


if __name__ == "__main__":
    main()
