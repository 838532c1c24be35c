"""Nothing is left behind, whatever ends the driver.

Each test runs a driver program in a subprocess: it puts objects into shared
memory (one of them spilled to disk), starts a task worker and an actor (which
starts a process of its own), and reports its session's tag. The test ends it
one way — a signal, an uncaught exception, ``os._exit`` — and polls until no
process of that session and no file of its tag (segment, lock, spill
directory) remains, within ``CLEANUP_DEADLINE_S``.

The sweep tests plant the files of another session by hand: one whose lock
is held (a live session in another PID namespace: the pid in its name means
nothing here) must survive a new session's sweep; one whose lock nobody
holds must be removed. Where the test may create namespaces (root), a real
driver runs in a PID namespace of its own, with a pid that is dead here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import asyncray
from asyncray._wire import shm

SRC = str(Path(__file__).resolve().parents[1] / "src")
# The bound is "within a second"; the margin absorbs a loaded 2-core
# machine (measured: cleanup after SIGKILL takes a few ms, see the report).
CLEANUP_DEADLINE_S = 2.0
# How long the driver subprocess may take to start and report its session.
DRIVER_START_TIMEOUT_S = 30.0
MB = 1024 * 1024

DRIVER = """
import json, os, subprocess, sys, time
import numpy as np
import asyncray as ray
from asyncray._wire import shm

mode, spill_root = sys.argv[1], sys.argv[2]
MB = 1024 * 1024
# Room for three 1 MiB objects: the fourth put spills the first to disk.
ray.init(num_cpus=2, object_store_memory=3 * MB + MB // 2, object_spilling_directory=spill_root)
refs = [ray.put(np.full(MB, i, dtype=np.uint8)) for i in range(4)]

@ray.remote
def sleep_long():
    time.sleep(600)

@ray.remote
class Holder:
    def hold(self, value):
        self.value = value  # the actor maps a segment
        self.helper = subprocess.Popen(["sleep", "600"])  # and has a process of its own
        return os.getpid(), self.helper.pid

holder = Holder.remote()
holder_pid, helper_pid = ray.get(holder.hold.remote(refs[-1]))
running = sleep_long.remote()
print(json.dumps({"tag": shm.session_tag(), "shm_dir": shm.directory(),
                  "spill_dir": shm.spill_directory(), "actor": holder_pid,
                  "helper": helper_pid}), flush=True)
if mode in ("raise", "exit"):
    sys.stdin.readline()
    if mode == "exit":
        os._exit(1)
    raise RuntimeError("the driver's program failed")
ray.get(running)  # blocked here when the signal arrives
"""


def _session_files(info: dict, spill_root: Path) -> list[str]:
    """Segments, spill directory and lock files of the session."""
    prefixes = (f"{shm.PREFIX}{info['tag']}", f"{shm.LOCK_PREFIX}{info['tag']}")
    found = []
    for base in (info["shm_dir"], str(spill_root)):
        with contextlib.suppress(FileNotFoundError):
            found += [os.path.join(base, n) for n in os.listdir(base) if n.startswith(prefixes)]
    return sorted(found)


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def _start_driver(mode: str, spill_root: Path) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, mode, str(spill_root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        proc.wait(DRIVER_START_TIMEOUT_S)
        pytest.fail(f"the driver did not start: {proc.stderr.read()}")  # type: ignore[union-attr]
    return proc, json.loads(line)


def _end_driver(proc: subprocess.Popen, mode: str) -> None:
    if mode in ("raise", "exit"):
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    else:
        proc.send_signal(getattr(signal, mode))


# mode -> the driver's exit status
ENDINGS = {
    "SIGTERM": 15,  # asyncray's handler: sys.exit(15), as in Ray, so atexit's shutdown runs
    "SIGHUP": -signal.SIGHUP,  # the default action: the zygote cleans up
    "SIGINT": -signal.SIGINT,  # KeyboardInterrupt, then atexit's shutdown
    "SIGKILL": -signal.SIGKILL,  # nothing runs in the driver: the zygote cleans up
    "raise": 1,  # an uncaught exception: atexit's shutdown
    "exit": 1,  # os._exit(1): the zygote cleans up
}


@pytest.mark.parametrize("mode", list(ENDINGS))
def test_nothing_outlives_the_driver(mode, tmp_path):
    spill_root = tmp_path / "spill"
    proc, info = _start_driver(mode, spill_root)
    try:
        session = psutil.Process(proc.pid).children(recursive=True)
        pids = {p.pid for p in session}
        assert info["actor"] in pids and info["helper"] in pids
        assert len(session) >= 4, "expected the zygote, a task worker, an actor and its helper"
        files = _session_files(info, spill_root)
        assert any(f.startswith(info["spill_dir"]) for f in files), files
        segment = f"{shm.PREFIX}{info['tag']}_"
        assert sum(os.path.basename(f).startswith(segment) for f in files) >= 3, files
        assert shm.lock_path(info["shm_dir"], info["tag"]) in files
        assert shm.lock_path(str(spill_root), info["tag"]) in files
        assert os.listdir(info["spill_dir"]), "nothing was spilled"

        _end_driver(proc, mode)
        status = proc.wait(DRIVER_START_TIMEOUT_S)
        dead_at = time.monotonic()
        deadline = dead_at + CLEANUP_DEADLINE_S
        while (_alive(session) or _session_files(info, spill_root)) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.005)
        left = _alive(session)
        assert not left, f"processes outlived the driver: {[p.pid for p in left]}"
        assert _session_files(info, spill_root) == []
        assert status == ENDINGS[mode], proc.stderr.read()  # type: ignore[union-attr]
    finally:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]


# --------------------------------------------------------------------- the sweep


def _dead_pid() -> int:
    """A pid no process has here (a driver in another PID namespace, seen from ours)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def _plant_session(root: Path, tag: str) -> list[str]:
    """Files of another session in ``root``: a segment, a spill directory, a lock file.

    ``root`` is the new session's spill root, which ``init`` sweeps as it
    sweeps the shared-memory directory (the same function). A private
    directory: in /dev/shm, another asyncray on this machine (an older one
    judging by pid) could sweep the planted files while the test runs.
    """
    root.mkdir(parents=True, exist_ok=True)
    segment = root / f"{shm.PREFIX}{tag}_1"
    segment.write_bytes(b"x" * 4096)
    spill_dir = root / f"{shm.PREFIX}{tag}"
    spill_dir.mkdir()
    (spill_dir / f"{shm.PREFIX}{tag}_2").write_bytes(b"y")
    return [str(segment), str(spill_dir), shm.lock_path(str(root), tag)]


@contextlib.contextmanager
def _held(paths: list[str]):
    """Hold the lock files as a live session does (flock, for as long as it runs)."""
    fds = [os.open(p, os.O_RDWR | os.O_CREAT, 0o600) for p in paths]
    try:
        for fd in fds:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for fd in fds:
            os.close(fd)


def test_sweep_spares_a_live_session_whose_pid_means_nothing_here(tmp_path):
    root = tmp_path / "spill"
    planted = _plant_session(root, f"{_dead_pid()}-0123abcd")
    with _held(planted[-1:]):
        asyncray.init(num_cpus=1, object_spilling_directory=str(root))
        asyncray.shutdown()
        assert [p for p in planted if not os.path.exists(p)] == [], "a live session was swept"
    # The session ended (its lock is free): the next sweep removes everything of it.
    asyncray.init(num_cpus=1, object_spilling_directory=str(root))
    asyncray.shutdown()
    assert [p for p in planted if os.path.exists(p)] == []


def test_sweep_without_lock_files_judges_by_pid(tmp_path):
    """Files of a session without lock files (an older asyncray): the old pid rule."""
    root = tmp_path / "spill"
    dead = _plant_session(root, f"{_dead_pid()}-0123abcd")
    alive = _plant_session(root, f"{os.getppid()}-4567cdef")
    asyncray.init(num_cpus=1, object_spilling_directory=str(root))
    asyncray.shutdown()
    assert [p for p in dead if os.path.exists(p)] == []
    assert all(os.path.exists(p) for p in alive[:2])


def test_a_session_holds_its_lock_until_shutdown(shutdown_only, tmp_path):
    asyncray.init(num_cpus=1, object_spilling_directory=str(tmp_path))
    tag = shm.session_tag()
    lock = shm.lock_path(shm.directory(), tag)
    fd = os.open(lock, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        asyncray.shutdown()
        assert not os.path.exists(lock)
        assert not os.path.exists(shm.lock_path(str(tmp_path), tag))
    finally:
        os.close(fd)


def test_init_from_a_thread_that_ends(shutdown_only):
    """The zygote's parent-death signal fires when the *thread* that forked it ends;
    the driver process lives on, and so must its session."""
    import threading

    thread = threading.Thread(target=asyncray.init, kwargs={"num_cpus": 1})
    thread.start()
    thread.join()

    @asyncray.remote
    def pid():
        return os.getpid()

    assert asyncray.get(pid.remote(), timeout=30) != os.getpid()
    assert asyncray.get(asyncray.put(b"z" * MB), timeout=30) == b"z" * MB


def test_the_zygote_ignores_sigterm_while_the_driver_lives(shutdown_only):
    from asyncray._session import bootstrap

    asyncray.init(num_cpus=1)
    zygote = bootstrap._session.zygote_pid  # type: ignore[union-attr]
    os.kill(zygote, signal.SIGTERM)
    os.kill(zygote, signal.SIGHUP)

    @asyncray.remote
    def pid():
        return os.getpid()

    # A worker forked after the signals: the zygote is still serving.
    pids = asyncray.get([pid.remote() for _ in range(3)], timeout=30)
    assert os.getpid() not in pids
    assert psutil.Process(zygote).status() != psutil.STATUS_ZOMBIE


def test_sigterm_handler_is_installed_over_the_default_only(shutdown_only):
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    asyncray.init(num_cpus=1)
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    with pytest.raises(SystemExit) as info:
        handler(signal.SIGTERM, None)  # what a SIGTERM does: exit through atexit's shutdown
    assert info.value.code == signal.SIGTERM
    asyncray.shutdown()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def mine(signum, frame):
        pass

    signal.signal(signal.SIGTERM, mine)
    try:
        asyncray.init(num_cpus=1)
        assert signal.getsignal(signal.SIGTERM) is mine
        asyncray.shutdown()
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# ------------------------------------------- a real driver in another PID namespace

NAMESPACED_DRIVER = """
import json, os, sys
import numpy as np
import asyncray as ray
from asyncray._wire import shm

MB = 1024 * 1024
ray.init(num_cpus=1, object_store_memory=3 * MB + MB // 2, object_spilling_directory=sys.argv[1])
refs = [ray.put(np.full(MB, i, dtype=np.uint8)) for i in range(4)]  # the first is spilled
print(json.dumps({"pid": os.getpid(), "tag": shm.session_tag()}), flush=True)
sys.stdin.readline()
print(json.dumps([int(ray.get(r, timeout=30)[0]) for r in refs]), flush=True)
sys.stdin.readline()
"""

SWEEPER = """
import sys
import asyncray
asyncray.init(num_cpus=1, object_spilling_directory=sys.argv[1])
asyncray.shutdown()
"""


def _private_shm(shm_dir: Path, code: str, spill_root: Path, pid: int | None = None) -> list[str]:
    """A command running ``code`` with ``shm_dir`` as its /dev/shm; in a new PID
    namespace, as pid ``pid`` there, if ``pid`` is given.

    The /dev/shm of both processes under test is a private directory so that
    no other asyncray on this machine (an older one sweeps by pid) can touch
    the files while the test runs.
    """
    script = f"mount --bind {shm_dir} /dev/shm"
    if pid is None:
        return ["unshare", "--mount", "sh", "-c", script + ' && exec "$@"', "sh",
                sys.executable, "-c", code, str(spill_root)]  # fmt: skip
    # sh stays pid 1 of the namespace; the next pid it forks is ``pid``.
    script += f' && echo {pid - 1} > /proc/sys/kernel/ns_last_pid && "$@"'
    return ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "sh", "-c", script, "sh",
            sys.executable, "-c", code, str(spill_root)]  # fmt: skip


def _can_unshare(tmp_path: Path) -> bool:
    if os.geteuid() != 0 or not Path("/usr/bin/unshare").exists():
        return False
    probe = _private_shm(tmp_path, "", tmp_path, pid=_dead_pid())
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


@pytest.mark.timeout(120)
def test_a_live_driver_in_another_pid_namespace_keeps_its_objects(tmp_path):
    shm_dir, spill_root = tmp_path / "shm", tmp_path / "spill"
    shm_dir.mkdir()
    if not _can_unshare(shm_dir):
        pytest.skip("needs root and unshare(1) with PID and mount namespaces")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    pid = _dead_pid()  # the driver's pid there names no process here
    driver = subprocess.Popen(
        _private_shm(shm_dir, NAMESPACED_DRIVER, spill_root, pid=pid),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    sweep = _private_shm(shm_dir, SWEEPER, spill_root)
    try:
        info = json.loads(driver.stdout.readline() or "{}")  # type: ignore[union-attr]
        assert info.get("pid") == pid, driver.stderr.read()  # type: ignore[union-attr]
        files = sorted(n for n in os.listdir(shm_dir) if info["tag"] in n)
        assert len(files) >= 3 and os.listdir(spill_root / f"{shm.PREFIX}{info['tag']}")

        # A new session here sweeps while that driver lives: it must keep everything.
        subprocess.run(sweep, env=env, check=True, timeout=60, capture_output=True)
        assert sorted(n for n in os.listdir(shm_dir) if info["tag"] in n) == files
        driver.stdin.write("get\n")  # type: ignore[union-attr]
        driver.stdin.flush()  # type: ignore[union-attr]
        got = driver.stdout.readline()  # type: ignore[union-attr]
        assert got and json.loads(got) == [0, 1, 2, 3], driver.stderr.read()  # type: ignore[union-attr]

        # Its namespace's pid 1 dies: the kernel SIGKILLs every process in it,
        # the zygote included, so nobody cleans up there; the next sweep does.
        namespace_init = psutil.Process(driver.pid).children()[0]
        namespace_init.kill()
        driver.wait(30)
        assert any(info["tag"] in n for n in os.listdir(shm_dir))
        subprocess.run(sweep, env=env, check=True, timeout=60, capture_output=True)
        assert [n for n in os.listdir(shm_dir) if info["tag"] in n] == []
        assert [n for n in os.listdir(spill_root) if info["tag"] in n] == []
    finally:
        with contextlib.suppress(OSError):
            driver.kill()
        driver.wait()
        for stream in (driver.stdin, driver.stdout, driver.stderr):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]


def test_processes_a_dead_worker_left_behind_end_with_the_session(shutdown_only):
    """The zygote is a child subreaper: a worker's subprocess, orphaned when the
    worker was killed, is the zygote's to end at shutdown; meanwhile it is no
    worker of the runtime's (its exit is no worker's death)."""
    asyncray.init(num_cpus=1)

    @asyncray.remote
    class Starter:
        def start(self):
            self.helper = subprocess.Popen(["sleep", "600"])
            return os.getpid(), self.helper.pid

    starter = Starter.remote()
    actor_pid, helper_pid = asyncray.get(starter.start.remote(), timeout=30)
    helper = psutil.Process(helper_pid)
    asyncray.kill(starter)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(actor_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert helper.ppid() == asyncray._session.bootstrap._session.zygote_pid  # type: ignore[union-attr]

    @asyncray.remote
    def one():
        return 1

    assert asyncray.get([one.remote() for _ in range(3)], timeout=30) == [1, 1, 1]
    asyncray.shutdown()
    assert not _alive([helper])


@pytest.mark.timeout(60)
def test_a_sigterm_to_the_zygote_before_its_handlers_are_in_is_held_back(
    shutdown_only, monkeypatch
):
    """The zygote blocks SIGTERM/SIGHUP from its fork until its handlers are in."""
    import time

    from asyncray._core import zygote as zygote_module
    from asyncray._session import bootstrap

    real_prctl = zygote_module._prctl

    def slow_start(option, *args):
        if option == zygote_module._PR_SET_CHILD_SUBREAPER:  # first thing the zygote does
            time.sleep(0.5)  # widen the window between the fork and the handlers
        return real_prctl(option, *args)

    monkeypatch.setattr(zygote_module, "_prctl", slow_start)
    asyncray.init(num_cpus=1)
    monkeypatch.undo()
    zygote = bootstrap._session.zygote_pid  # type: ignore[union-attr]
    os.kill(zygote, signal.SIGTERM)  # lands inside the window

    @asyncray.remote
    def one():
        return 1

    assert asyncray.get(one.remote(), timeout=30) == 1
    assert psutil.Process(zygote).status() != psutil.STATUS_ZOMBIE
