"""Lint and format checks, so that the README's test command covers them too."""

import subprocess
import sys
from pathlib import Path

import contract
import pytest

RUFF = str(Path(sys.executable).with_name("ruff"))


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(command):
    result = subprocess.run([RUFF, *command], cwd=contract.ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
