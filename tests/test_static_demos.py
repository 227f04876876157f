"""Static sliders: the grid, the demo's description, and the frames drawn for the web page.

The browser side (moving a slider swaps the image) is tested in tests/test_browser.py; here
the files are checked against the figures a live demo draws, pixel for pixel.
"""

import base64
import json
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from docutils import nodes

from llmtrain.demos import Demo, Slider, demo_factory, static
from llmtrain.demos.objectives.output_layer import distillation_demo
from llmtrain.demos.static_page import DemoImageRenderer, _lowest_priority


def draw_line(fig, y, **params):
    fig.subplots().plot(y)


def power_curve(power, scale=1.0, shift=0.0, offset=0.0, n=20):
    return np.linspace(0, 1, n) ** power * scale + shift + offset


def slider_demo(k: int, **options) -> Demo:
    sliders = [
        Slider("power", 0.5, 4.0, 1.0, label="power p"),
        Slider("scale", 0.1, 10.0, 1.0, scale="log"),
        Slider("shift", -1.0, 1.0, 0.0, step=0.25),
        Slider("offset", 0, 3, 1, integer=True),
    ]
    return Demo(power_curve, draw_line, sliders[:k], fixed={"n": 20}, **options)


# -- the grid ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "per_slider"), [(1, 33), (2, 13), (3, 9)])
def test_up_to_three_sliders_the_grid_holds_every_combination(k, per_slider):
    grid = static.static_grid(slider_demo(k))
    assert [len(v) for v in grid.axes.values()] == [per_slider] * k
    assert len(grid.frames) == per_slider**k == len(set(grid.frames))
    assert per_slider >= 9


def test_the_first_figure_is_a_grid_point_and_values_read_as_the_slider_shows_them():
    demo = slider_demo(3)
    demo.set(power=1.2345, shift=0.5)
    grid = static.static_grid(demo)
    values = {name: grid.axes[name][i] for name, i in zip(grid.axes, grid.default, strict=True)}
    assert values == {"power": 1.2345, "scale": 1.0, "shift": 0.5}
    # log-spaced and rounded to three significant digits, ends included
    assert grid.axes["scale"][0] == 0.1 and grid.axes["scale"][-1] == 10.0
    assert grid.axes["scale"][2] == float(f"{0.1 * 100 ** (2 / 8):.3g}") == 0.316
    # a slider with a step lands on it: -1, -0.75, ..., 1
    assert grid.axes["shift"] == [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0]


def test_an_integer_slider_with_few_values_takes_them_all():
    grid = static.static_grid(slider_demo(4))
    assert grid.axes["offset"] == [0, 1, 2, 3]


def test_above_three_sliders_the_main_three_combine_and_the_others_move_alone():
    demo = slider_demo(4, static_main=("power", "shift", "offset"))
    grid = static.static_grid(demo)
    sizes = [len(v) for v in grid.axes.values()]
    assert sizes == [9, 9, 9, 4]
    assert len(grid.frames) == 9 * 9 * 4 + 9 - 1  # the scale axis, minus its default frame
    default = grid.default
    moved_alone = [f for f in grid.frames if f[1] != default[1]]
    assert len(moved_alone) == 8
    assert all(f[0] == default[0] and f[2:] == default[2:] for f in moved_alone)
    assert "every combination of power p, shift, offset" in grid.rule


def test_a_slow_demo_gets_the_coarser_grid_it_asks_for():
    grid = static.static_grid(slider_demo(3, static_points=4, static_note="it is slow"))
    assert len(grid.frames) == 4**3


# -- the demo's description ----------------------------------------------------------------------


@demo_factory
def tiny_demo(n: int = 20) -> Demo:
    return Demo(
        power_curve,
        draw_line,
        [Slider("power", 0.5, 4.0, 1.0, label="power p")],
        fixed={"n": n},
        alt="A curve y = x^p on [0, 1].",
        static_points=9,
        static_note="a test demo",
    )


def test_a_demo_needs_an_origin_for_the_static_page():
    with pytest.raises(ValueError, match="demo_factory"):
        static.static_spec(slider_demo(1))


def test_the_spec_round_trips_through_json_and_names_what_the_page_shows():
    demo = tiny_demo(n=30)
    demo.png()
    spec = static.static_spec(demo)
    again = static.StaticSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    assert spec.origin.kwargs == {"n": 30}
    assert spec.sliders[0]["label"] == "power p"
    assert spec.sliders[0]["text"][spec.default[0]] == "1"
    assert spec.alt == "A curve y = x^p on [0, 1]. Shown for power p = 1."
    assert "Binder" in spec.note and "coarser here: a test demo." in spec.note


def test_the_key_changes_with_the_values_and_the_arguments_only():
    first, same, moved, other = tiny_demo(), tiny_demo(), tiny_demo().set(power=2.0), tiny_demo(n=9)
    keys = [static.static_spec(d).key for d in (first, same, moved, other)]
    assert keys[0] == keys[1] and len(set(keys)) == 3


def test_the_code_a_demo_depends_on_includes_what_it_imports_through_the_package():
    modules = static.code_modules("llmtrain.demos.optimization.momentum")
    for needed in ("llmtrain.optim.sgd", "llmtrain.demos.plots", "llmtrain.demos.demo"):
        assert needed in modules
    assert "llmtrain.demos.objectives.losses" not in modules
    assert static.code_fingerprint("llmtrain.demos.optimization.momentum") != (
        static.code_fingerprint("llmtrain.demos.objectives.losses")
    )


def test_show_in_the_books_build_displays_the_image_with_its_spec_and_no_widgets(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append((a, k)))
    monkeypatch.setenv(static.ENV_FLAG, "1")
    demo = tiny_demo()
    demo.show()
    ((args, kwargs),) = shown
    (data,) = args
    assert kwargs["raw"] is True
    assert base64.b64decode(data["image/png"]) == demo.png()
    assert data["text/plain"] == demo.alt_text()
    assert kwargs["metadata"][static.METADATA_KEY] == static.static_spec(demo).to_json()


# -- the frames ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def distillation(tmp_path_factory):
    """The frames of a real demo of the book (one slider, 33 frames), drawn as the build does."""
    demo = distillation_demo()
    png = demo.png()
    spec = static.static_spec(demo)
    out = tmp_path_factory.mktemp("frames") / spec.key
    summary = static.render_static_frames(spec.to_json(), out, png)
    return spec, out, summary


def test_every_frame_is_written_and_nothing_half_written_is_left(distillation):
    spec, out, summary = distillation
    assert summary["frames"] == len(spec.frames) == 33
    assert [p.name for p in out.parent.iterdir()] == [spec.key]  # no temporary folder
    manifest = static.read_manifest(out)
    assert set(manifest["frames"]) == {static.frame_name(f) for f in spec.frames}
    files = {p.name for p in out.iterdir()} - {"manifest.js"}
    named = {e["base"] for e in manifest["frames"].values()}
    named |= {e["src"] for e in manifest["frames"].values() if "src" in e}
    assert files == named
    assert summary["bytes"] == sum(p.stat().st_size for p in out.iterdir())  # manifest too
    assert summary["bytes"] <= static.FRAME_BUDGET


def test_the_files_give_back_the_figure_the_live_demo_draws_at_each_value(distillation):
    spec, out, summary = distillation
    assert summary["colors"] is None  # small enough to store losslessly
    live = distillation_demo()
    slider = spec.sliders[0]
    for index in [(0,), spec.default, (17,), (32,)]:
        live.set(temperature=slider["values"][index[0]])
        live.png()
        expected = np.asarray(live.figure.canvas.buffer_rgba())
        shown = static.reconstruct(out, static.frame_name(index))
        assert np.array_equal(shown, expected), index


def test_frames_over_the_budget_use_fewer_colours_exact_where_they_equal_their_base(
    tmp_path, monkeypatch
):
    demo = distillation_demo()
    png = demo.png()
    spec = static.static_spec(demo)
    monkeypatch.setattr(static, "FRAME_BUDGET", 28_000)
    summary = static.render_static_frames(spec.to_json(), tmp_path / spec.key, png)
    assert summary["colors"] is not None and summary["bytes"] <= 28_000
    live = distillation_demo()
    live.set(temperature=spec.sliders[0]["values"][5])
    live.png()
    expected = np.asarray(live.figure.canvas.buffer_rgba()).astype(int)
    shown = static.reconstruct(tmp_path / spec.key, "5").astype(int)
    close = np.abs(shown - expected).sum(axis=-1) <= 60
    assert close.mean() > 0.99


def test_a_demo_that_cannot_fit_its_budget_fails_and_writes_nothing(tmp_path, monkeypatch):
    demo = distillation_demo()
    png = demo.png()
    spec = static.static_spec(demo)
    monkeypatch.setattr(static, "FRAME_BUDGET", 5_000)
    with pytest.raises(RuntimeError, match=r"distillation_demo: its 33 frames take .* bytes"):
        static.render_static_frames(spec.to_json(), tmp_path / spec.key, png)
    assert list(tmp_path.iterdir()) == []


def test_a_figure_that_depends_on_more_than_its_values_is_refused(tmp_path):
    demo = distillation_demo()
    demo.png()
    spec = static.static_spec(demo)
    width, height = demo.figure.canvas.get_width_height()
    blank = PIL.Image.new("RGBA", (width, height), "white")
    with pytest.raises(RuntimeError, match="differs from the figure the notebook showed"):
        static.render_static_frames(spec.to_json(), tmp_path / spec.key, _png(blank))


def _png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()


# -- the page --------------------------------------------------------------------------------------


class FakeRenderer:
    """The part of MyST-NB's renderer that DemoImageRenderer uses."""

    def render_image(self, data):
        return [nodes.image(uri="_images/demo.png")]


class Output:
    def __init__(self, mime_type, content, metadata):
        self.mime_type, self.content, self.output_metadata = mime_type, content, metadata


def test_other_outputs_are_left_to_myst_nb():
    png = base64.b64encode(b"png").decode()
    assert (
        DemoImageRenderer.handle_mime(FakeRenderer(), Output("image/png", png, {}), False) is None
    )
    other = Output("text/plain", "x", {static.METADATA_KEY: {}})
    assert DemoImageRenderer.handle_mime(FakeRenderer(), other, False) is None


def test_a_demo_image_becomes_the_demo_with_one_range_input_per_slider():
    demo = slider_demo(2)
    demo.origin = tiny_demo().origin  # any origin will do for the page
    demo.png()
    spec = static.static_spec(demo).to_json()
    png = base64.b64encode(demo.png()).decode()
    (root,) = DemoImageRenderer.handle_mime(
        FakeRenderer(), Output("image/png", png, {static.METADATA_KEY: spec}), False
    )
    assert "llmtrain-demo" in root["classes"]
    image = next(root.findall(nodes.image))
    assert image["alt"] == spec["alt"] and "llmtrain-demo-image" in image["classes"]
    html = next(root.findall(nodes.raw)).astext()
    assert html.count('type="range"') == 2
    assert 'name="scale" min="0" max="12" step="1" value="6"' in html
    payload = html.split('class="llmtrain-demo-spec">', 1)[1].split("</script>")[0]
    assert json.loads(payload)["frames"] == spec["frames"]
    assert root["llmtrain_spec"] == spec


def _priority() -> tuple[int, int, str | None]:
    autogroup = Path("/proc/self/autogroup")
    return os.nice(0), os.getsid(0), autogroup.read_text() if autogroup.exists() else None


def test_frame_workers_run_at_the_lowest_priority_in_a_session_of_their_own():
    spawn = get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=_lowest_priority) as pool:
        niceness, session, autogroup = pool.submit(_priority).result()
    assert niceness == 19 and session != os.getsid(0)
    if autogroup is not None:  # Linux with autogroups: the worker's session has its own, at 19
        assert autogroup.split()[-2:] == ["nice", "19"]
