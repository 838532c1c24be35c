"""Shared fixtures for the asyncray test suite.

Ray's fixtures (``shutdown_only``, ``ray_start_regular``,
``ray_start_regular_shared``) come from asyncray's own pytest plugin
(``asyncray.pytest_plugin``), loaded here so the suite runs the same whether
or not asyncray is installed; ``ray_start`` is the suite's fresh runtime with
``NUM_CPUS``, yielding the module. ``no_leaks`` runs around every test: once the
test and its fixtures have shut the runtime down, no child process, no
``/dev/shm`` segment and (beyond a small tolerance) no file descriptor that
the test created may remain. A leak fails the test that caused it, and the
leaked children are killed so the next test starts clean.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import psutil
import pytest

pytest_plugins = ["asyncray.pytest_plugin"]

# The cores the suite may assume; every init in the suite asks for this many.
NUM_CPUS = 2
# How long children get to exit after shutdown before they count as leaked.
# Shutdown should reap synchronously; the grace only absorbs scheduler jitter.
CHILD_EXIT_GRACE_S = 2.0
# Open fds a test may add for good: lazily created, process-wide objects
# (the first event loop's self-pipe, a logging handler, /dev/urandom).
FD_TOLERANCE = 4
SHM_DIR = "/dev/shm"
SHM_PREFIXES = ("asyncray", "ar_")


def _shm_segments() -> set[str]:
    """Segments and lock files of sessions this process started (their names
    carry its pid), so another test run on the same machine cannot fail this one."""
    mine = (f"asyncray_{os.getpid()}-", f"asyncray-lock_{os.getpid()}-", *SHM_PREFIXES[1:])
    try:
        return {name for name in os.listdir(SHM_DIR) if name.startswith(mine)}
    except FileNotFoundError:
        return set()


def _live(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE or proc.ppid() == os.getpid()
    except psutil.NoSuchProcess:
        return False


def _new_children(me: psutil.Process, before: set[int]) -> list[psutil.Process]:
    """Children created during the test that are still running or unreaped."""
    deadline = time.monotonic() + CHILD_EXIT_GRACE_S
    while True:
        try:
            children = me.children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        leaked = [c for c in children if c.pid not in before and _live(c)]
        if not leaked or time.monotonic() >= deadline:
            return leaked
        time.sleep(0.02)


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid={proc.pid} status={proc.status()} cmd={' '.join(proc.cmdline())[:120]!r}"
    except psutil.Error:
        return f"pid={proc.pid} (gone)"


def _kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=2)


class _InternalErrors(logging.Handler):
    """Records the kernel's "internal error" logs: a handler that raised is a bug."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "internal error" in record.getMessage():
            self.records.append(record)


_internal_errors = _InternalErrors()
logging.getLogger("asyncray").addHandler(_internal_errors)


@pytest.fixture(autouse=True)
def no_internal_errors(request):
    """Fail a test during which a kernel handler raised (unless it plants one on purpose)."""
    _internal_errors.records.clear()
    yield
    if request.node.get_closest_marker("plants_internal_errors"):
        return
    errors = [r.getMessage() for r in _internal_errors.records]
    _internal_errors.records.clear()
    if errors:
        pytest.fail("the kernel logged internal errors:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail the test if it leaves children, shm segments or fds behind."""
    me = psutil.Process()
    children_before = {c.pid for c in me.children(recursive=True)}
    shm_before = _shm_segments()
    fds_before = me.num_fds()
    yield
    asyncray = sys.modules.get("asyncray")
    if asyncray is not None and getattr(asyncray, "is_initialized", lambda: False)():
        # A test that forgot to shut down must not poison the ones after it;
        # the leak checks below still judge what shutdown left behind.
        asyncray.shutdown()
    problems = []
    leaked = _new_children(me, children_before)
    if leaked:
        problems.append(
            "child processes outlived shutdown:\n  " + "\n  ".join(_describe(p) for p in leaked)
        )
        _kill(leaked)
    new_shm = _shm_segments() - shm_before
    if new_shm:
        problems.append(f"shared-memory segments leaked: {sorted(new_shm)}")
    fds_after = me.num_fds()
    if fds_after - fds_before > FD_TOLERANCE:
        problems.append(f"open fds grew from {fds_before} to {fds_after}")
    if problems:
        pytest.fail("leak check failed: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def ray_start():
    """A runtime with ``num_cpus=2`` for the test, shut down afterwards."""
    import asyncray

    asyncray.init(num_cpus=NUM_CPUS)
    yield asyncray
    asyncray.shutdown()


@pytest.fixture
def head(tmp_path):
    """A shared head (``asyncray start --head``, 2 CPUs) in a directory of the test's own.

    Stopped after the test with ``asyncray stop``; the stop asserts nothing of
    it (process, segment, socket) is left.
    """
    from _head import Head

    with Head(tmp_path / "head", NUM_CPUS) as running:
        yield running


@pytest.fixture
def connected(head):
    """This test process as a driver connected to ``head``; disconnected afterwards."""
    import asyncray

    asyncray.init(address=head.socket)
    yield asyncray
    asyncray.shutdown()
