"""Clean build time (empty cache) and cached rebuild time of the whole book."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = str(Path(sys.executable).with_name("jupyter-book"))


def build(output: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [JUPYTER_BOOK, "build", ".", "-W", "-n", "--keep-going", "--path-output", str(output)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    output = Path(tempfile.mkdtemp(prefix="book-bench-"))
    try:
        clean = build(output)
        cached = build(output)
    finally:
        shutil.rmtree(output, ignore_errors=True)
    print(f"clean build (empty cache): {clean:7.1f} s")
    print(f"cached rebuild:            {cached:7.1f} s")


if __name__ == "__main__":
    main()
