"""Read the chapters in tests: the pages of the table of contents, the demos a chapter shows,
and the code cells of an exercise's solution (to run them)."""

from __future__ import annotations

import re

import contract
import jupytext
import yaml

# A cell that shows a demo: ``name_demo(...).show()``, or ``demo.show()`` after building it.
DEMO_CALL = re.compile(r"_demo\([^)]*\)\.show\(\)|\bdemo\.show\(\)")
_START = re.compile(r"```\{solution-start\}\s+(?P<label>\S+)")
_END = re.compile(r"```\{solution-end\}")


def solution_code(chapter: str, exercise: str) -> str:
    """The code cells between ``{solution-start} <exercise>`` and ``{solution-end}`` in
    ``chapters/<chapter>``, joined in order."""
    notebook = jupytext.read(contract.ROOT / "chapters" / chapter)
    inside, code = False, []
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            if inside:
                code.append(cell.source)
            continue
        text = cell.source
        if not inside:
            start = _START.search(text)
            if not start or start["label"] != exercise:
                continue
            inside, text = True, text[start.end() :]
        if _END.search(text):
            break
    if not code:
        raise LookupError(f"no solution code for exercise {exercise!r} in chapters/{chapter}")
    return "\n\n".join(code)


def run_solution(chapter: str, exercise: str) -> dict:
    """Execute a solution's code cells and return the names it defined."""
    namespace: dict = {}
    exec(compile(solution_code(chapter, exercise), f"{chapter}:{exercise}", "exec"), namespace)
    return namespace


def toc_files() -> list[str]:
    """The pages of the table of contents (``_toc.yml``), in order, without their suffix."""
    toc = yaml.safe_load((contract.ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))

    walk(toc["parts"])
    return files
