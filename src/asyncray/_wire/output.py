"""Where a child's forwarded output (``protocol.Log``) is written at its destination."""

from __future__ import annotations

import sys

from . import protocol as P


def write_log(msg: P.Log) -> None:
    """Write ``msg`` to this process's stdout (stream 1) or stderr; a closed stream drops it."""
    stream = sys.stdout if msg.stream == 1 else sys.stderr
    try:
        stream.write(msg.text)
        stream.flush()
    except (OSError, ValueError):
        pass
