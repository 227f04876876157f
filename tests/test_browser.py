"""The built book in a real browser (headless Chromium): every page of the table of contents
loads cleanly and offline, its math is typeset, its links resolve, its launch buttons point
where _config.yml says, and the sliders of its static demos show the right frames, fast.

The tests skip, saying so, when Chromium or chromedriver is missing, unless
LLMTRAIN_REQUIRE_BROWSER=1 (CI), where they fail instead.
"""

from __future__ import annotations

import json
import posixpath
import re
import statistics
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import browser
import contract
import pytest
import yaml

from chapters import DEMO_CALL, toc_files

ROOT = contract.ROOT
pytestmark = pytest.mark.book
if browser.find_chromium() is None and not browser.browser_required():
    pytest.skip(browser.MISSING, allow_module_level=True)

# A demo's new frame must be on screen within this time of the slider's input event, once the
# frame's image has been loaded: for 99% of moves, and no move may take four times as long
# (a machine busy with other work delays the odd frame; a slow mechanism delays them all).
SWAP_BUDGET_MS = 50.0
SWAP_WITHIN_BUDGET = 0.99
SWAP_WORST_MS = 4 * SWAP_BUDGET_MS
# Colab cannot open a chapter's .md: its button opens the chapter's notebook, <page>.ipynb, that
# the build writes beside <page>.html, from the branch the built site is published to
# (ghp-import's default).
PUBLISHED_BRANCH = "gh-pages"
PROOF_NUMBER = re.compile(r"^Algorithm (\d+(?:\.\d+)*)$")
RAW_MATH = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$")

# Waits until MathJax has typeset the page (returns null), or says why it cannot. MathJax is
# loaded by an async script, which may still be on its way when the page's load event fires (a
# busy machine made one page in a CI run fail here): wait up to 10 s for it to start.
WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!document.querySelector('.math')) { done(null); return; }
const start = Date.now();
(function wait() {
  const mathjax = window.MathJax;
  if (mathjax && mathjax.startup && mathjax.startup.promise) {
    mathjax.startup.promise.then(() => done(null), (error) => done('MathJax failed: ' + error));
  } else if (Date.now() - start > 10000) {
    done('MathJax did not load');
  } else {
    setTimeout(wait, 50);
  }
})();
"""

# What the tests look at on a loaded page, read in one round trip.
READ_PAGE = """
const article = document.querySelector('main') || document.body;
const skipped = 'pre, code, script, style, textarea, mjx-container, .highlight';
const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {
  acceptNode: (node) => node.parentElement.closest(skipped)
    ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
});
const text = [];
while (walker.nextNode()) text.push(walker.currentNode.nodeValue);
const thebeConfig = document.querySelector('script[type="text/x-thebe-config"]');
return {
  math: document.querySelectorAll('.math').length,
  typeset: document.querySelectorAll('mjx-container').length,
  untypeset: [...document.querySelectorAll('.math')]
    .filter((element) => !element.querySelector('mjx-container'))
    .map((element) => element.textContent.slice(0, 80)),
  mathErrors: [...document.querySelectorAll('mjx-merror')].map((e) => e.textContent.slice(0, 80)),
  text: text.join(' '),
  links: [...document.querySelectorAll('a[href]')].map((a) => [a.href, a.textContent.trim()]),
  algorithms: [...document.querySelectorAll('div.proof.algorithm')].map((block) => [
    block.id, (block.querySelector('.caption-number') || {textContent: ''}).textContent.trim(),
  ]),
  launchLinks: [...document.querySelectorAll('.dropdown-launch-buttons a')].map(
    (a) => [a.textContent.trim(), a.getAttribute('href')]),
  liveCode: [...document.querySelectorAll('.dropdown-launch-buttons .btn-launch-thebe')].map(
    (button) => [button.textContent.trim(), button.getAttribute('onclick')]),
  thebeReady: typeof window.initThebeSBT === 'function',
  thebeConfig: thebeConfig ? thebeConfig.textContent : null,
  demos: document.querySelectorAll('.llmtrain-demo').length,
};
"""

# Moves slider `sliderIndex` of `demo` to index `valueIndex` through the DOM contract (set the
# range input, dispatch input and change) and waits until the demo shows a frame with that
# index; returns what is then on screen.
MOVE_SLIDER = """
const [demo, sliderIndex, valueIndex, timeoutMs, done] = arguments;
const inputs = [...demo.querySelectorAll('.llmtrain-demo-controls input[type=range]')];
const outputs = [...demo.querySelectorAll('.llmtrain-demo-controls output')];
const input = inputs[sliderIndex];
const start = performance.now();
demo.removeAttribute('data-swap-ms');
input.value = String(valueIndex);
input.dispatchEvent(new Event('input', {bubbles: true}));
input.dispatchEvent(new Event('change', {bubbles: true}));
function check() {
  const frame = demo.dataset.frame;
  const shown = frame !== undefined
    && frame.split('-')[sliderIndex] === String(valueIndex)
    && demo.dataset.swapMs !== undefined;
  if (!shown && performance.now() - start < timeoutMs) { setTimeout(check, 1); return; }
  const overlay = demo.querySelector('img.llmtrain-demo-overlay');
  const base = demo.querySelector('img.llmtrain-demo-base');
  const frames = (window.LLMTRAIN_DEMO_FRAMES || {})[demo.dataset.demo];
  const entry = frames && frames.frames ? frames.frames[frame] : null;
  const visible = (element) => {
    if (!element) return false;
    const css = getComputedStyle(element);
    return css.display !== 'none' && css.visibility !== 'hidden' && Number(css.opacity) > 0;
  };
  done({
    shown: shown,
    frame: frame === undefined ? null : frame,
    swapMs: demo.dataset.swapMs === undefined ? null : Number(demo.dataset.swapMs),
    loaded: demo.dataset.loaded === 'true',
    overlaySrc: overlay ? overlay.src : null,
    overlayDecoded: overlay ? overlay.complete && overlay.naturalWidth > 0 : false,
    overlayVisible: visible(overlay),
    baseSrc: base ? base.src : null,
    baseDecoded: base ? base.complete && base.naturalWidth > 0 : false,
    baseVisible: visible(base),
    manifestSrc: entry && entry.src ? entry.src : null,
    manifestBase: entry ? entry.base : null,
    inputs: inputs.map((element) => Number(element.value)),
    outputs: outputs.map((element) => element.textContent.trim()),
  });
}
check();
"""


@dataclass
class Page:
    """One page of the table of contents as the browser saw it."""

    name: str
    url: str
    requests: list[str]
    console: list[str]
    seen: dict


@dataclass
class Sweep:
    """What moving every slider of every demo showed."""

    problems: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    moves: int = 0


@pytest.fixture(scope="session")
def chromium():
    found = browser.find_chromium()
    if found is None:
        pytest.fail(
            f"{browser.NOT_FOUND}, and {browser.REQUIRE_VARIABLE} is set: the browser tests "
            f"must run; {browser.INSTALL}"
        )
    return found


@pytest.fixture(scope="session")
def driver(chromium):
    driver = browser.start_chromium(chromium)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def site(built):
    with browser.serve(built.html) as base:
        yield base


def visit(driver, url: str, name: str) -> Page:
    browser.drain_requests(driver)
    browser.drain_console(driver)
    driver.get(url)
    mathjax_problem = driver.execute_async_script(WAIT_FOR_MATHJAX)
    seen = driver.execute_script(READ_PAGE)
    seen["mathjax"] = mathjax_problem
    return Page(name, url, browser.drain_requests(driver), browser.drain_console(driver), seen)


@pytest.fixture(scope="session")
def pages(chromium, driver, site) -> dict[str, Page]:
    """Every page of the table of contents, loaded once over HTTP from 127.0.0.1."""
    return {name: visit(driver, f"{site}{name}.html", name) for name in toc_files()}


def test_every_page_loads_without_console_errors_or_warnings(pages):
    noisy = {name: page.console for name, page in pages.items() if page.console}
    assert not noisy, json.dumps(noisy, indent=1)[:6000]


def test_no_page_requests_another_host(pages, site):
    remote = {
        name: sorted({url for url in page.requests if not browser.is_local(url, site)})
        for name, page in pages.items()
    }
    remote = {name: urls for name, urls in remote.items() if urls}
    assert not remote, json.dumps(remote, indent=1)[:6000]


def test_math_is_typeset_everywhere(pages):
    with_math = [page for page in pages.values() if page.seen["math"]]
    assert len(with_math) >= len(pages) // 2, "most pages have math; the check saw too little"
    problems = {}
    for page in with_math:
        seen = page.seen
        raw = sorted({match.group() for match in RAW_MATH.finditer(seen["text"])})
        page_problems = [
            problem
            for problem in (
                seen["mathjax"],
                f"not typeset: {seen['untypeset'][:3]}" if seen["untypeset"] else None,
                f"MathJax errors: {seen['mathErrors'][:3]}" if seen["mathErrors"] else None,
                f"raw TeX delimiters in the text: {raw}" if raw else None,
            )
            if problem
        ]
        if page_problems:
            problems[page.name] = page_problems
    assert not problems, json.dumps(problems, indent=1)[:6000]


def test_algorithm_blocks_are_numbered_and_references_show_their_number(pages, site):
    numbers = {}
    for page in pages.values():
        for label, caption in page.seen["algorithms"]:
            match = PROOF_NUMBER.match(caption)
            assert match, f"{page.name}: algorithm {label} has no number (caption {caption!r})"
            numbers[f"{page.name}.html#{label}"] = match[1]
    labels = [block.label for block in contract.chapter_blocks()]
    assert len(numbers) >= len(labels), "some prf:algorithm blocks are not on the pages"
    assert len(set(numbers.values())) == len(numbers), f"numbers repeat: {numbers}"
    wrong = []
    for page in pages.values():
        for href, text in page.seen["links"]:
            target = href.removeprefix(site)
            if target in numbers and text.startswith("Algorithm"):
                if text != f"Algorithm {numbers[target]}":
                    wrong.append(f"{page.name}: {text!r} links to Algorithm {numbers[target]}")
    assert not wrong, "\n".join(wrong)


class _Anchors(HTMLParser):
    """The ids (and old-style anchor names) of an HTML page."""

    def __init__(self):
        super().__init__()
        self.anchors = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.anchors.add(value)


def test_every_internal_link_and_cross_reference_resolves(pages, site, built):
    anchors_of: dict[Path, set[str]] = {}
    broken = []
    checked = 0
    for page in pages.values():
        for href, _text in page.seen["links"]:
            if not href.startswith(site):
                continue
            parts = urlsplit(href)
            path = unquote(parts.path).lstrip("/")
            target = built.html / (path + "index.html" if path.endswith("/") or not path else path)
            checked += 1
            if not target.is_file():
                broken.append(f"{page.name}: {href} (no file {target.relative_to(built.html)})")
                continue
            fragment = unquote(parts.fragment)
            if not fragment or target.suffix != ".html":
                continue
            if target not in anchors_of:
                parser = _Anchors()
                parser.feed(target.read_text(encoding="utf-8"))
                anchors_of[target] = parser.anchors
            if fragment not in anchors_of[target]:
                broken.append(f"{page.name}: {href} (no id {fragment!r} on the target page)")
    assert checked > len(pages), "the pages had almost no internal links: the check saw nothing"
    assert not broken, "\n".join(sorted(set(broken))[:80])


def _is_notebook(source: Path) -> bool:
    """Whether a chapter is a MyST notebook (launch buttons are only on those)."""
    if source.suffix == ".ipynb":
        return True
    text = source.read_text(encoding="utf-8")
    front = text.split("---", 2)[1] if text.startswith("---") else ""
    return "kernelspec:" in front


def test_launch_buttons_carry_the_urls_that_the_config_implies(pages, built):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repository, launch = config["repository"], config["launch_buttons"]
    owner, name = urlsplit(repository["url"]).path.strip("/").split("/")[:2]
    branch = repository.get("branch", "main")
    book = repository.get("path_to_book", "").strip("/")
    interface = {"classic": "tree", "jupyterlab": "lab/tree"}[
        launch.get("notebook_interface", "classic")
    ]
    assert launch.get("binderhub_url"), "_config.yml sets no launch_buttons.binderhub_url"
    assert launch.get("colab_url"), "_config.yml sets no launch_buttons.colab_url: no Colab button"
    assert launch.get("thebe"), "_config.yml does not set launch_buttons.thebe: no Live Code"
    problems = []
    notebooks = 0
    for page in pages.values():
        source = next(
            ROOT / book / f"{page.name}{suffix}"
            for suffix in (".ipynb", ".md")
            if (ROOT / book / f"{page.name}{suffix}").is_file()
        )
        if not _is_notebook(source):
            continue
        notebooks += 1
        in_repository = source.relative_to(ROOT).as_posix()
        expected = {
            "Binder": f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{owner}/{name}/{branch}"
            f"?urlpath={interface}/{in_repository}",
            "Colab": f"{launch['colab_url'].rstrip('/')}/github/{owner}/{name}/blob/"
            f"{PUBLISHED_BRANCH}/{page.name}.ipynb",
        }
        if not (built.html / f"{page.name}.ipynb").is_file():
            problems.append(f"{page.name}: no published notebook {page.name}.ipynb for Colab")
        shown = dict(page.seen["launchLinks"])
        for button, url in expected.items():
            if shown.get(button) != url:
                problems.append(f"{page.name}: {button} is {shown.get(button)!r}, not {url!r}")
        if page.seen["liveCode"] != [["Live Code", "initThebeSBT()"]]:
            problems.append(f"{page.name}: Live Code button is {page.seen['liveCode']}")
        if not page.seen["thebeReady"]:
            problems.append(f"{page.name}: the Live Code script did not run (no initThebeSBT)")
        thebe = page.seen["thebeConfig"] or ""
        kernel_path = re.search(r'path: "([^"]*)"', thebe)
        expected_path = posixpath.normpath(posixpath.join(book or ".", Path(page.name).parent))
        if (
            f'repo: "{owner}/{name}"' not in thebe
            or f'ref: "{branch}"' not in thebe
            or not kernel_path
            or posixpath.normpath(kernel_path[1]) != expected_path
        ):
            problems.append(f"{page.name}: Live Code (thebe) config is {thebe.strip()!r}")
    assert notebooks >= len(pages) // 2, "few pages are notebooks: the check saw too little"
    assert not problems, "\n".join(problems[:60])


def _demo_calls(page: str) -> int:
    source = ROOT / f"{page}.md"
    return len(DEMO_CALL.findall(source.read_text())) if source.is_file() else 0


def _sweep_demo(driver, demo, sweep: Sweep, where: str, *, record: bool) -> None:
    """Move every slider of ``demo`` to each of its values and back to its default."""
    spec = json.loads(
        demo.find_element("css selector", "script.llmtrain-demo-spec").get_attribute("textContent")
    )
    frames = {tuple(frame) for frame in spec["frames"]}
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", demo)
    current = tuple(int(index) for index in demo.get_attribute("data-frame").split("-"))
    for slider_index, slider in enumerate(spec["sliders"]):
        visits = [*range(len(slider["values"])), spec["default"][slider_index]]
        for value_index in visits:
            if value_index == current[slider_index]:
                continue
            wanted = (*current[:slider_index], value_index, *current[slider_index + 1 :])
            shown = driver.execute_async_script(MOVE_SLIDER, demo, slider_index, value_index, 10000)
            sweep.moves += 1
            move = f"{where} {spec['key']}: {slider['name']} -> {slider['values'][value_index]}"
            if not shown["shown"]:
                sweep.problems.append(f"{move}: frame stayed {shown['frame']}")
                return
            frame = tuple(int(index) for index in shown["frame"].split("-"))
            if (wanted in frames and frame != wanted) or frame not in frames:
                sweep.problems.append(f"{move}: shows frame {frame}, expected {wanted}")
            if list(frame) != shown["inputs"]:
                sweep.problems.append(f"{move}: inputs {shown['inputs']} but frame {frame}")
            texts = [spec["sliders"][i]["text"][index] for i, index in enumerate(frame)]
            if shown["outputs"] != texts:
                sweep.problems.append(f"{move}: outputs {shown['outputs']}, expected {texts}")
            # A frame is its base image with, unless it equals its base, an overlay on top.
            base = shown["manifestBase"]
            if not base or not (shown["baseSrc"] or "").endswith(f"/{base}"):
                sweep.problems.append(f"{move}: base {shown['baseSrc']}, manifest {base}")
            if not shown["baseDecoded"] or not shown["baseVisible"]:
                sweep.problems.append(f"{move}: the base image is not loaded and visible")
            overlay = shown["manifestSrc"]
            if overlay is None:
                if shown["overlayVisible"]:
                    sweep.problems.append(f"{move}: an overlay shows on a frame without one")
            elif not (shown["overlaySrc"] or "").endswith(f"/{overlay}"):
                sweep.problems.append(f"{move}: overlay {shown['overlaySrc']}, manifest {overlay}")
            elif not shown["overlayDecoded"] or not shown["overlayVisible"]:
                sweep.problems.append(f"{move}: the overlay image is not loaded and visible")
            if record:
                sweep.latencies_ms.append(shown["swapMs"])
                if shown["swapMs"] >= SWAP_WORST_MS:
                    sweep.problems.append(f"{move}: took {shown['swapMs']:.1f} ms")
            current = frame
    if demo.get_attribute("data-loaded") != "true":
        sweep.problems.append(f"{where} {spec['key']}: data-loaded is not true after the moves")


def _sweep_page(driver, url: str, name: str, sweep: Sweep) -> Page:
    page = visit(driver, url, name)
    for demo in driver.find_elements("css selector", ".llmtrain-demo"):
        # The first sweep fetches the frames and checks them; the second, over frames that are
        # loaded by then, measures how fast a move shows its frame.
        _sweep_demo(driver, demo, sweep, name, record=False)
        _sweep_demo(driver, demo, sweep, name, record=True)
    page.requests += browser.drain_requests(driver)
    page.console += browser.drain_console(driver)
    return page


def test_every_slider_of_every_demo_shows_the_frame_for_its_value(driver, site, pages, capsys):
    missing = {
        name: f"{_demo_calls(name)} demos in the chapter, {page.seen['demos']} on the page"
        for name, page in pages.items()
        if page.seen["demos"] < _demo_calls(name)
    }
    assert not missing, f"pages without their static demos: {json.dumps(missing, indent=1)}"
    sweep = Sweep()
    for name, page in pages.items():
        if page.seen["demos"]:
            swept = _sweep_page(driver, page.url, name, sweep)
            if swept.console:
                sweep.problems.append(f"{name}: console while moving sliders: {swept.console}")
            remote = [url for url in swept.requests if not browser.is_local(url, site)]
            if remote:
                sweep.problems.append(f"{name}: requests to other hosts: {remote}")
    with capsys.disabled():
        latencies = sweep.latencies_ms
        print(
            f"\nslider latency over {len(latencies)} moves to loaded frames "
            f"({sweep.moves} moves in all): median {statistics.median(latencies):.1f} ms, "
            f"max {max(latencies):.1f} ms"
            if latencies
            else "\nslider latency: no moves measured"
        )
    assert not sweep.problems, "\n".join(sweep.problems[:60])
    assert sweep.latencies_ms, "no slider was moved"
    fast = sum(ms < SWAP_BUDGET_MS for ms in sweep.latencies_ms) / len(sweep.latencies_ms)
    assert fast >= SWAP_WITHIN_BUDGET, f"only {fast:.1%} of moves within {SWAP_BUDGET_MS} ms"


def test_a_demo_works_from_a_file_url(driver, pages, built):
    """The book works opened straight from disk, without a server."""
    with_demos = [name for name, page in pages.items() if page.seen["demos"]]
    assert with_demos, "no page has a static demo (.llmtrain-demo)"
    name = with_demos[0]
    sweep = Sweep()
    page = _sweep_page(driver, (built.html / f"{name}.html").as_uri(), name, sweep)
    assert not page.console, page.console
    assert all(browser.is_local(url, page.url) for url in page.requests), page.requests
    assert not sweep.problems, "\n".join(sweep.problems[:60])


def test_screenshots_of_one_page_per_part_are_written(driver, site, pages, built):
    """For a person to look at: the first demo (else the top) of a page of each part."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    folder = built.html.parent / "screenshots"
    folder.mkdir(exist_ok=True)
    written = []
    for part in toc["parts"]:
        if not part["caption"].startswith("Part"):
            continue
        chapter = part["chapters"][0]
        names = [chapter["file"]] + [section["file"] for section in chapter.get("sections", [])]
        # The first page with a demo, else the first section (past the part's landing page).
        name = next((n for n in names if pages[n].seen["demos"]), names[min(1, len(names) - 1)])
        driver.get(f"{site}{name}.html")
        driver.execute_async_script(WAIT_FOR_MATHJAX)
        driver.execute_script(
            "const demo = document.querySelector('.llmtrain-demo');"
            "if (demo) demo.scrollIntoView({block: 'center'});"
        )
        path = folder / f"{Path(name).parent.name}.png"
        assert driver.save_screenshot(str(path)), path
        written.append(path)
    assert len(written) == 4, written


SEARCH_RESULTS = """
const done = arguments[arguments.length - 1];
const started = performance.now();
(function poll() {
  const results = document.querySelectorAll('#search-results li, ul.search li');
  if (results.length || performance.now() - started > 10000) {
    done([...results].map((item) => item.textContent.trim().slice(0, 80)));
  } else {
    setTimeout(poll, 50);
  }
})();
"""


@pytest.mark.parametrize("where", ["http", "file"])
def test_search_finds_chapters_offline(driver, site, built, where):
    """The search page answers from the index shipped with the book, served or from disk."""
    base = site if where == "http" else built.html.as_uri() + "/"
    browser.drain_requests(driver)
    browser.drain_console(driver)
    driver.get(f"{base}search.html?q=momentum")
    results = driver.execute_async_script(SEARCH_RESULTS)
    assert any("Momentum" in result for result in results), results
    remote = [u for u in browser.drain_requests(driver) if not browser.is_local(u, base)]
    assert not remote, remote
    assert not browser.drain_console(driver)
