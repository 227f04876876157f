"""The static book's weight: each demo's precomputed frames against the 3 MB budget, and the
whole site against 100 MB.

Reads the site built last (``_build/html``; build it first with ``make book``). The build
itself reports each demo's frames as it draws them; how fast a loaded frame appears after a
slider move is measured in Chromium by ``tests/test_browser.py``, which prints the median.
"""

from __future__ import annotations

from pathlib import Path

from llmtrain.demos.static import read_manifest

ROOT = Path(__file__).resolve().parents[1]
DEMO_BUDGET_MB, SITE_BUDGET_MB = 3.0, 100.0


def _megabytes(paths) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 1e6


def main(html: Path = ROOT / "_build" / "html") -> None:
    demos = html / "_static" / "demos"
    if not demos.is_dir():
        print(f"no static demos in {html}: build the book first (make book)")
        return
    pages = {}
    for page in html.rglob("*.html"):
        for key in set(page.read_text(encoding="utf-8").split('"key":"')[1:]):
            pages[key.split('"', 1)[0]] = page.relative_to(html).with_suffix("").as_posix()
    print(f"{'page':40s} {'demo key':22s} {'frames':>6s} {'MB':>6s}")
    sizes = []
    for folder in sorted(demos.iterdir()):
        manifest = read_manifest(folder)
        size = _megabytes(folder.iterdir())
        sizes.append(size)
        flag = "" if size <= DEMO_BUDGET_MB else f"  (over {DEMO_BUDGET_MB} MB)"
        print(
            f"{pages.get(folder.name, '?'):40s} {folder.name:22s} {len(manifest['frames']):6d} "
            f"{size:6.2f}{flag}"
        )
    site = _megabytes(html.rglob("*"))
    mathjax = _megabytes((html / "_static" / "mathjax").rglob("*"))
    print(
        f"{len(sizes)} demos, {sum(sizes):.1f} MB of frames (largest {max(sizes):.2f} MB); "
        f"MathJax {mathjax:.1f} MB; the whole site {site:.1f} MB of {SITE_BUDGET_MB:.0f} MB"
    )


if __name__ == "__main__":
    main()
