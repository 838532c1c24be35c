"""The live dashboard: served on loopback, read-only, and its numbers are the state API's.

The page is loaded in a real browser (headless Chromium, Debian's
``chromium`` package; ``.ci/run`` installs it) and the numbers in its DOM
(stable ids and ``data-*`` attributes) are compared with
``asyncray.util.state``. Tests that need no browser check the JSON endpoint,
that nothing but GET is answered, the loopback rules, the port choice, the
head's dashboard and that nothing is left after ``shutdown()``.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from html.parser import HTMLParser
from typing import Any

import pytest

import asyncray
from asyncray import _dashboard
from asyncray._session import init_options
from asyncray.util import state

MISSING = _dashboard.missing()
CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"the dashboard extra is not installed ({', '.join(MISSING)} missing): "
        "pip install 'asyncray[dashboard]'",
    ),
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless browser: install Debian's `chromium` package "
    "(`apt-get install -y chromium`; .ci/run does)",
)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(init_options, "_warned", set())


# ---------------------------------------------------------------- helpers


def request(url: str, method: str = "GET", path: str = "/api/snapshot", **headers: str) -> Any:
    """One HTTP request to ``url`` ("127.0.0.1:PORT"); the response, its body read."""
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=b"{}" if method != "GET" else None, headers=headers)
        response = conn.getresponse()
        response.body = response.read()
        return response
    finally:
        conn.close()


def load_page(url: str) -> str:
    """The DOM of the dashboard after it has polled a few times, from headless Chromium."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=3000",
            "--dump-dom",
            f"http://{url}/",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Dom(HTMLParser):
    """The dumped DOM's elements with an id or data-* attributes, and their text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []
        self.body: dict[str, str] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, "attrs": {k: v or "" for k, v in attrs}, "text": "", "parents": []}
        if tag == "body":
            self.body = element["attrs"]
        element["parents"] = [e["attrs"] for e in self._open]
        self.elements.append(element)
        if tag not in ("br", "img", "input", "meta", "link"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data

    def by_id(self, ident: str) -> dict[str, Any]:
        found = [e for e in self.elements if e["attrs"].get("id") == ident]
        assert found, f"no element #{ident} on the page"
        return found[0]

    def cells(self, row_attr: str, cell_attr: str) -> dict[tuple[str, str], str]:
        """``{(row's row_attr, cell's cell_attr): text}`` for cells inside such rows."""
        out = {}
        for e in self.elements:
            if cell_attr not in e["attrs"]:
                continue
            rows = [p for p in e["parents"] if row_attr in p]
            if rows:
                out[(rows[-1][row_attr], e["attrs"][cell_attr])] = e["text"].strip()
        return out


def dashboard_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "asyncray-dashboard"]


def port_is_closed(url: str) -> bool:
    host, port = url.split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


# ---------------------------------------------------------------- a workload


@asyncray.remote
def square(x):
    time.sleep(0.01)
    return x * x


@asyncray.remote
def fails(x):
    raise ValueError(f"bad {x}")


@asyncray.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n


def run_workload() -> list[Any]:
    """Tasks (some failing), actors (one killed), a large object; returns what to keep alive."""
    assert asyncray.get([square.remote(i) for i in range(12)]) == [i * i for i in range(12)]
    for i in range(3):
        with pytest.raises(ValueError):
            asyncray.get(fails.remote(i))
    counter = Counter.remote()
    assert asyncray.get([counter.incr.remote() for _ in range(4)])[-1] == 4
    doomed = Counter.options(name="doomed").remote()
    asyncray.get(doomed.incr.remote())
    asyncray.kill(doomed)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(a["state"] == "DEAD" for a in state.list_actors()):
            break
        time.sleep(0.02)
    big = asyncray.put(b"x" * (2 << 20))  # in shared memory: the store is in use
    return [counter, big]


# ---------------------------------------------------------------- the page in a browser


@needs_chromium
def test_the_page_shows_what_the_state_api_says(shutdown_only):
    ctx = asyncray.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    url = ctx.dashboard_url
    keep = run_workload()
    # The state API first (it flushes released refs), then the page: same state.
    summary = state.summarize_tasks()["cluster"]["summary"]
    actors = state.list_actors(limit=10_000, detail=True)
    objects = state.list_objects(limit=10_000)
    # The pool may still be forking a worker (a killed actor's slot, the base
    # pool's refill): compare with a page loaded while the workers stood still.
    for _ in range(5):
        workers = {str(w["pid"]) for w in state.list_workers(limit=10_000)}
        dom = Dom(load_page(url))
        if workers == {str(w["pid"]) for w in state.list_workers(limit=10_000)}:
            break

    assert int(dom.body.get("data-updates", "0")) >= 1, "the page never rendered a snapshot"
    counts = dom.cells("data-func", "data-state")
    for name in ("square", "fails", "Counter.incr", "Counter.__init__"):
        for task_state in ("FINISHED", "FAILED"):
            expected = summary[name]["state_counts"].get(task_state, 0)
            assert int(counts[(name, task_state)]) == expected, (name, task_state, counts)
    assert int(counts[("square", "FINISHED")]) == 12
    assert int(counts[("fails", "FAILED")]) == 3
    assert int(dom.by_id("tasks-failed")["text"]) == sum(
        s["state_counts"].get("FAILED", 0) for s in summary.values()
    )

    assert int(dom.by_id("actors-total")["text"]) == len(actors)
    shown = dom.cells("data-actor-id", "data-field")
    for actor in actors:
        assert shown[(actor["actor_id"], "state")] == actor["state"]
        assert int(shown[(actor["actor_id"], "num_restarts")]) == actor["num_restarts"]
    assert {a["state"] for a in actors} == {"ALIVE", "DEAD"}

    assert int(dom.by_id("objects-count")["text"]) == len(objects)
    assert int(dom.by_id("store-used")["attrs"]["data-bytes"]) >= 2 << 20
    assert int(dom.by_id("spilled-bytes")["attrs"]["data-bytes"]) == 0

    pids = {e["attrs"]["data-pid"] for e in dom.elements if "data-pid" in e["attrs"]}
    assert pids == workers | {str(os.getpid())}
    streams = [e["attrs"]["data-spans"] for e in dom.elements if "data-spans" in e["attrs"]]
    assert streams and int(streams[0]) >= 12 + 3 + 4  # the tasks and calls that ran
    del keep


# ---------------------------------------------------------------- the server


def test_json_endpoint_and_nothing_but_get(shutdown_only):
    ctx = asyncray.init(num_cpus=1, include_dashboard=True, dashboard_port=0)
    url = ctx.dashboard_url
    host, port = url.split(":")
    assert host == "127.0.0.1" and int(port) > 0  # Ray's form: no scheme
    assert ctx.address_info["webui_url"] == url
    assert asyncray.get(square.remote(3)) == 9

    response = request(url)
    assert response.status == 200
    snap = json.loads(response.body)
    assert snap["kind"] == "driver"
    assert snap["resources"]["total"]["CPU"] == 1
    by_name = {r["name"]: r for r in snap["tasks"]["by_function"]}
    assert by_name["square"]["counts"] == {"FINISHED": 1}
    assert by_name["square"]["p50_ms"] >= 10
    assert [s[1] for s in snap["stream"]["spans"]] == ["square"]
    assert snap["history"]["series"]["CPU"]
    assert response.getheader("Cache-Control") == "no-store"

    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/", "/api/snapshot", "/static/app.js"):
            assert request(url, method, path).status == 405, (method, path)
    assert request(url, path="/static/../server.py").status == 404
    assert request(url, path="/api/kill").status == 404
    # A page elsewhere that rebinds its name to 127.0.0.1 is refused.
    assert request(url, Host=f"attacker.example:{port}").status == 403
    assert request(url, Host=f"localhost:{port}").status == 200
    assert request(url, path="/").body.startswith(b"<!doctype html>")

    assert len(dashboard_threads()) == 1
    asyncray.shutdown()
    assert dashboard_threads() == []
    assert port_is_closed(url)


def test_no_dashboard_unless_asked(shutdown_only):
    ctx = asyncray.init(num_cpus=1)
    assert ctx.dashboard_url is None
    assert ctx.address_info["webui_url"] is None
    assert dashboard_threads() == []


def test_the_dashboard_binds_loopback_only(shutdown_only):
    for host in ("0.0.0.0", "192.168.1.10", "::"):
        with pytest.raises(ValueError, match="binds only the loopback address"):
            asyncray.init(num_cpus=1, include_dashboard=True, dashboard_host=host)
        assert not asyncray.is_initialized()
    ctx = asyncray.init(
        num_cpus=1, include_dashboard=True, dashboard_host="localhost", dashboard_port=0
    )
    assert ctx.dashboard_url.startswith("127.0.0.1:")


def test_a_busy_port_is_replaced_by_a_free_one(shutdown_only, caplog):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        busy = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="asyncray"):
            ctx = asyncray.init(num_cpus=1, dashboard_port=busy)  # a port alone asks for it
        assert ctx.dashboard_url is not None
        assert ctx.dashboard_url != f"127.0.0.1:{busy}"
        assert f"port {busy} is in use" in caplog.text
        assert request(ctx.dashboard_url).status == 200
    finally:
        taken.close()


def test_without_the_extra_asking_for_it_says_what_to_install(shutdown_only, monkeypatch):
    monkeypatch.setattr(_dashboard, "missing", lambda: ["aiohttp"])
    with pytest.raises(ImportError, match=r"pip install 'asyncray\[dashboard\]'"):
        asyncray.init(num_cpus=1, include_dashboard=True)
    assert not asyncray.is_initialized()


# ---------------------------------------------------------------- the head


def test_the_head_serves_it_and_says_where(tmp_path):
    from _head import Head, cli

    with Head(tmp_path / "head", 2, "--dashboard-port", "0") as head:
        url = head.info["dashboard_url"]
        assert f"Dashboard: http://{url}" in head.start_output
        head.run_driver(
            "import warnings\n"
            "import asyncray as ray\n"
            "warnings.simplefilter('error')  # asking for the head's dashboard is no mistake\n"
            "ctx = ray.init(address='auto', include_dashboard=True)\n"
            f"assert ctx.dashboard_url == {url!r}, ctx.dashboard_url\n"
            "@ray.remote\n"
            "def f():\n"
            "    return 1\n"
            "assert ray.get([f.remote() for _ in range(5)]) == [1] * 5\n"
        )
        snap = json.loads(request(url).body)
        assert snap["kind"] == "head"
        by_name = {r["name"]: r for r in snap["tasks"]["by_function"]}
        assert by_name["f"]["counts"] == {"FINISHED": 5}
        assert request(url, "POST").status == 405
        status = cli("status", "--address", head.directory, env=head.env())
        assert f"Dashboard: http://{url}" in status.stdout
    assert port_is_closed(url)


def test_the_head_without_a_dashboard(tmp_path):
    from _head import Head

    with Head(tmp_path / "head", 1, "--include-dashboard", "false") as head:
        assert "dashboard_url" not in head.info
        assert "Dashboard" not in head.start_output
        with pytest.raises(ValueError, match="loopback"):
            asyncray.init(address=head.socket, include_dashboard=True, dashboard_host="0.0.0.0")
        assert not asyncray.is_initialized()
        with pytest.warns(RuntimeWarning, match="this head serves none"):
            ctx = asyncray.init(address=head.socket, include_dashboard=True)
        try:
            assert ctx.dashboard_url is None
        finally:
            asyncray.shutdown()


# ---------------------------------------------------------------- the page's numbers


def test_snapshot_counts_run_times_and_the_streams_window():
    """``snapshot.build`` on a made-up kernel copy: counts, medians, the stream's window."""
    from asyncray._dashboard import snapshot

    def ended(name, start, end, error=""):
        # (type, task_id, name, job, actor_id, pid, created, started, ended, error, attempts, ...)
        return (
            "NORMAL_TASK",
            b"t",
            name,
            "01000000",
            b"",
            7,
            start,
            start,
            end,
            error,
            0,
            {},
            b"",
            b"",
        )

    now = 1000.0
    raw = {
        "perf_now": now,
        "wall_us_at_perf_0": 0.0,
        "total": {"CPU": 4.0, "object_store_memory": 100.0},
        "available": {"CPU": 1.0},
        "live_tasks": [("f", "NORMAL_TASK", "RUNNING", 8, now - 2.0)],
        "ended": [
            ended("f", now - 500.0, now - 499.0),  # outside the stream's 120 s
            ended("f", now - 10.0, now - 9.9),
            ended("f", now - 5.0, now - 4.7, "TASK_EXECUTION_EXCEPTION"),
        ],
        "actors": [],
        "workers": [{"pid": 8, "kind": "task", "state": "busy", "running": "f"}],
        "objects": {"count": 0, "store_used": 10, "store_capacity": 100, "spilled_bytes": 0},
        "queued": 0,
        "drivers": [],
        "pid": 1,
    }
    history = snapshot.History()
    out = snapshot.build(raw, history, {8: {"cpu_percent": 50.0, "rss": 1.0}}, kind="driver")
    (f,) = out["tasks"]["by_function"]
    assert f["counts"] == {"RUNNING": 1, "FINISHED": 2, "FAILED": 1}
    assert f["p50_ms"] == pytest.approx(300.0)  # of 1000, 100 and 300 ms
    assert out["resources"]["used"] == {"CPU": 3.0}
    spans = out["stream"]["spans"]
    assert sorted((s[1], s[3] is None, s[4]) for s in spans) == [
        ("f", False, False),
        ("f", False, True),
        ("f", True, False),
    ]
    assert out["workers"][1]["cpu_percent"] == 50.0
    assert out["history"]["series"]["CPU"] == [3.0]
    snapshot.build(raw, history, {}, kind="driver")
    assert len(history.samples) == 2  # one sample per snapshot asked for, nothing else
