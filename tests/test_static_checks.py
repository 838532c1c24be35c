"""The project's static checks, run by the README's test command (and so by CI).

Each is a test so that ``pytest -q`` is the one command that checks
everything: ruff (lint and format), mypy on ``src/``, the types a user's
code gets (``tests/typing/``, with and without asyncray's mypy plugin), and
the import contracts of ``pyproject.toml`` (the layers of
docs/architecture.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*argv: str, timeout: float) -> None:
    result = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"


def _tool(name: str) -> str:
    """The console script installed beside this interpreter (the test extra's)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]'"
    return found


@pytest.mark.timeout(120)
def test_ruff_check():
    _run(sys.executable, "-m", "ruff", "check", ".", timeout=110)


@pytest.mark.timeout(120)
def test_ruff_format():
    _run(sys.executable, "-m", "ruff", "format", "--check", ".", timeout=110)


@pytest.mark.timeout(300)
def test_mypy_on_src():
    _run(sys.executable, "-m", "mypy", timeout=290)


@pytest.mark.timeout(300)
def test_types_with_the_mypy_plugin():
    """tests/typing/check_types.py: every ``assert_type`` holds, and every call marked
    ``# type: ignore[code]`` is rejected with that code (``warn_unused_ignores``)."""
    _run(sys.executable, "-m", "mypy", "tests/typing/check_types.py", timeout=290)


@pytest.mark.timeout(300)
def test_types_without_the_plugin():
    """tests/typing/check_types_without_plugin.py: what the annotations alone give (as
    in an editor), checked by mypy with no configuration (so no plugin)."""
    _run(
        sys.executable,
        "-m",
        "mypy",
        "--config-file=",
        "--python-version=3.10",
        "--warn-unused-ignores",
        "--cache-dir=.mypy_cache/without_plugin",
        "tests/typing/check_types_without_plugin.py",
        timeout=290,
    )


@pytest.mark.timeout(120)
def test_import_contracts():
    _run(_tool("lint-imports"), timeout=110)
