"""Binder works: its environment, built from binder/ alone, runs every chapter in 2 GB.

The slow test does what repo2docker does, in a fresh virtual environment: install
binder/requirements.txt, run binder/postBuild from the repository root, then execute every
chapter of the table of contents top to bottom in that environment's kernel, as a reader who
opens it in Binder and runs all cells would, with a fresh model cache.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import contract
import jupytext
import psutil
import pytest
from nbclient import NotebookClient

from chapters import toc_files

ROOT = contract.ROOT
BINDER = ROOT / "binder"
# mybinder.org gives each session 2 GB of memory (its documented guarantee).
BINDER_MEMORY_BYTES = 2 * 1024**3
KERNEL_NAME = "binder-venv"
# Seconds per cell, as in the book build (_config.yml's execute.timeout).
CELL_TIMEOUT = 300


def requirement_lines(path):
    """The requirement lines of a pip requirements file: no comments, no blank lines."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def pins(lines):
    """{normalised name: version} of the `name==version` lines."""
    found = {}
    for line in lines:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


def pypi_requirements(binder_lines):
    """binder/requirements.txt for PyPI: no PyTorch index, so torch's CPU pin loses `+cpu`.

    The CPU build of torch from the ordinary index stands in for the one from PyTorch's CPU
    index that Binder installs (on Linux, PyPI's default torch wheel runs on the CPU as well).
    """
    lines = [line for line in binder_lines if not line.startswith(("--extra-index-url", "-i "))]
    torch = [i for i, line in enumerate(lines) if line.startswith("torch==")]
    assert len(torch) == 1, f"binder/requirements.txt should pin torch once: {lines}"
    assert lines[torch[0]].endswith("+cpu"), f"expected torch's CPU build: {lines[torch[0]]}"
    lines[torch[0]] = lines[torch[0]].removesuffix("+cpu")
    assert len(lines) == len(binder_lines) - 1, "expected exactly one --extra-index-url line"
    return lines


def toc_chapters():
    return [ROOT / f"{file}.md" for file in toc_files()]


def test_binder_pins_match_the_constraints():
    binder = pins(requirement_lines(BINDER / "requirements.txt"))
    constraints = pins(requirement_lines(ROOT / "constraints.txt"))
    assert binder, "binder/requirements.txt pins nothing"
    for name, version in binder.items():
        assert constraints.get(name) == version, (name, version, constraints.get(name))


def test_binder_runtime_is_the_projects_python():
    assert (BINDER / "runtime.txt").read_text().split() == ["python-3.11"]
    assert sys.version_info[:2] == (3, 11), "the tests run on the book's Python, 3.11"


class PeakMemory:
    """Peak resident memory of a process and its children, sampled while it runs.

    The children count because Binder's limit is on the whole session (a chapter that runs
    the trainer as a command, for instance, holds a second Python process). The kernel's own
    high-water mark (VmHWM), read at the end, catches peaks between two samples.
    """

    def __init__(self, pid, interval=0.05):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _tree_rss(self):
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def _sample(self):
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, self._tree_rss())
            except psutil.NoSuchProcess:
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        high_water_kb = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)[1])
        self.peak = max(self.peak, high_water_kb * 1024)


def run_chapter(chapter, kernel_env):
    """Execute a chapter top to bottom in a new kernel; (seconds, peak bytes)."""
    notebook = jupytext.read(chapter)
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(chapter.parent)}},
    )
    start = time.perf_counter()
    with client.setup_kernel(env=kernel_env):
        with PeakMemory(client.km.provisioner.pid) as memory:
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
    return time.perf_counter() - start, memory.peak


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.binder
def test_binder_environment_runs_every_chapter_within_binders_memory(tmp_path, monkeypatch, capsys):
    started = time.perf_counter()
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "\n".join(pypi_requirements(requirement_lines(BINDER / "requirements.txt"))) + "\n"
    )
    run([str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)])
    # postBuild and the kernels see the environment first on PATH, as in Binder.
    environment = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
    }
    run(["bash", str(BINDER / "postBuild")], cwd=ROOT, env=environment)
    overrides = venv / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert json.loads(overrides.read_text()) == json.loads(
        (BINDER / "jupyterlab-overrides.json").read_text()
    )
    run([str(python), "-m", "pip", "check"])
    installed = time.perf_counter() - started

    # The kernel is the environment's own Python, found through a kernelspec of its own.
    kernels = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    kernels.mkdir(parents=True)
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Binder environment",
        "language": "python",
    }
    (kernels / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # A Binder user starts with no trained models: the chapters that need one train it.
    cache = tmp_path / "llmtrain-cache"
    kernel_env = {**environment, "LLMTRAIN_CACHE": str(cache)}
    kernel_env.pop("PYTHONPATH", None)

    rows = []
    for chapter in toc_chapters():
        seconds, peak = run_chapter(chapter, kernel_env)
        rows.append((chapter.relative_to(ROOT).as_posix(), seconds, peak))

    # The table goes to the terminal even when pytest captures output: CI's log reports it.
    with capsys.disabled():
        width = max(len(name) for name, _, _ in rows)
        print(f"\nBinder environment installed in {installed:.0f} s")
        print(f"{'chapter':<{width}}  {'seconds':>7}  {'peak MB':>7}")
        for name, seconds, peak in rows:
            print(f"{name:<{width}}  {seconds:7.1f}  {peak / 2**20:7.0f}")
        heaviest = max(rows, key=lambda row: row[2])
        print(f"maximum peak: {heaviest[2] / 2**20:.0f} MB ({heaviest[0]})")
        print(f"total: {time.perf_counter() - started:.0f} s")
    for name, _, peak in rows:
        assert peak < BINDER_MEMORY_BYTES, f"{name} peaks at {peak / 2**20:.0f} MB"
