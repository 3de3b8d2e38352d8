"""The tree is formatted and linted as pyproject.toml's [tool.ruff] says (issue 27): `ruff format` and
`ruff check` would change nothing. Run `ruff format . && ruff check --fix .` before committing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [["format", "--check", "--diff"], ["check", "--output-format", "concise"]])
def test_ruff_would_change_nothing(command) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "ruff", *command, str(ROOT)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
