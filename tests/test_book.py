"""Build the whole book as a reader would, with warnings as errors, and look at the result."""

import json
import re

import contract
import pytest

from chapters import DEMO_CALL, toc_files

ROOT = contract.ROOT

pytestmark = pytest.mark.book


def test_build_has_no_warnings_and_no_cell_errors(built):
    assert not re.search(r"WARNING: (?!.*Kernel is running over TCP)", built.require_log())
    reports = built.html / "reports"
    assert not reports.exists() or not any(reports.iterdir())


def test_every_page_of_the_toc_is_built(built):
    for file in toc_files():
        assert (built.html / f"{file}.html").is_file(), file


def test_every_algorithm_block_is_rendered_with_its_label(built):
    for block in contract.chapter_blocks():
        page = (built.html / block.path.relative_to(ROOT).with_suffix(".html")).read_text()
        assert f'id="{block.label}"' in page, block.label


def test_every_implementation_has_an_api_entry_that_links_back(built):
    api = (built.html / "chapters" / "api.html").read_text()
    for block in contract.chapter_blocks():
        for target in block.implementations:
            assert f'id="{target}"' in api, target
        assert f'#{block.label}"' in api, f"the API appendix does not link back to {block.label}"


def test_every_demo_has_static_sliders_over_a_real_figure(built):
    # Each demo cell of a chapter becomes a demo on the page: the figure the notebook drew
    # (an ordinary image, with alt text) and one range input per slider; no live widget,
    # which would need a kernel and a CDN.
    chapters = sorted((ROOT / "chapters").rglob("*.md"))
    shown = 0
    for chapter in chapters:
        demos = len(DEMO_CALL.findall(chapter.read_text()))
        if not demos:
            continue
        page = (built.html / chapter.relative_to(ROOT).with_suffix(".html")).read_text()
        blocks = page.split('<div class="llmtrain-demo docutils container">')[1:]
        assert len(blocks) == demos, f"{chapter.name}: {demos} demos, {len(blocks)} on the page"
        for block in blocks:
            image = re.search(r'<img alt="([^"]{60,})" class="llmtrain-demo-image" src="', block)
            assert image, f"{chapter.name}: a demo without its image or alt text"
            spec = json.loads(
                block.split('class="llmtrain-demo-spec">', 1)[1].split("</script>")[0]
            )
            assert block.count('type="range"') == len(spec["sliders"]) >= 1
            assert (built.html / "_static" / "demos" / spec["key"] / "manifest.js").is_file()
        assert "application/vnd.jupyter.widget-view+json" not in page, chapter.name
        shown += demos
    assert shown >= 34


def test_frames_stay_within_their_budgets(built):
    demos = built.html / "_static" / "demos"
    sizes = {d.name: sum(f.stat().st_size for f in d.iterdir()) for d in demos.iterdir()}
    assert len(sizes) >= 34
    assert max(sizes.values()) <= 3_000_000  # per demo, manifest included
    site = sum(f.stat().st_size for f in built.html.rglob("*") if f.is_file())
    assert site <= 100_000_000, f"the site is {site / 1e6:.1f} MB"


def test_citations_resolve_to_the_bibliography(built):
    bibliography = (built.html / "chapters" / "bibliography.html").read_text()
    assert "training language models to follow instructions" in bibliography.lower()
