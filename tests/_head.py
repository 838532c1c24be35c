"""A shared head for tests: start one, run drivers against it, stop it, check it left nothing.

``Head`` starts ``python -m asyncray start --head`` as a daemon (so its
processes are not the test process's children, and the suite's leak check
judges only what the test itself made) in a private directory of the test's
own. ``stop()`` stops it as a user would (``asyncray stop``) and asserts
that the head, its zygote and every worker are gone and that no segment,
spill file or lock of its session is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

SRC = str(Path(__file__).resolve().parent.parent / "src")
TESTS = str(Path(__file__).resolve().parent)
STOP_TIMEOUT_S = 15.0


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run the ``asyncray`` command (as ``python -m asyncray``); returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "asyncray", *args],
        env=env or driver_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def driver_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, TESTS, env.get("PYTHONPATH", "")])
    env.pop("RAY_ADDRESS", None)
    env.pop("ASYNCRAY_ADDRESS", None)
    env.update(extra)
    return env


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until ``procs`` have exited; those still running after ``timeout``.

    A zombie counts as gone: the head is a daemon, so it and its children are
    reaped by init, which may take its time (``psutil.wait_procs`` would wait
    for that too).
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.01)


class Head:
    """One head in ``directory``; use as a context manager or call start()/stop()."""

    def __init__(self, directory: str | os.PathLike[str], num_cpus: int = 2, *extra: str):
        self.directory = str(directory)
        self.num_cpus = num_cpus
        self.extra = extra
        self.pid = 0
        self.info: dict[str, Any] = {}
        self.start_output = ""

    @property
    def socket(self) -> str:
        return os.path.join(self.directory, "head.sock")

    @property
    def log(self) -> str:
        return os.path.join(self.directory, "head.log")

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a driver that should find this head with address="auto"."""
        return driver_env(**{"ASYNCRAY_HEAD_DIR": self.directory, **extra})

    def start(self) -> Head:
        done = cli(
            "start",
            "--head",
            "--num-cpus",
            str(self.num_cpus),
            "--address",
            self.directory,
            *self.extra,
            env=self.env(),
        )
        self.start_output = done.stdout + done.stderr
        assert done.returncode == 0, f"asyncray start failed:\n{self.start_output}"
        with open(os.path.join(self.directory, "head.json")) as f:
            self.info = json.load(f)
        self.pid = self.info["pid"]
        return self

    def processes(self) -> list[psutil.Process]:
        """The head and every process under it (zygote, workers, actors)."""
        try:
            me = psutil.Process(self.pid)
            return [me, *me.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def session_files(self) -> list[str]:
        """Segments, spill directories and locks of the head's session still on disk."""
        tag = self.info.get("shm_tag", "")
        found = []
        for base in ("/dev/shm", os.path.join("/tmp", "asyncray-spill")):
            with contextlib.suppress(FileNotFoundError):
                found += [os.path.join(base, n) for n in os.listdir(base) if tag and tag in n]
        return found

    def run_driver(
        self, code: str, *, timeout: float = 60, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``code`` in a new Python process with this head's environment."""
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert done.returncode == 0, (
                f"driver failed ({done.returncode}):\nstdout:\n{done.stdout}\n"
                f"stderr:\n{done.stderr}\nhead log:\n{self.read_log()}"
            )
        return done

    def spawn_driver(self, code: str, **env: str) -> subprocess.Popen[str]:
        """Start ``code`` as a driver process and return at once."""
        return subprocess.Popen(
            [sys.executable, "-c", code],
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def read_log(self) -> str:
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self, check: bool = True) -> None:
        """``asyncray stop``; then nothing of the head may be left."""
        if not self.pid:
            return
        procs = self.processes()
        done = cli("stop", "--address", self.directory, env=self.env(), timeout=STOP_TIMEOUT_S + 5)
        alive = wait_gone(procs, STOP_TIMEOUT_S)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        self.pid = 0
        if not check:
            return
        assert done.returncode == 0, done.stdout + done.stderr
        assert not alive, f"processes outlived `asyncray stop`: {alive}"
        deadline = time.monotonic() + 5
        while self.session_files() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.session_files() == [], "the head's session files outlived it"
        assert not os.path.exists(self.socket)

    def __enter__(self) -> Head:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop(check=exc_info[0] is None)
