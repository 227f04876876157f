"""Serve MathJax from the book itself, so that opening a page makes no request to another host.

Sphinx's default ``mathjax_path`` is MathJax 3's ``tex-mml-chtml.js`` on a CDN. This extension
points it at a copy under ``_static/mathjax/``, taken from the pinned ``sphinx-mathjax-offline``
wheel (MathJax 3.2.2, the last 3.x, the version the CDN's ``mathjax@3`` serves). The wheel holds
all of MathJax, 24 MB, and its own extension copies all of it into every build; this one copies
only what the same component loads:

- the bundle itself: TeX and MathML input, CommonHTML output, the context menu and assistive
  MathML (``tex-mml-chtml.js``);
- the CommonHTML web fonts, which the browser fetches for the glyphs a page shows;
- the TeX extensions that ``autoload`` fetches when a page uses one of their macros
  (``\\boldsymbol``, ``\\cancel``, ...), all of them, so that a new chapter's macro cannot 404;
- the accessibility components and the English and Nemeth speech/braille rules that the context
  menu fetches when a reader turns on the explorer.
"""

from __future__ import annotations

import filecmp
import shutil
from importlib.metadata import distribution
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config

# Relative to the HTML output's ``_static`` directory, as ``mathjax_path`` is.
MATHJAX_DIR = "mathjax"
MATHJAX_COMPONENT = "tex-mml-chtml.js"
MATHJAX_FILES = (
    MATHJAX_COMPONENT,
    "output/chtml/fonts/woff-v2/*.woff",
    "input/tex/extensions/*.js",
    "a11y/*.js",
    "sre/mathmaps/base.json",
    "sre/mathmaps/en.json",
    "sre/mathmaps/nemeth.json",
)
# Every TeX package in one file, for the tex-full components; autoload never fetches it.
NOT_LOADED = frozenset({"input/tex/extensions/all-packages.js"})


def mathjax_source() -> Path:
    """The MathJax directory of the installed ``sphinx-mathjax-offline`` wheel."""
    wheel = distribution("sphinx-mathjax-offline")
    return Path(str(wheel.locate_file("sphinx-mathjax-offline/static/mathjax")))


def mathjax_files(source: Path) -> list[str]:
    """The paths, relative to ``source``, of the files the book's MathJax loads."""
    files = set()
    for pattern in MATHJAX_FILES:
        matches = [path.relative_to(source).as_posix() for path in source.glob(pattern)]
        if not matches:
            raise FileNotFoundError(f"MathJax file {pattern!r} is missing from {source}")
        files.update(matches)
    return sorted(files - NOT_LOADED)


def use_local_mathjax(app: Sphinx, config: Config) -> None:
    config.mathjax_path = f"{MATHJAX_DIR}/{MATHJAX_COMPONENT}"


def copy_mathjax(app: Sphinx) -> None:
    """Copy MathJax into ``_static`` before pages are written.

    Copied this early, the file exists when Sphinx writes the ``<script>`` tag, which then carries
    the file's checksum (``?v=...``) on the first build as on every later one.
    """
    if app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / MATHJAX_DIR
    for name in mathjax_files(source):
        destination = target / name
        if destination.exists() and filecmp.cmp(source / name, destination):
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, destination)


def setup(app: Sphinx) -> dict[str, bool]:
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", use_local_mathjax)
    app.connect("builder-inited", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
