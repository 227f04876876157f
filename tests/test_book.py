"""Build the whole book as a reader would, with warnings as errors, and look at the result."""

import re
import subprocess
import sys
from pathlib import Path

import contract
import pytest
import yaml

ROOT = contract.ROOT
HTML = ROOT / "_build" / "html"
# The README's build command, run with the interpreter that runs the tests.
BUILD = [
    str(Path(sys.executable).with_name("jupyter-book")),
    "build",
    ".",
    "-W",
    "-n",
    "--keep-going",
]

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def built():
    result = subprocess.run(BUILD, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    return log


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))

    walk(toc["parts"])
    return files


def test_build_has_no_warnings_and_no_cell_errors(built):
    assert not re.search(r"WARNING: (?!.*Kernel is running over TCP)", built)
    assert not (HTML / "reports").exists() or not any((HTML / "reports").iterdir())


def test_every_page_of_the_toc_is_built(built):
    for file in toc_files():
        assert (HTML / f"{file}.html").is_file(), file


def test_every_algorithm_block_is_rendered_with_its_label(built):
    for block in contract.chapter_blocks():
        page = (HTML / block.path.relative_to(ROOT).with_suffix(".html")).read_text()
        assert f'id="{block.label}"' in page, block.label


def test_every_implementation_has_an_api_entry_that_links_back(built):
    api = (HTML / "chapters" / "api.html").read_text()
    for block in contract.chapter_blocks():
        for target in block.implementations:
            assert f'id="{target}"' in api, target
        assert f'#{block.label}"' in api, f"the API appendix does not link back to {block.label}"


def test_every_demo_shows_a_figure_on_the_static_page(built):
    # The figure for the default values is an ordinary image output of the demo's cell, so
    # that the static page never shows a widget with nothing under it.
    chapters = sorted((ROOT / "chapters").rglob("*.md"))
    shown = 0
    for chapter in chapters:
        demos = len(re.findall(r"_demo\([^)]*\)\.show\(\)", chapter.read_text()))
        if not demos:
            continue
        page = (HTML / chapter.relative_to(ROOT).with_suffix(".html")).read_text()
        images = re.findall(r'<img[^>]+src="(?:\.\./)+_images/[0-9a-f]+\.png"', page)
        assert len(images) >= demos, f"{chapter.name}: {demos} demos, {len(images)} images"
        assert "application/vnd.jupyter.widget-view+json" in page, chapter.name
        shown += demos
    assert shown >= 20


def test_citations_resolve_to_the_bibliography(built):
    bibliography = (HTML / "chapters" / "bibliography.html").read_text()
    assert "training language models to follow instructions" in bibliography.lower()
