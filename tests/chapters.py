"""Run code from the chapters in tests: the code cells of an exercise's solution."""

from __future__ import annotations

import re

import contract
import jupytext

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
