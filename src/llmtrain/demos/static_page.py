"""The static book's sliders: a Sphinx extension and a MyST-NB output renderer.

With this extension (``sphinx.extra_extensions`` in ``_config.yml``) the build sets
``LLMTRAIN_STATIC_DEMOS=1`` for the notebooks it executes. :meth:`llmtrain.demos.Demo.show`
then shows its figure as a plain image whose output metadata describes the demo
(:func:`llmtrain.demos.static.static_spec`) instead of live widgets, which need a kernel.
:class:`DemoImageRenderer`, registered with MyST-NB as a mime renderer, turns that image
into the page's demo: the image, sliders that step through the precomputed values, a note
saying so, and the demo's description for the script ``llmtrain-demos.js``.

Each demo's frames are drawn in worker processes
(:func:`~llmtrain.demos.static.render_static_frames`) as soon as its page has been read,
while the build goes on executing other pages, and are cached in
``_build/.demo_frames/<key>/``; when the build finishes they are copied to
``_static/demos/<key>/`` of the site.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import time
from base64 import b64decode
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from docutils import nodes
from sphinx.util import logging

from .static import ENV_FLAG, METADATA_KEY, render_static_frames

__all__ = ["METADATA_KEY", "DemoImageRenderer", "setup"]

ASSETS = Path(__file__).with_name("assets")
logger = logging.getLogger(__name__)


class DemoImageRenderer:
    """MyST-NB mime renderer: a demo's image output becomes the demo with static sliders.

    Every other output is left to MyST-NB (``None``).
    """

    mime_priority_overrides = ()

    @staticmethod
    def handle_mime(renderer, data, inline: bool):
        spec = data.output_metadata.get(METADATA_KEY)
        if inline or data.mime_type != "image/png" or spec is None:
            return None
        (image,) = renderer.render_image(data)
        image["alt"] = spec["alt"]
        image["classes"].append("llmtrain-demo-image")
        figure = nodes.container("", image, classes=["llmtrain-demo-figure"])
        controls = nodes.raw("", _controls_html(spec), format="html")
        demo = nodes.container("", figure, controls, classes=["llmtrain-demo"])
        demo["llmtrain_spec"] = spec
        demo["llmtrain_png"] = b64decode(data.content)
        return [demo]


def _controls_html(spec: dict) -> str:
    """The sliders (over indices into each slider's values), the note and the spec."""
    rows = []
    for slider, index in zip(spec["sliders"], spec["default"], strict=True):
        rows.append(
            '<label class="llmtrain-demo-slider">'
            f'<span class="llmtrain-demo-label">{html.escape(slider["label"])}</span>'
            f'<input type="range" name="{html.escape(slider["name"])}" min="0" '
            f'max="{len(slider["values"]) - 1}" step="1" value="{index}" '
            f'aria-valuetext="{html.escape(slider["text"][index])}">'
            f"<output>{html.escape(slider['text'][index])}</output></label>"
        )
    page_spec = {k: spec[k] for k in ("key", "sliders", "frames", "default", "alt")}
    # "</" must not appear inside a script element.
    payload = json.dumps(page_spec, separators=(",", ":")).replace("</", "<\\/")
    return (
        f'<div class="llmtrain-demo-controls">{"".join(rows)}</div>'
        f'<p class="llmtrain-demo-note">{html.escape(spec["note"])}</p>'
        f'<script type="application/json" class="llmtrain-demo-spec">{payload}</script>'
    )


# -- the Sphinx side ---------------------------------------------------------------------------


def _lowest_priority() -> None:
    """Make this frame worker yield the CPU to everything else: the page executing meanwhile
    is what the build waits for, while frames have until the end of the build.

    Linux shares the CPU fairly between sessions first (its autogroups) and only then by
    niceness: a notebook's kernel runs in a session of its own, so a nice value alone would
    still give the frames half the machine. The worker therefore starts a session of its
    own and lowers that session's priority, where Linux allows it."""
    os.setsid()
    try:
        Path("/proc/self/autogroup").write_text("19")
    except OSError:
        pass  # no autogroups here: the nice value below is all it takes
    os.nice(19)


class FramePool:
    """Draws demos' frames in worker processes while the build goes on, caching by key."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.jobs: dict[str, Future] = {}
        self._executor: ProcessPoolExecutor | None = None

    def submit(self, spec: dict, png: bytes) -> None:
        key = spec["key"]
        if key in self.jobs or (self.cache / key / "manifest.js").is_file():
            return
        if self._executor is None:
            # Spawned workers: a fork of a process that has started threads (Sphinx's,
            # PyTorch's) can deadlock.
            self._executor = ProcessPoolExecutor(
                max_workers=os.cpu_count() or 1,
                mp_context=get_context("spawn"),
                initializer=_lowest_priority,
            )
        self.jobs[key] = self._executor.submit(render_static_frames, spec, self.cache / key, png)

    def wait(self) -> list[dict]:
        try:
            return [job.result() for job in self.jobs.values()]
        finally:
            if self._executor is not None:
                self._executor.shutdown(cancel_futures=True)
                self._executor = None
            self.jobs.clear()


def _config_inited(app, config) -> None:
    # The notebooks' kernels inherit this, so Demo.show draws for the static page.
    os.environ[ENV_FLAG] = "1"
    # The frame workers keep every core busy while pages execute; PyTorch's OpenMP threads in
    # a kernel would then spin-wait for each other and train up to ten times slower. Passive
    # waiting costs a few percent when the cores are free.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    config.html_static_path.append(str(ASSETS))
    app.llmtrain_frames = FramePool(Path(app.outdir).parent / ".demo_frames")


def _doctree_read(app, doctree) -> None:
    # Kept in the environment, so a rebuild that reads only some pages still knows (and can
    # draw, if the cache was removed) every page's demos.
    demos = []
    for node in doctree.findall(nodes.container):
        if "llmtrain_spec" in node.attributes:
            demo = (node.attributes.pop("llmtrain_spec"), node.attributes.pop("llmtrain_png"))
            app.llmtrain_frames.submit(*demo)
            demos.append(demo)
    if not hasattr(app.env, "llmtrain_demos"):
        app.env.llmtrain_demos = {}
    app.env.llmtrain_demos[app.env.docname] = demos


def _purge(app, env, docname) -> None:
    getattr(env, "llmtrain_demos", {}).pop(docname, None)


def _build_finished(app, exception) -> None:
    pool: FramePool = app.llmtrain_frames
    demos = [demo for page in getattr(app.env, "llmtrain_demos", {}).values() for demo in page]
    if exception is None:
        for spec, png in demos:
            pool.submit(spec, png)
    waiting = time.perf_counter()
    summaries = pool.wait()
    if exception is not None or app.builder.format != "html":
        return
    for summary in summaries:
        logger.info(
            f"static demo {summary['demo']}: {summary['frames']} frames, "
            f"{summary['bytes'] / 1e6:.2f} MB, {summary['colors'] or 'all'} colours, "
            f"{summary['cpu_seconds']:.1f} s CPU"
        )
    if summaries:
        cpu = sum(s["cpu_seconds"] for s in summaries)
        logger.info(
            f"static demos: {len(summaries)} drawn in {cpu:.0f} s of CPU, mostly while pages "
            f"executed; the build waited {time.perf_counter() - waiting:.0f} s for them at the end"
        )
    keys = {spec["key"] for spec, _ in demos}
    site = Path(app.outdir) / "_static" / "demos"
    site.mkdir(parents=True, exist_ok=True)
    for key in sorted(keys):
        source = pool.cache / key
        if not (site / key).is_dir():
            shutil.copytree(source, site / key)
    for stale in site.iterdir():  # demos no page shows any more
        if stale.name not in keys:
            shutil.rmtree(stale)
    for stale in pool.cache.iterdir() if pool.cache.is_dir() else ():
        if stale.name not in keys:
            shutil.rmtree(stale)


def setup(app):
    app.connect("config-inited", _config_inited)
    app.connect("doctree-read", _doctree_read)
    app.connect("env-purge-doc", _purge)
    app.connect("build-finished", _build_finished)
    app.add_js_file("llmtrain-demos.js")
    app.add_css_file("llmtrain-demos.css")
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
