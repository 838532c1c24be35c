"""A driver thread blocked in a call runs the kernel itself (``_clients/driving.py``).

These tests check what a user relies on while the runtime thread is parked:
values and errors come back, Ctrl-C still interrupts a blocked ``get``,
timers still fire, other threads and ``await`` are still answered, and the
runtime thread resumes when nobody drives.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

import asyncray
from asyncray._clients import base, driving


def _baton() -> driving.Baton:
    client = base.current()
    assert client is not None
    return client.baton  # type: ignore[attr-defined]


@asyncray.remote
def echo(x):
    return x


@asyncray.remote
def fail():
    raise ValueError("task failed on purpose")


@asyncray.remote
def nap(seconds):
    time.sleep(seconds)
    return seconds


@asyncray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1
        return self.n


def test_a_synchronous_call_is_driven_by_the_waiting_thread(ray_start):
    assert asyncray.get(echo.remote(0)) == 0  # a worker is up
    baton = _baton()
    drives = 0
    for i in range(50):
        assert asyncray.get(echo.remote(i)) == i
        # The runtime thread stays parked between back-to-back calls.
        drives += baton.state == driving.PARKED
    assert drives >= 25, f"only {drives} of 50 calls left the runtime parked"
    # Nobody drives: the runtime thread resumes on its own.
    deadline = time.monotonic() + 2
    while baton.state != driving.LOOP and time.monotonic() < deadline:
        time.sleep(0.005)
    assert baton.state == driving.LOOP


def test_driven_calls_return_values_errors_and_keep_actor_order(ray_start):
    counter = Counter.remote()
    assert [asyncray.get(counter.add.remote()) for _ in range(100)] == list(range(1, 101))
    with pytest.raises(ValueError, match="task failed on purpose"):
        asyncray.get(fail.remote())
    assert asyncray.get([echo.remote(i) for i in range(20)]) == list(range(20))


def test_timers_fire_while_the_driver_loops_on_synchronous_calls(ray_start):
    """A get with a timeout in another thread times out on time, though the main thread drives."""
    slow = nap.remote(30)
    outcome: list[float] = []

    def timed_get() -> None:
        start = time.monotonic()
        try:
            asyncray.get(slow, timeout=0.2)
        except asyncray.exceptions.GetTimeoutError:
            outcome.append(time.monotonic() - start)

    asyncray.get(echo.remote(0))
    thread = threading.Thread(target=timed_get)
    thread.start()
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        assert asyncray.get(echo.remote(1)) == 1
    thread.join(timeout=10)
    assert outcome and 0.19 <= outcome[0] < 0.8, outcome
    asyncray.cancel(slow, force=True)


def test_await_in_another_thread_is_answered_while_the_main_thread_drives(ray_start):
    results: list[int] = []

    def awaiting() -> None:
        async def main() -> None:
            for i in range(200):
                results.append(await echo.remote(i))

        asyncio.run(main())

    thread = threading.Thread(target=awaiting)
    thread.start()
    while thread.is_alive():
        asyncray.get(echo.remote(-1))
    thread.join(timeout=10)
    assert results == list(range(200))


def test_ctrl_c_while_driving_interrupts_the_get_and_the_runtime_goes_on(ray_start):
    asyncray.get(echo.remote(0))
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        while True:  # calls back to back: the signal lands while the main thread drives
            asyncray.get(echo.remote(1))
    assert time.monotonic() - start < 5
    timer.join()
    assert asyncray.get(echo.remote(2)) == 2


def test_asyncrays_sigint_handler_is_pythons_default_again_after_shutdown():
    asyncray.init(num_cpus=1)
    try:
        asyncray.get(echo.remote(1))
        # Python's default, deferred while the main thread drives.
        assert signal.getsignal(signal.SIGINT) is driving._sigint
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here, in user code: not deferred
    finally:
        asyncray.shutdown()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_custom_sigint_handler_still_runs_after_a_driven_call(ray_start):
    calls: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        asyncray.get(echo.remote(0))
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            asyncray.get(echo.remote(1))
        timer.join()
        assert calls == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_long_task_hands_the_kernel_back_and_its_value_still_comes(ray_start):
    assert asyncray.get(nap.remote(0.05)) == 0.05
    assert _baton().state != driving.DRIVING


def test_shutdown_right_after_driven_calls_leaves_nothing_parked():
    asyncray.init(num_cpus=1)
    try:
        for i in range(20):
            assert asyncray.get(echo.remote(i)) == i
        baton = _baton()
    finally:
        asyncray.shutdown()
    assert baton.closed
    assert baton.state in (driving.LOOP, driving.RESUMING)
