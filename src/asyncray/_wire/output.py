"""Where a child's forwarded output (``protocol.Log``) is written at its destination.

Lines a worker's ``tqdm_ray`` progress bar prints (JSON carrying Ray's magic
token) are not written: they go to ``progress_hook``, which the session sets
to draw one bar per worker bar on the driver's terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from . import protocol as P

# Ray's marker of a progress bar's state line (``ray.experimental.tqdm_ray``).
PROGRESS_MAGIC = "__ray_tqdm_magic_token__"

# Draws a worker's progress bar state on this process's terminal (set by the session).
progress_hook: Callable[[dict[str, Any]], None] | None = None


def write_log(msg: P.Log) -> None:
    """Write ``msg`` to this process's stdout (stream 1) or stderr; a closed stream drops it."""
    text = msg.text
    if PROGRESS_MAGIC in text and progress_hook is not None:
        text = _take_progress_lines(text, progress_hook)
        if not text:
            return
    stream = sys.stdout if msg.stream == 1 else sys.stderr
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


def _take_progress_lines(text: str, hook: Callable[[dict[str, Any]], None]) -> str:
    """Hand ``text`` 's progress-bar lines to ``hook``; the rest of the text, to be written."""
    import json

    kept = []
    for line in text.splitlines(keepends=True):
        if PROGRESS_MAGIC in line:
            try:  # after the "(task pid=N) " prefix the worker's lines carry
                state = json.loads(line[line.find("{") :])
            except ValueError:
                state = None
            if isinstance(state, dict) and state.get("__magic_token__") == PROGRESS_MAGIC:
                try:
                    hook(state)
                except Exception:  # a bar that cannot be drawn must not lose other output
                    pass
                continue
        kept.append(line)
    return "".join(kept)
