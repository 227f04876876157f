"""Run every benchmark: ``python benchmarks/run.py`` from the repository root.

Each ``benchmarks/bench_*.py`` module has a ``main()`` that prints its own table; pass names
(``python benchmarks/run.py demos``) to run only some.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(selected: list[str]) -> None:
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if selected and name not in selected:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"\n== {name} ==", flush=True)
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
