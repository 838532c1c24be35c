"""Worker stdout/stderr reach the driver line by line, tagged with task name and pid."""

from __future__ import annotations

import os
import re
import sys
import time

import pytest

import asyncray

# Forwarding is asynchronous: give a line this long to show up.
FORWARD_TIMEOUT_S = 5.0
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def read_until(capfd, stream, pattern, timeout=FORWARD_TIMEOUT_S):
    """Accumulate captured ``stream`` ("out"/"err") until ``pattern`` matches a line."""
    seen = ""
    deadline = time.monotonic() + timeout
    while True:
        out, err = capfd.readouterr()
        seen += ANSI_ESCAPE.sub("", out if stream == "out" else err)
        if re.search(pattern, seen, re.MULTILINE):
            return seen
        if time.monotonic() >= deadline:
            raise AssertionError(f"{pattern!r} never appeared on std{stream}; saw {seen!r}")
        time.sleep(0.02)


@asyncray.remote
def speak(text):
    print(text)  # no flush: the runtime must not lose or hold back buffered output
    return os.getpid()


@asyncray.remote
def complain(text):
    print(text, file=sys.stderr)
    return os.getpid()


def test_task_stdout_reaches_the_driver_tagged(capfd, shutdown_only):
    asyncray.init(num_cpus=2)
    pid = asyncray.get(speak.remote("hello-stdout-marker"))
    read_until(capfd, "out", rf"^\(speak pid={pid}\) hello-stdout-marker$")


def test_task_stderr_reaches_the_driver_stderr_tagged(capfd, shutdown_only):
    asyncray.init(num_cpus=2)
    pid = asyncray.get(complain.remote("hello-stderr-marker"))
    seen = read_until(capfd, "err", rf"^\(complain pid={pid}\) hello-stderr-marker$")
    assert "hello-stderr-marker" in seen


def test_every_line_of_a_multiline_print_is_tagged(capfd, shutdown_only):
    asyncray.init(num_cpus=2)
    pid = asyncray.get(speak.remote("first-line\nsecond-line"))
    seen = read_until(capfd, "out", rf"^\(speak pid={pid}\) second-line$")
    assert re.search(rf"^\(speak pid={pid}\) first-line$", seen, re.MULTILINE)


def test_log_tags_can_be_turned_off(capfd, shutdown_only, monkeypatch):
    monkeypatch.setenv("ASYNCRAY_LOG_TAGS", "0")
    asyncray.init(num_cpus=2)
    asyncray.get(speak.remote("untagged-marker"))
    seen = read_until(capfd, "out", r"untagged-marker")
    assert re.search(r"^untagged-marker$", seen, re.MULTILINE), seen


@pytest.mark.parametrize("stream", ["out", "err"])
def test_output_of_a_failing_task_is_still_forwarded(capfd, shutdown_only, stream):
    asyncray.init(num_cpus=2)

    @asyncray.remote
    def print_then_fail(stream):
        print("last-words-marker", file=sys.stdout if stream == "out" else sys.stderr)
        raise RuntimeError("after printing")

    with pytest.raises(RuntimeError):
        asyncray.get(print_then_fail.remote(stream))
    read_until(capfd, stream, r"^\(print_then_fail pid=\d+\) last-words-marker$")
