"""Fixtures shared by the test files: the book, built once per test run."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import contract
import pytest

ROOT = contract.ROOT
# The README's build command, run with the interpreter that runs the tests.
BUILD = [
    str(Path(sys.executable).with_name("jupyter-book")),
    "build",
    ".",
    "-W",
    "-n",
    "--keep-going",
]
# Names the HTML directory of a book built beforehand, to look at it without building again
# (while working on these tests); CI leaves it unset and builds.
BUILT_HTML_VARIABLE = "LLMTRAIN_BOOK_HTML"


@dataclass(frozen=True)
class Build:
    """A built book: its HTML directory and, when this run built it, the build's output."""

    html: Path
    log: str | None

    def require_log(self) -> str:
        if self.log is None:
            pytest.skip(f"{BUILT_HTML_VARIABLE} names a book built elsewhere: no build log")
        return self.log


@pytest.fixture(scope="session")
def built() -> Build:
    if given := os.environ.get(BUILT_HTML_VARIABLE):
        html = Path(given).resolve()
        if not (html / "index.html").is_file():
            pytest.fail(f"{BUILT_HTML_VARIABLE}={given} is not a built book (no index.html)")
        return Build(html=html, log=None)
    result = subprocess.run(BUILD, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    return Build(html=ROOT / "_build" / "html", log=log)
