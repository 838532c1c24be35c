"""A worker takes on a ``runtime_env`` (``SetEnv``): variables, directory, import paths.

A worker is set up for one env for life (the kernel sends it only that env's
tasks), so nothing here is ever undone.
"""

from __future__ import annotations

import os
import sys

from .. import _task_context
from .._wire import protocol as P


def apply(env: P.WorkerEnv) -> BaseException | None:
    """Set this process up for ``env``; the error if it cannot be (the env's tasks fail with it)."""
    _task_context.set_runtime_env(env)
    try:
        os.environ.update(env.env_vars)
        if env.working_dir:
            os.chdir(env.working_dir)
    except Exception as e:  # a missing directory, a NUL byte in a variable, ...
        from ..exceptions import RuntimeEnvSetupError

        return RuntimeEnvSetupError(
            f"Failed to set up runtime_env {env.key}: {type(e).__name__}: {e}"
        )
    # First on the path, as Ray puts them: the working directory, then py_modules.
    paths = [p for p in (env.working_dir, *env.py_paths) if p]
    sys.path[:0] = [p for p in paths if p not in sys.path]
    return None
