"""pytest fixtures for testing programs that use asyncray (Ray's fixture names).

Registered as the pytest plugin ``asyncray.pytest_plugin`` (entry point
``pytest11``, named by the module so that ``-p asyncray.pytest_plugin`` or a
conftest's ``pytest_plugins`` naming it do not register it twice) when
asyncray is installed; ``-p no:asyncray.pytest_plugin`` turns it off.

Fixtures, as in Ray's own suite:

* ``ray_start_regular``: a fresh runtime for the test (yields ``init``'s
  ``RayContext``), shut down afterwards.
* ``ray_start_regular_shared``: one runtime per module, for speed. Started
  again if a test shut it down or needed a fresh one in between.
* ``shutdown_only``: no runtime at the start; the test calls ``init`` (or
  relies on auto-init) and teardown shuts down.
* ``asyncray_runtime``: as ``ray_start_regular``, yielding the ``asyncray``
  module (``asyncray_runtime.get(...)``).

``init`` options come from ``@pytest.mark.asyncray_init(num_cpus=4, ...)``
(on the test, its class or module; the shared fixture reads the module's) or
from indirect parametrization, as Ray's fixtures take them:
``@pytest.mark.parametrize("ray_start_regular", [{"num_cpus": 2}], indirect=True)``.
The parameter wins over the marker, and both over the defaults (Ray's:
``num_cpus=1``, namespace ``"default_test_namespace"``).

After every test, a runtime the test left running (it called ``init`` without
``shutdown``, or used the API without ``init`` and so auto-initialized) is
shut down and the test errors at teardown, naming it, so the tests after it
still start clean instead of failing with "Maybe you called ray.init twice".

Tests using these fixtures (every test with the ini option
``asyncray_leak_check = true``; any test marked
``@pytest.mark.asyncray_leak_check``; none marked
``@pytest.mark.asyncray_leak_check(False)``) also error at teardown if a
process they started, or a shared-memory segment of an asyncray session of
this process, outlives them: leaked processes are killed and leaked segments removed.
Only this process's children and segments count, so other asyncray programs
on the machine never fail a test.

pytest loads the plugin in every run where asyncray is installed: loading it
costs what ``import asyncray`` costs (no asyncio) and starts nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "AsyncrayLeftoverRuntimeWarning",
    "asyncray_runtime",
    "ray_start_regular",
    "ray_start_regular_shared",
    "shutdown_only",
]

INIT_MARKER = "asyncray_init"
LEAK_MARKER = "asyncray_leak_check"
LEAK_INI = "asyncray_leak_check"
# Ray's fixtures' defaults (``get_default_fixture_ray_kwargs``) that mean something here.
DEFAULT_INIT_OPTIONS: dict[str, Any] = {"num_cpus": 1, "namespace": "default_test_namespace"}
# The fixtures that turn the leak checks on for the tests that use them.
FIXTURES = ("ray_start_regular", "ray_start_regular_shared", "shutdown_only", "asyncray_runtime")
# How long a process the test started gets to exit before it counts as leaked.
EXIT_GRACE_S = 2.0
# Where sessions keep files (asyncray._wire.shm: segments in /dev/shm or, when
# that is missing or small, in the temp directory; spilled objects in the
# temp directory). Their names start with these prefixes and the driver's pid.
SHM_PREFIX = "asyncray_"
LOCK_PREFIX = "asyncray-lock_"


def _session_directories() -> tuple[str, ...]:
    tmp = tempfile.gettempdir()
    return ("/dev/shm", os.path.join(tmp, "asyncray-shm"), os.path.join(tmp, "asyncray-spill"))


class AsyncrayLeftoverRuntimeWarning(UserWarning):
    """A fixture found a runtime running that no fixture started, and shut it down."""


# ==================================================================== the runtime


def _asyncray() -> ModuleType | None:
    """asyncray if something imported it (nothing to check otherwise)."""
    return sys.modules.get("asyncray")


def _on_ray() -> bool:
    """Whether asyncray hands programs to real Ray (``ASYNCRAY_BACKEND=ray``)."""
    asyncray = _asyncray()
    return getattr(asyncray, "__backend__", "asyncray") == "ray"


class _RaySession:
    """Stands for one Ray runtime (one ``ray.init``) under ``ASYNCRAY_BACKEND=ray``."""


# Ray's runtimes by node id (each ``ray.init`` starts a node of its own).
_ray_sessions: dict[str, _RaySession] = {}


def _current_session() -> Any:
    """This process's session object, or None (no runtime, or asyncray never imported)."""
    if _on_ray():
        import ray

        if not ray.is_initialized():
            return None
        node_id = ray.get_runtime_context().get_node_id()
        return _ray_sessions.setdefault(node_id, _RaySession())
    if "asyncray._session.bootstrap" not in sys.modules:
        return None
    from asyncray._session import bootstrap

    return bootstrap._session


def _ref(session: Any) -> Any:
    return None if session is None else weakref.ref(session)


def _is(ref: Any, session: Any) -> bool:
    return ref is not None and session is not None and ref() is session


@dataclass
class _Shared:
    """The module's shared runtime: its options and the session that is it."""

    options: dict[str, Any]
    session: Any = None  # a weakref to the Session


# The shared runtime of the module being run (at most one: module fixtures
# of different modules never overlap).
_shared: _Shared | None = None
# The last test whose teardown ran, to name it when a runtime it left is found.
_last_test: str | None = None


def _init(options: dict[str, Any]) -> Any:
    import asyncray

    return asyncray.init(**options)


def _clear_for_fresh_runtime(who: str) -> None:
    """Make way for a fresh runtime: stop the shared one, or whatever else runs (warning)."""
    session = _current_session()
    if session is None:
        return
    import asyncray

    if _shared is not None and _is(_shared.session, session):
        asyncray.shutdown()  # ours: started again for the next test that uses it
        return
    asyncray.shutdown()
    since = f"still running after {_last_test}" if _last_test else "started before any test ran"
    warnings.warn(
        AsyncrayLeftoverRuntimeWarning(
            f"{who}: an asyncray runtime was running that no asyncray fixture started "
            f"({since}: at import, by a fixture of wider scope, or by a fixture that did not "
            "shut it down); it was shut down so this test gets a fresh one"
        ),
        stacklevel=2,
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options = dict(DEFAULT_INIT_OPTIONS)
    # Outermost first, so the test's marker overrides its class's and module's.
    for marker in reversed(list(request.node.iter_markers(INIT_MARKER))):
        if marker.args:
            raise TypeError(f"@pytest.mark.{INIT_MARKER} takes keyword arguments only")
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, dict):
            raise TypeError(
                f"{request.fixturename}: an indirect parameter must be a dict of init "
                f"options, not {param!r}"
            )
        options.update(param)
    return options


def _fresh(request: pytest.FixtureRequest) -> Iterator[Any]:
    import asyncray

    options = _options(request)
    _clear_for_fresh_runtime(request.node.nodeid)
    context = _init(options)
    try:
        yield context
    finally:
        asyncray.shutdown()


@pytest.fixture
def ray_start_regular(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh runtime for the test (yields ``init``'s ``RayContext``); shut down after."""
    yield from _fresh(request)


@pytest.fixture
def asyncray_runtime(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """A fresh runtime for the test, as ``ray_start_regular``; yields the asyncray module."""
    import asyncray

    for _ in _fresh(request):
        yield asyncray


@pytest.fixture(scope="module")
def ray_start_regular_shared(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One runtime for the module's tests that use it (yields ``init``'s ``RayContext``).

    A test that shuts it down, or that uses a fresh-runtime fixture in
    between, does not break the next: it is started again with the same options.
    """
    global _shared
    import asyncray

    options = _options(request)
    _clear_for_fresh_runtime(request.node.nodeid)
    context = _init(options)
    _shared = _Shared(options, _ref(_current_session()))
    try:
        yield context
    finally:
        shared, _shared = _shared, None
        if shared is not None and _is(shared.session, _current_session()):
            asyncray.shutdown()


def _restart_shared(item: pytest.Item) -> None:
    """Start the shared runtime again for ``item`` if something stopped it."""
    if _shared is None or "ray_start_regular_shared" not in getattr(item, "fixturenames", ()):
        return
    session = _current_session()
    if _is(_shared.session, session):
        return
    if session is not None:
        return  # another runtime runs (a wider fixture's): init would raise; leave it be
    _init(_shared.options)
    _shared.session = _ref(_current_session())


@pytest.fixture
def shutdown_only(request: pytest.FixtureRequest) -> Iterator[None]:
    """No runtime at the start: the test calls ``init`` (or auto-inits); shut down after."""
    _clear_for_fresh_runtime(request.node.nodeid)
    yield
    asyncray = _asyncray()
    if asyncray is not None:
        asyncray.shutdown()


# ==================================================================== leaks


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) of every process visible in /proc."""
    table: dict[int, tuple[int, str]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table  # no /proc (not Linux): nothing to check
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), fields[0].decode())
    return table


def _descendants(root: int, table: dict[int, tuple[int, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _live_descendants(held: Any = None) -> set[int]:
    """This process's descendants that run, or that are its own unreaped children.

    Not those of the runtime ``held`` (a session a fixture still holds): its
    zygote and everything under it, read from the same listing of /proc, so
    a worker it forks meanwhile is never taken for the test's.
    """
    me = os.getpid()
    table = _process_table()
    live = {pid for pid in _descendants(me, table) if table[pid][1] != "Z" or table[pid][0] == me}
    zygote = getattr(held, "zygote_pid", 0)
    if zygote:
        live -= {zygote} | _descendants(zygote, table)
    return live


def _session_files() -> set[str]:
    """Paths of the files of this process's asyncray sessions (their names carry its pid)."""
    mine = (f"{SHM_PREFIX}{os.getpid()}-", f"{LOCK_PREFIX}{os.getpid()}-")
    found: set[str] = set()
    for directory in _session_directories():
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        found.update(os.path.join(directory, n) for n in names if n.startswith(mine))
    return found


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = ""
    state = _process_table_entry(pid)
    if state == "Z":
        cmd = "(exited but never waited for: call wait() on it)"
    return f"pid {pid}: {cmd[:120] or '(gone)'}"


def _process_table_entry(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat[stat.rfind(b")") + 2 :].split()[0].decode()


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break  # not ours to reap (a grandchild), or reaped already
            if done:
                break
            time.sleep(0.01)


def _remove(paths: set[str]) -> None:
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _test_files(held: Any = None) -> set[str]:
    """This process's session files, but those of the runtime ``held``."""
    tag = getattr(held, "shm_tag", "")
    return {f for f in _session_files() if not tag or tag not in os.path.basename(f)}


@dataclass
class _Snapshot:
    processes: set[int] = field(default_factory=set)
    files: set[str] = field(default_factory=set)


def _leaks(before: _Snapshot) -> list[str]:
    """What the test left behind (killed and removed here), as lines of a report."""
    held = _current_session()
    deadline = time.monotonic() + EXIT_GRACE_S
    while True:
        leaked = _live_descendants(held) - before.processes
        if not leaked or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    problems = []
    if leaked:
        problems.append(
            "processes it started outlived it (killed now):\n    "
            + "\n    ".join(_describe(pid) for pid in sorted(leaked))
        )
        _kill(leaked)
    files = _test_files(held) - before.files
    if files:
        problems.append(
            "shared-memory segments / session files remain (removed now):\n    "
            + "\n    ".join(sorted(files))
        )
        _remove(files)
    return problems


# ==================================================================== hooks

_SNAPSHOT = pytest.StashKey[_Snapshot]()
_AFTER_SETUP = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        LEAK_INI,
        type="bool",
        default=False,
        help="asyncray: check every test (not only those using asyncray's fixtures) "
        "for processes and shared-memory segments left behind",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{INIT_MARKER}(**options): asyncray.init options for asyncray's fixtures "
        "(ray_start_regular, ray_start_regular_shared, asyncray_runtime)",
    )
    config.addinivalue_line(
        "markers",
        f"{LEAK_MARKER}(enabled=True): fail the test if it leaves processes or "
        "asyncray shared-memory segments behind (False: skip the check)",
    )


def _leak_check_enabled(item: pytest.Item) -> bool:
    if _on_ray():
        # Ray's processes (GCS, raylet, workers) outlive shutdown() by seconds and
        # are not this session's to count: the checks are asyncray's runtime's.
        return False
    marker = item.get_closest_marker(LEAK_MARKER)
    if marker is not None:
        return bool(marker.args[0]) if marker.args else bool(marker.kwargs.get("enabled", True))
    if item.config.getini(LEAK_INI):
        return True
    return any(name in FIXTURES for name in getattr(item, "fixturenames", ()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    # Before the fixtures, so those that use the shared runtime find it running.
    _restart_shared(item)
    try:
        return (yield)
    finally:
        # A runtime running once the fixtures are set up belongs to a fixture.
        session = _current_session()
        item.stash[_AFTER_SETUP] = _ref(session)
        if _leak_check_enabled(item):
            # Taken after the fixtures: what a module or session fixture started
            # (a server, a shared runtime) is not the test's to stop. A runtime a
            # function fixture started is: its processes and files count as new.
            item.stash[_SNAPSHOT] = _Snapshot(_live_descendants(session), _test_files(session))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    global _last_test
    try:
        result = yield
    finally:
        # Even when a fixture's teardown failed: the next test must start clean.
        _last_test = item.nodeid
        problems = _after_test(item)
    if problems:
        pytest.fail(f"{item.nodeid}: " + "\n  ".join(problems), pytrace=False)
    return result


def _after_test(item: pytest.Item) -> list[str]:
    """Shut down a runtime the test left, check for leaks; what went wrong, as report lines."""
    problems = []
    session = _current_session()
    owned = _shared is not None and _is(_shared.session, session)
    if session is not None and not owned and not _is(item.stash.get(_AFTER_SETUP, None), session):
        import asyncray

        asyncray.shutdown()
        problems.append(
            "it left an asyncray runtime running (shut down now, so the tests after it "
            "start clean): it called asyncray.init() without asyncray.shutdown(), or used "
            "the API before init, which starts a runtime automatically. Use the "
            "shutdown_only or ray_start_regular fixture, or call asyncray.shutdown()"
        )
    before = item.stash.get(_SNAPSHOT, None)
    if before is not None:
        problems.extend(_leaks(before))
    return problems
