"""A kernel handler that raises is an internal bug, never a hang.

The requester gets ``RaySystemError`` carrying the kernel's traceback, the
error is logged, and the runtime goes on serving everyone else.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

import asyncray
from asyncray._wire import protocol as P
from asyncray.exceptions import RaySystemError

pytestmark = [pytest.mark.timeout(30), pytest.mark.plants_internal_errors]


def _break(monkeypatch: pytest.MonkeyPatch, msg_type: type) -> None:
    """Make the runtime's handler of ``msg_type`` raise."""
    runtime = asyncray._api.client().runtime
    handlers = dict(runtime._handlers)

    def broken(conn, msg):
        raise ZeroDivisionError("handler bug planted by the test")

    handlers[msg_type] = broken
    monkeypatch.setattr(runtime, "_handlers", handlers)


def test_a_failing_request_handler_answers_the_driver_with_the_traceback(
    ray_start, monkeypatch, caplog
):
    _break(monkeypatch, P.QueryState)
    with (
        caplog.at_level(logging.ERROR, logger="asyncray"),
        pytest.raises(RaySystemError) as info,
    ):
        asyncray.available_resources()
    text = str(info.value)
    assert "internal bug" in text
    assert "ZeroDivisionError: handler bug planted by the test" in text
    assert any("internal error handling QueryState" in r.getMessage() for r in caplog.records)
    # The runtime goes on: other requests are served.
    assert asyncray.get(asyncray.put(41)) == 41


async def test_a_failing_request_handler_answers_an_awaiting_driver(ray_start, monkeypatch):
    ref = asyncray.put(1)
    _break(monkeypatch, P.GetObjects)
    asyncray._api.client().local_values.clear()  # the value must be asked for
    with pytest.raises(RaySystemError, match="handler bug planted by the test"):
        await asyncio.wait_for(asyncray.get_async(ref), 10)


@asyncray.remote
def ask_resources():
    return asyncray.available_resources()


def test_a_failing_request_handler_answers_a_worker(ray_start, monkeypatch):
    _break(monkeypatch, P.QueryState)
    # The worker's request raises RaySystemError, which reaches the driver as it is.
    with pytest.raises(RaySystemError, match="handler bug planted by the test"):
        asyncray.get(ask_resources.remote(), timeout=10)


@asyncray.remote
def one():
    return 1


def test_a_failing_submit_handler_fails_the_task_instead_of_hanging(ray_start, monkeypatch):
    _break(monkeypatch, P.SubmitTask)
    with pytest.raises(RaySystemError, match="failed handling SubmitTask"):
        asyncray.get(one.remote(), timeout=10)
    monkeypatch.undo()
    assert asyncray.get(one.remote(), timeout=10) == 1
