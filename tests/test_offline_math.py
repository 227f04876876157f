"""The book renders math with its own copy of MathJax: no page loads anything from another host.

The pages are read as HTML here; the browser-level check (what an opened page requests) is in
the browser tests.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import contract
import pytest

sys.path.insert(0, str(contract.ROOT / "_ext"))
import offline_mathjax  # the book's local Sphinx extension, in _ext/

# <link> relations that name a page to go to, not a file the browser fetches.
NAVIGATION_LINKS = frozenset({"index", "search", "prev", "next", "canonical", "alternate"})
LOADING_ATTRIBUTES = {
    "script": "src",
    "link": "href",
    "img": "src",
    "iframe": "src",
    "source": "src",
    "embed": "src",
    "video": "src",
    "audio": "src",
}
MATHJAX_COMPONENT = f"_static/{offline_mathjax.MATHJAX_DIR}/{offline_mathjax.MATHJAX_COMPONENT}"


class LoadedUrls(HTMLParser):
    """The URLs of the files a page makes the browser load, as (tag, url)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        url = attributes.get(LOADING_ATTRIBUTES.get(tag, ""))
        if url is None:
            return
        if tag == "link" and set((attributes.get("rel") or "").split()) <= NAVIGATION_LINKS:
            return
        self.urls.append((tag, url))


def loaded_urls(page: Path) -> list[tuple[str, str]]:
    parser = LoadedUrls()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.urls


def pages(html: Path) -> list[Path]:
    found = [p for p in html.rglob("*.html") if p.relative_to(html).parts[0] != "_static"]
    assert found, f"no pages in {html}"
    return sorted(found)


def local_file(page: Path, url: str) -> Path:
    """The file a relative URL of ``page`` names inside the built book."""
    return (page.parent / unquote(urlsplit(url).path)).resolve()


def test_the_extension_copies_what_mathjax_loads_and_not_the_rest():
    source = offline_mathjax.mathjax_source()
    files = offline_mathjax.mathjax_files(source)
    assert offline_mathjax.MATHJAX_COMPONENT in files
    fonts = [f for f in files if f.startswith("output/chtml/fonts/woff-v2/")]
    assert len(fonts) == len(list((source / "output/chtml/fonts/woff-v2").glob("*.woff")))
    # Loaded by autoload for \boldsymbol (the notation page), and by the context menu's explorer.
    assert "input/tex/extensions/boldsymbol.js" in files
    assert {"a11y/explorer.js", "a11y/sre.js", "sre/mathmaps/en.json"} <= set(files)
    assert "input/tex/extensions/all-packages.js" not in files
    size = sum((source / f).stat().st_size for f in files)
    assert size < 4_000_000, f"{size} bytes of MathJax: more than the component loads"


@pytest.mark.book
def test_every_page_loads_mathjax_from_the_book_and_nothing_from_another_host(built):
    foreign, missing, wrong_mathjax, math_pages = set(), set(), set(), 0
    for page in pages(built.html):
        name = page.relative_to(built.html).as_posix()
        for tag, url in loaded_urls(page):
            parts = urlsplit(url)
            if parts.scheme == "data":
                continue
            if parts.scheme or parts.netloc:
                foreign.add(f"<{tag}> {url}")
            elif not local_file(page, url).is_file():
                missing.add(f"{name}: <{tag}> {url}")
            elif tag == "script" and "mathjax" in url.lower():
                math_pages += 1
                if local_file(page, url) != (built.html / MATHJAX_COMPONENT).resolve():
                    wrong_mathjax.add(f"{name}: {url}")
    assert not foreign, f"pages load files from another host: {sorted(foreign)}"
    assert not missing, f"pages load files that are not in the book: {sorted(missing)}"
    assert not wrong_mathjax, f"MathJax is not {MATHJAX_COMPONENT}: {sorted(wrong_mathjax)}"
    assert math_pages >= 20, f"only {math_pages} pages load MathJax"


@pytest.mark.book
def test_the_files_mathjax_loads_lazily_are_in_the_book(built):
    copy = built.html / "_static" / offline_mathjax.MATHJAX_DIR
    source = offline_mathjax.mathjax_source()
    for name in offline_mathjax.mathjax_files(source):
        assert (copy / name).is_file(), f"{name} is missing from {copy}"
        assert (copy / name).stat().st_size == (source / name).stat().st_size, name
