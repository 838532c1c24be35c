"""What a child may send: checks of the values in its messages.

A child's messages decode into well-typed Structs, but their values come
from another process: a corrupt or hostile child can name a task it never
ran, end a call with the wrong number of results, or report a stream longer
than what it produced. Handlers ask these checks before they change any
state; a problem means the child is dropped (``ChildConn.drop``), never
that another user's objects or the runtime's counts go wrong.
"""

from __future__ import annotations

from .._wire import protocol as P

# Stream item ids carry the index in 4 bytes, and 0xFFFFFFFF names the
# stream's completion object: the largest index an item may have.
MAX_STREAM_INDEX = (1 << 32) - 2


def stream_index_problem(index: int) -> str:
    """Why ``index`` cannot be a stream item's index ("" if it can)."""
    if 1 <= index <= MAX_STREAM_INDEX:
        return ""
    return f"named stream item {index}, outside 1..{MAX_STREAM_INDEX}"


def task_done_problem(
    msg: P.TaskDone, num_returns: int, streaming: bool, produced: int, cancelled: bool
) -> str:
    """Why ``msg`` cannot end a call of ``num_returns`` results ("" if it can).

    ``produced`` is the number of items the call's open stream has so far,
    or -1 if there is nothing to compare (no stream, or it was already ended
    by a cancel or a failure). A call the runtime ``cancelled`` fails with
    the runtime's error whatever the child reports.
    """
    if cancelled:
        return ""
    if msg.stream_count >= 0:
        if not streaming:
            return "reported a stream count for a call that does not stream"
        if produced >= 0 and msg.stream_count != produced:
            # A count past the items would leave the consumer waiting for ever.
            return f"ended a stream of {produced} items with a count of {msg.stream_count}"
        if msg.is_error and not msg.results:  # a generator's error, to retry or end with
            return "reported an error without the error's payload"
        return ""
    if msg.is_error:
        return "" if msg.results else "reported an error without the error's payload"
    if streaming:
        return "ended a streaming call without a stream count"
    if len(msg.results) != num_returns:
        return f"returned {len(msg.results)} results for a call with {num_returns} returns"
    return ""
