"""Sliders without a kernel: every demo's figures, precomputed over a grid of slider values.

The static book cannot run ``compute`` when a reader moves a slider, so the build runs it
beforehand. For each demo on a page it takes a grid of slider values (:func:`static_grid`),
makes the demo again from its :class:`~llmtrain.demos.DemoOrigin` in a worker process, moves
its sliders through the grid exactly as a reader would, and keeps every figure: the same
``compute`` and ``draw`` as in a live kernel, so the static figure *is* the live one.

A figure is mostly the same from one grid point to the next (axes, labels, a landscape), so
frames are stored as a *base* image plus an *overlay* holding only the pixels that differ
from it, cropped to their bounding box and saved as lossless WebP. The bases are the
per-pixel most common image over a sample of frames, one per value of the slider that
changes the background most, if that pays (a contour plot redrawn for each condition number
κ). If a demo's frames would exceed ``FRAME_BUDGET``, the overlays' colours are reduced to
a palette (64, 32, 16, 12, 8, 6 or, as a last resort, 4 colours), still exact wherever a
frame equals its base. Frames that are the same image share one file.

The output for a demo is a folder holding ``manifest.js`` (which frame is which file) and the
images; it is cached under a key that hashes the demo's origin, its values, the grid and the
source of every ``llmtrain`` module the demo imports, so a rebuild redraws only what changed.
"""

from __future__ import annotations

import ast
import hashlib
import io
import itertools
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from .demo import Demo, DemoOrigin, Slider, format_value

__all__ = [
    "ENV_FLAG",
    "FRAME_BUDGET",
    "METADATA_KEY",
    "POSITIONS",
    "StaticSpec",
    "code_fingerprint",
    "code_modules",
    "read_manifest",
    "reconstruct",
    "render_static_frames",
    "static_grid",
    "static_spec",
]

# Positions per slider by number of sliders: more for one slider, the full product grid up to
# three; beyond three, the three main sliders get STAR_POSITIONS each and the others move
# one at a time (POSITIONS[3] each).
POSITIONS = {1: 33, 2: 13, 3: 9}
FRAME_BUDGET = 3_000_000  # bytes of images per demo
PALETTES = (None, 64, 32, 16, 12, 8, 6, 4)  # lossless first, then fewer colours until it fits
SAMPLE_FRAMES = 48  # frames rendered to choose the bases and the palette
# Set by the book's build for the notebooks it runs: Demo.show then shows a static demo.
ENV_FLAG = "LLMTRAIN_STATIC_DEMOS"
METADATA_KEY = "llmtrain-static-demo"  # output metadata of a demo's image in a book build


# -- the grid --------------------------------------------------------------------------------


def _snap(slider: Slider, value: float) -> float:
    """Round a grid value onto the slider's step lattice, as the live widget would."""
    if slider.integer:
        return round(value)
    if slider.step is not None and slider.scale == "linear":
        value = slider.low + round((value - slider.low) / slider.step) * slider.step
    # Three significant digits, as the slider's readout shows them: the value a reader
    # sees is the value the figure was drawn for.
    value = float(f"{value:.3g}")
    return float(min(max(value, slider.low), slider.high))


def slider_positions(slider: Slider, n: int, current) -> list:
    """``n`` values spanning the slider (all of a short integer range), sorted, including
    ``current`` so that the page's first figure is a grid point: it takes the place of the
    nearest position between the ends, so that both ends stay reachable."""
    values = sorted({_snap(slider, v) for v in slider.grid(n)})
    if slider.integer and slider.high - slider.low + 1 <= n:
        values = list(range(int(slider.low), int(slider.high) + 1))
    if current in values:
        return values
    inner = range(1, len(values) - 1)
    if not inner:
        return sorted([*values, current])
    nearest = min(inner, key=lambda i: abs(values[i] - current))
    values[nearest] = current
    return sorted(values)


@dataclass(frozen=True)
class StaticGrid:
    """The slider values the static page offers and the combinations it holds.

    ``axes`` maps each slider to its values; ``frames`` lists index tuples into them (all
    combinations up to three sliders); ``default`` is the page's first figure; ``rule`` says
    in words how the grid was chosen, for the page.
    """

    axes: dict[str, list]
    frames: list[tuple[int, ...]]
    default: tuple[int, ...]
    rule: str


def static_grid(demo: Demo) -> StaticGrid:
    """The grid of slider values whose figures the static page holds for ``demo``.

    Up to three sliders: every combination, with ``POSITIONS`` values per slider (or the
    demo's ``static_points``, for a slow demo). More than three: every combination of the
    three main sliders (``static_main``, default the first three) with the others at their
    current values, and each other slider moved on its own with all the rest at theirs.
    """
    names = list(demo.sliders)
    k = len(names)
    n = demo.static_points or POSITIONS[min(k, 3)]
    axes = {name: slider_positions(demo.sliders[name], n, demo.values[name]) for name in names}
    default = tuple(axes[name].index(demo.values[name]) for name in names)
    if k <= 3:
        frames = list(itertools.product(*(range(len(axes[name])) for name in names)))
        rule = f"{n} positions per slider, every combination"
    else:
        main = demo.static_main or tuple(names[:3])
        position = {name: i for i, name in enumerate(names)}
        frames = []
        for combo in itertools.product(*(range(len(axes[name])) for name in main)):
            frame = list(default)
            for name, index in zip(main, combo, strict=True):
                frame[position[name]] = index
            frames.append(tuple(frame))
        for name in names:
            if name in main:
                continue
            for index in range(len(axes[name])):
                frame = list(default)
                frame[position[name]] = index
                frames.append(tuple(frame))
        frames = list(dict.fromkeys(frames))
        labels = [demo.sliders[name].label or name for name in main]
        rule = (
            f"{n} positions per slider; every combination of {', '.join(labels)}; "
            "each other slider moves on its own, the rest at the values the page starts with"
        )
    return StaticGrid(axes, frames, default, rule)


# -- what the page needs to know -------------------------------------------------------------


_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/llmtrain


def _module_file(name: str) -> Path | None:
    """The source file of ``llmtrain`` module ``name``, or None if it is not a module (an
    imported function or class, say)."""
    parts = name.split(".")[1:]
    for path in (
        _PACKAGE_ROOT.joinpath(*parts).with_suffix(".py") if parts else None,
        _PACKAGE_ROOT.joinpath(*parts, "__init__.py"),
    ):
        if path is not None and path.is_file():
            return path
    return None


def _imported_modules(name: str, path: Path) -> set[str]:
    """The ``llmtrain`` modules that module ``name`` imports (resolving relative imports)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # ``from . import x`` may name a submodule
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] == "llmtrain" and _module_file(m)}


def code_modules(module: str) -> dict[str, Path]:
    """The source files of ``module`` and of every ``llmtrain`` module it imports, directly
    or not (with the packages around them, whose ``__init__`` an import runs)."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path
        parents = name.split(".")
        todo.extend(".".join(parents[:i]) for i in range(1, len(parents)))
        todo.extend(_imported_modules(name, path))
    return seen


def code_fingerprint(module: str) -> str:
    """A hash of the source of ``module`` and of every ``llmtrain`` module it imports
    (:func:`code_modules`), and of the versions of the libraries that draw: what a figure
    made by code in ``module`` can depend on."""
    seen = code_modules(module)
    h = hashlib.sha256()
    for name in sorted(seen):
        h.update(name.encode())
        h.update(hashlib.sha256(seen[name].read_bytes()).digest())
    import matplotlib
    import torch

    for library in (np, matplotlib, PIL, torch):
        h.update(f"{library.__name__}={library.__version__}".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class StaticSpec:
    """Everything the build needs to draw a demo's frames and the page its sliders."""

    key: str
    origin: DemoOrigin
    values: dict[str, Any]
    sliders: list[dict]
    frames: list[tuple[int, ...]]
    default: tuple[int, ...]
    alt: str
    note: str
    rc: dict  # Matplotlib settings that differed from the defaults where the notebook drew

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "origin": {
                "module": self.origin.module,
                "qualname": self.origin.qualname,
                "args": list(self.origin.args),
                "kwargs": dict(self.origin.kwargs or {}),
            },
            "values": self.values,
            "sliders": self.sliders,
            "frames": [list(f) for f in self.frames],
            "default": list(self.default),
            "alt": self.alt,
            "note": self.note,
            "rc": self.rc,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> StaticSpec:
        origin = data["origin"]
        return cls(
            key=data["key"],
            origin=DemoOrigin(
                origin["module"], origin["qualname"], tuple(origin["args"]), origin["kwargs"]
            ),
            values=dict(data["values"]),
            sliders=list(data["sliders"]),
            frames=[tuple(f) for f in data["frames"]],
            default=tuple(data["default"]),
            alt=data["alt"],
            note=data["note"],
            rc=dict(data["rc"]),
        )


def _rc_changes() -> dict:
    """The Matplotlib settings that differ from its defaults here (a notebook's inline
    backend changes some), so that a worker draws with the same ones."""
    import matplotlib

    changes = {}
    for name, value in matplotlib.rcParams.items():
        if name.startswith("backend") or name == "interactive":
            continue
        if value != matplotlib.rcParamsDefault[name]:
            try:
                changes[name] = json.loads(json.dumps(value))
            except TypeError:
                continue  # not expressible in JSON; the worker's check catches a difference
    return changes


def _plain(value):
    """A slider value as JSON keeps it (NumPy scalars become Python numbers)."""
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def static_spec(demo: Demo) -> StaticSpec:
    """The static page's description of ``demo`` at its current values.

    Raises a ``ValueError`` when the demo was not made by a function decorated with
    :func:`~llmtrain.demos.demo_factory`, since the build could not make it again.
    """
    if demo.origin is None:
        raise ValueError(
            "this demo has no origin: make it with a function decorated with "
            "llmtrain.demos.demo_factory, so the book's build can draw its static frames"
        )
    grid = static_grid(demo)
    values = {name: _plain(v) for name, v in demo.values.items()}
    sliders = [
        {
            "name": name,
            "label": slider.label or name,
            "values": [_plain(v) for v in grid.axes[name]],
            "text": [format_value(v) for v in grid.axes[name]],
        }
        for name, slider in demo.sliders.items()
    ]
    note = (
        f"The static sliders snap to precomputed values ({grid.rule}), drawn when the book "
        "was built; in a live session (Binder, Colab or Live Code, under the rocket icon) "
        "they take any value."
    )
    if demo.static_note:
        note += f" The static sliders are coarser here: {demo.static_note}."
    origin = demo.origin
    rc = _rc_changes()
    identity = {
        "origin": [origin.module, origin.qualname, list(origin.args), origin.kwargs or {}],
        "values": values,
        "sliders": sliders,
        "frames": [list(f) for f in grid.frames],
        "figure": [list(demo.figsize), demo.dpi],
        "rc": rc,
        "code": code_fingerprint(origin.module),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    return StaticSpec(
        key=key,
        origin=origin,
        values=values,
        sliders=sliders,
        frames=grid.frames,
        default=grid.default,
        alt=demo.alt_text(),
        note=note,
        rc=rc,
    )


# -- drawing and storing the frames ----------------------------------------------------------


def frame_name(index: Sequence[int]) -> str:
    """The key of a frame: its slider indices joined by dashes, as the page names it."""
    return "-".join(str(i) for i in index)


class _Renderer:
    """A demo made again from its origin, drawing the frame for any grid index."""

    def __init__(self, spec: StaticSpec):
        self.spec = spec
        self.demo = spec.origin.make()
        self.demo.set(**spec.values)
        self.names = [s["name"] for s in spec.sliders]

    def values(self, index: Sequence[int]) -> dict:
        return {
            name: slider["values"][i]
            for name, slider, i in zip(self.names, self.spec.sliders, index, strict=True)
        }

    def rgba(self, index: Sequence[int]) -> np.ndarray:
        self.demo.set(**self.values(index))
        canvas = self.demo.figure.canvas
        canvas.draw()
        return np.array(canvas.buffer_rgba())


def _mode(frames: np.ndarray) -> np.ndarray:
    """The most common colour of each pixel over ``frames`` (n, H, W, 4): a background."""
    packed = frames.view(np.uint32)[..., 0]  # RGBA bytes as one integer per pixel
    ordered = np.sort(packed, axis=0)
    n = len(ordered)
    best, best_count = ordered[0].copy(), np.zeros(ordered.shape[1:], dtype=int)
    run_value, run_count = ordered[0].copy(), np.zeros(ordered.shape[1:], dtype=int)
    for i in range(n):
        same = ordered[i] == run_value
        run_count = np.where(same, run_count + 1, 1)
        run_value = ordered[i]
        longer = run_count > best_count
        best = np.where(longer, run_value, best)
        best_count = np.where(longer, run_count, best_count)
    return best[..., None].view(np.uint8)


def _webp(image: PIL.Image.Image, effort: int, quality: int = 0) -> bytes:
    """Lossless WebP; ``effort`` is libwebp's ``method`` and ``quality`` its lossless effort
    within it. A full-colour overlay encodes five times faster at method 2 than at the default
    4, for 5-15% more bytes; a few-colour one is 10% smaller at quality 100 for ~1 ms more."""
    buffer = io.BytesIO()
    image.save(buffer, format="webp", lossless=True, quality=quality, method=effort)
    return buffer.getvalue()


def _overlay(frame: np.ndarray, base: np.ndarray, palette: PIL.Image.Image | None):
    """The pixels of ``frame`` that differ from ``base``, cropped, as (WebP bytes, box), or
    ``(None, None)`` when the frame is its base. With a ``palette`` (a "P" image) each pixel
    takes its nearest palette colour."""
    changed = np.any(frame != base, axis=-1)
    if not changed.any():
        return None, None
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    patch = frame[y0:y1, x0:x1].copy()
    patch[..., 3] = np.where(changed[y0:y1, x0:x1], 255, 0)
    patch[~changed[y0:y1, x0:x1]] = 0
    if palette is not None:
        rgb = PIL.Image.fromarray(np.ascontiguousarray(patch[..., :3]), "RGB")
        nearest = rgb.quantize(palette=palette, dither=PIL.Image.Dither.NONE).convert("RGB")
        patch[..., :3] = np.where(changed[y0:y1, x0:x1, None], np.asarray(nearest), 0)
    image = PIL.Image.fromarray(patch, "RGBA")
    data = _webp(image, 2) if palette is None else _webp(image, 4, quality=100)
    return data, [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]


def _sample(frames: Sequence, n: int) -> list:
    """``n`` frames spread evenly over the grid (all of them if there are fewer)."""
    if len(frames) <= n:
        return list(frames)
    return [frames[round(i * (len(frames) - 1) / (n - 1))] for i in range(n)]


@dataclass(frozen=True)
class _Plan:
    axis: int | None  # the slider whose value picks the base, or None for one base
    bases: list[np.ndarray]
    colors: int | None  # None: every colour, else the size of the palette to use first
    palettes: dict  # colours -> "P" image with the demo's most distinct changed colours


def _mismatch(pixels: np.ndarray, png: bytes) -> float:
    """The fraction of pixels that differ clearly between ``pixels`` and the image ``png``."""
    other = np.asarray(PIL.Image.open(io.BytesIO(png)).convert("RGBA"), dtype=int)
    if other.shape != pixels.shape:
        return 1.0
    return float((np.abs(other - pixels).sum(axis=-1) > MISMATCH_THRESHOLD).mean())


def _plan(renderer: _Renderer, spec: StaticSpec, pixels: dict) -> _Plan:
    """Choose the bases and the palette from a sample of frames, so that the demo's images
    fit the budget with the best quality. ``pixels`` keeps the frames drawn here."""
    sample = _sample(spec.frames, SAMPLE_FRAMES)
    for index in sample:
        pixels[index] = renderer.rgba(index)
    height, width = pixels[sample[0]].shape[:2]

    def base_of(axis, index):
        return 0 if axis is None else index[axis]

    best = None
    for axis in [None, *range(len(spec.sliders))]:
        groups: dict[int, list] = {}
        for index in sample:
            groups.setdefault(base_of(axis, index), []).append(index)
        if axis is not None and min(len(g) for g in groups.values()) < 3:
            continue  # too few frames per value to tell a background from a frame
        bases = {v: _mode(np.stack([pixels[i] for i in g])) for v, g in groups.items()}
        changed = sum(
            np.count_nonzero(np.any(pixels[i] != bases[base_of(axis, i)], axis=-1)) for i in sample
        )
        # A changed pixel costs about a byte in an overlay; a base, a fraction of that.
        cost = changed / len(sample) * len(spec.frames) + len(bases) * height * width * 0.15
        if best is None or cost < best[0]:
            best = (cost, axis)
    axis = best[1]
    n_bases = 1 if axis is None else len(spec.sliders[axis]["values"])
    bases = []
    for v in range(n_bases):
        members = [i for i in spec.frames if base_of(axis, i) == v]
        chosen = _sample(members, max(3, SAMPLE_FRAMES // n_bases))
        for index in chosen:
            if index not in pixels:
                pixels[index] = renderer.rgba(index)
        bases.append(_mode(np.stack([pixels[i] for i in chosen])))
    base_bytes = sum(len(_webp(PIL.Image.fromarray(b, "RGBA"), effort=4)) for b in bases)
    probe = _sample(sample, 16)
    palettes = _palettes([(pixels[i], bases[base_of(axis, i)]) for i in sample])
    for colors in PALETTES:
        sizes = [
            len(_overlay(pixels[i], bases[base_of(axis, i)], palettes.get(colors))[0] or b"")
            for i in probe
        ]
        # The sample's estimate is within a few percent; a miss costs one more pass.
        if base_bytes + np.mean(sizes) * len(spec.frames) <= 0.95 * FRAME_BUDGET:
            break
    return _Plan(axis, bases, colors, palettes)


def _palettes(pairs) -> dict:
    """For each palette size, the colours that best cover the pixels in which the frames of
    ``pairs`` (frame, base) differ from their bases (median cut: text stays black, a line
    keeps its colour), as "P" images to quantize against."""
    changed = [frame[np.any(frame != base, axis=-1)][:, :3] for frame, base in pairs]
    changed = np.concatenate([c for c in changed if len(c)] or [np.zeros((1, 3), np.uint8)])
    step = max(1, len(changed) // 200_000)  # median cut needs a sample, not every pixel
    strip = PIL.Image.fromarray(np.ascontiguousarray(changed[::step])[None], "RGB")
    return {
        colors: strip.quantize(colors, method=PIL.Image.Quantize.MEDIANCUT)
        for colors in PALETTES
        if colors is not None
    }


def _write_frames(tmp, renderer, spec, plan, colors, order, drawn) -> tuple[dict, int]:
    """Write the bases and every overlay into the empty folder ``tmp``: the manifest's
    frame entries and the bytes written."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    total = 0
    for i, base in enumerate(plan.bases):
        data = _webp(PIL.Image.fromarray(base, "RGBA"), effort=4)
        (tmp / f"b{i}.webp").write_bytes(data)
        total += len(data)
    frames = {}
    files: dict[tuple, str] = {}  # (image, box) -> the file that holds it
    for index in order:
        name = frame_name(index)
        base = 0 if plan.axis is None else index[plan.axis]
        pixels = drawn.pop(index) if index in drawn else renderer.rgba(index)
        data, box = _overlay(pixels, plan.bases[base], plan.palettes.get(colors))
        entry = {"base": f"b{base}.webp"}
        if data is not None:
            if (data, tuple(box)) not in files:
                files[data, tuple(box)] = f"f{name}.webp"
                (tmp / f"f{name}.webp").write_bytes(data)
                total += len(data)
            entry.update(src=files[data, tuple(box)], box=box)
        frames[name] = entry
    return frames, total


# A frame drawn in place (moved artists over a frozen background) may differ from one drawn
# from scratch by anti-aliasing where lines cross (at most 0.3% of pixels in the book's
# demos); a different figure differs in far more.
MISMATCH_THRESHOLD, MISMATCH_FRACTION = 30, 0.01


def render_static_frames(
    spec_json: Mapping, out: str | os.PathLike, default_png: bytes | None = None
) -> dict:
    """Draw every frame of a demo and write its folder ``out`` (``manifest.js`` and images).

    Runs in a worker process of the build. The folder appears whole or not at all: it is
    written under a temporary name and renamed. Returns a summary (frames, bytes, palette).
    Raises ``RuntimeError`` when the frame for the page's values differs from
    ``default_png``, the figure the notebook showed (the demo's figure would then depend on
    more than its slider values), or when the frames and manifest do not fit
    ``FRAME_BUDGET`` even with 4 colours.
    """
    import matplotlib

    matplotlib.use("Agg")
    started = time.process_time()
    spec = StaticSpec.from_json(spec_json)
    matplotlib.rcParams.update(spec.rc)
    out = Path(out)
    renderer = _Renderer(spec)
    first = renderer.rgba(spec.default)
    if default_png is not None and _mismatch(first, default_png) > MISMATCH_FRACTION:
        raise RuntimeError(
            f"demo {spec.origin.qualname} ({spec.origin.module}): the frame drawn for the "
            "page's values differs from the figure the notebook showed; a demo's figure must "
            "depend on its slider values only"
        )
    drawn: dict = {}
    plan = _plan(renderer, spec, drawn)
    # The slider that picks the base is the one that changes the background most, often
    # the costliest to move (a landscape redrawn): let it change least often.
    order = sorted(spec.frames, key=lambda f: () if plan.axis is None else (f[plan.axis],))
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    height, width = first.shape[:2]
    # The plan's palette comes from a sample; if the whole grid still exceeds the budget,
    # draw it again with the next, smaller palette.
    for colors in PALETTES[PALETTES.index(plan.colors) :]:
        frames, total = _write_frames(tmp, renderer, spec, plan, colors, order, drawn)
        manifest = {"size": [width, height], "frames": frames}
        script = (
            "(window.LLMTRAIN_DEMO_FRAMES = window.LLMTRAIN_DEMO_FRAMES || {})"
            f"[{json.dumps(spec.key)}] = {json.dumps(manifest, separators=(',', ':'))};\n"
        ).encode()
        total += len(script)
        if total <= FRAME_BUDGET:
            break
    else:
        shutil.rmtree(tmp)
        raise RuntimeError(
            f"demo {spec.origin.qualname}: its {len(spec.frames)} frames take {total:,} bytes, "
            f"over the budget of {FRAME_BUDGET:,} even with {colors} colours"
        )
    (tmp / "manifest.js").write_bytes(script)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return {
        "key": spec.key,
        "demo": spec.origin.qualname,
        "frames": len(spec.frames),
        "bytes": total,
        "colors": colors,
        "bases": len(plan.bases),
        "cpu_seconds": round(time.process_time() - started, 1),
    }


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of a demo's folder: its frame size and, for each frame, its base, its
    overlay and the overlay's box (the JSON inside ``manifest.js``)."""
    text = (Path(folder) / "manifest.js").read_text(encoding="utf-8")
    return json.loads(text.split("] = ", 1)[1].rstrip().rstrip(";"))


def reconstruct(folder: str | os.PathLike, name: str) -> np.ndarray:
    """The RGBA image a browser shows for frame ``name``: its base with its overlay pasted at
    its box. Used by the tests to check the files against the figures."""
    folder = Path(folder)
    entry = read_manifest(folder)["frames"][name]
    image = PIL.Image.open(folder / entry["base"]).convert("RGBA")
    if "src" in entry:
        x, y, _, _ = entry["box"]
        overlay = PIL.Image.open(folder / entry["src"]).convert("RGBA")
        image.alpha_composite(overlay, (x, y))
    return np.asarray(image)
