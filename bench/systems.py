"""Which interpreter and environment each system runs in.

Every system runs in its own processes: asyncray and the peers on this
interpreter (asyncray from ``src/`` of this checkout, which wins over an
installed copy), Ray on a separate venv's interpreter, because Ray must never
be installed next to asyncray. A system whose interpreter is missing or
cannot import its library is skipped with a note rather than failed.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.tasks import RUNTIME_ENV

REPO_ROOT = Path(__file__).resolve().parent.parent
SRC_DIR = REPO_ROOT / "src"
RAY_PYTHON_ENV = "ASYNCRAY_BENCH_RAY_PYTHON"
DEFAULT_RAY_PYTHON = Path("/opt/venvs/ray/bin/python")
PROBE_TIMEOUT_S = 60.0


@dataclass
class System:
    """One column of the table: a name, an interpreter, an environment."""

    name: str
    python: str
    env: dict[str, str] = field(default_factory=dict)
    skip: str = ""  # why the system is skipped; empty when it runs

    @property
    def available(self) -> bool:
        return not self.skip


def default_ray_python() -> str | None:
    """``$ASYNCRAY_BENCH_RAY_PYTHON``, else the standard venv if it exists."""
    from_env = os.environ.get(RAY_PYTHON_ENV)
    if from_env:
        return from_env
    return str(DEFAULT_RAY_PYTHON) if DEFAULT_RAY_PYTHON.exists() else None


def _env(extra_paths: list[Path], runtime: str | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(p) for p in extra_paths]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop(RUNTIME_ENV, None)
    if runtime:
        env[RUNTIME_ENV] = runtime
    # A benchmark has no business phoning home; Ray otherwise reports usage.
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def _compile_bytecode(python: str, env: dict[str, str]) -> None:
    """Write asyncray's ``.pyc`` files, as an installed package has them.

    A source checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (CI images set
    it) would otherwise compile every module in every fresh process: ~40 ms
    of the "init to first result" figure that no installed copy pays. Ray's
    and the standard library's bytecode is already compiled.
    """
    subprocess.run(
        [python, "-m", "compileall", "-q", str(SRC_DIR)],
        env={k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"},
        capture_output=True,
        timeout=PROBE_TIMEOUT_S,
        check=False,
    )


def _probe(python: str, module: str, env: dict[str, str]) -> str:
    """Return "" if ``python`` can import ``module``, else a one-line reason."""
    if not Path(python).exists():
        return f"interpreter {python} not found"
    try:
        proc = subprocess.run(
            [python, "-c", f"import {module}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"`import {module}` timed out in {python}"
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["(no output)"]
        return f"`import {module}` failed in {python}: {lines[-1]}"
    return ""


def resolve(names: list[str], ray_python: str | None, asyncray_python: str | None) -> list[System]:
    """Build the :class:`System` for each requested name, probing interpreters.

    The probes (``python -c "import X"``) run at the same time: nothing is
    being measured yet, and Ray's import alone takes about half a second.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names) or 1) as ex:
        return list(ex.map(lambda n: _resolve_one(n, ray_python, asyncray_python), names))


def _resolve_one(name: str, ray_python: str | None, asyncray_python: str | None) -> System:
    if name == "asyncray":
        python = asyncray_python or sys.executable
        env = _env([REPO_ROOT, SRC_DIR], "asyncray")
        _compile_bytecode(python, env)
        return System(name, python, env, _probe(python, "asyncray", env))
    if name == "ray":
        env = _env([REPO_ROOT], "ray")
        if ray_python is None:
            why = f"no Ray interpreter (set --ray-python or ${RAY_PYTHON_ENV})"
            return System(name, "", env, why)
        return System(name, ray_python, env, _probe(ray_python, "ray", env))
    env = _env([REPO_ROOT], None)
    skip = ""
    if name == "loky" and importlib.util.find_spec("loky") is None:
        skip = "loky is not installed (pip install loky)"
    return System(name, sys.executable, env, skip)
