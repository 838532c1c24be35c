"""The ``asyncray`` command (also ``python -m asyncray``), spelled as Ray's ``ray`` CLI.

- ``asyncray start --head [--num-cpus N] [--num-gpus N] [--resources JSON]
  [--object-store-memory BYTES] [--address PATH] [--include-dashboard BOOL]
  [--dashboard-host 127.0.0.1] [--dashboard-port PORT] [--block]`` starts a
  shared head in the background (``--block``: in the foreground) and says how
  to connect to it and where its dashboard is;
- ``asyncray stop [--address PATH] [--grace-period S]`` stops it: SIGTERM,
  then SIGKILL after the grace period; no process or segment is left;
- ``asyncray status [--address PATH]`` shows resources, workers, actors,
  objects and the connected drivers;
- ``asyncray debug [--pid PID]`` joins a task or actor stopped at
  ``breakpoint()`` with pdb (``_worker/debugger.py``);
- ``asyncray list tasks|actors|objects|workers|placement-groups|nodes
  [--filter KEY=VALUE] [--limit N] [--detail] [--format table|json]``,
  ``asyncray summary tasks|actors|objects``, ``asyncray memory`` and
  ``asyncray timeline [--output FILE]`` show the state API of the head
  (``_state_cli``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

from . import _state_cli
from ._session import head as _head
from ._session import head_files
from ._state_cli import _bytes
from .util.state.exception import RayStateApiException

# How long `asyncray start` waits for the head to be ready.
START_TIMEOUT_S = 60.0
# How long `asyncray stop` waits after SIGTERM before SIGKILL (Ray's default: 16 s... ours is
# shorter: a head stops in well under a second).
STOP_GRACE_S = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="asyncray", description="asyncray's command line: a shared head for several drivers."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser("start", help="start a shared head on this machine")
    start.add_argument("--head", action="store_true", help="start the head (required)")
    start.add_argument("--num-cpus", type=int, default=None)
    start.add_argument("--num-gpus", type=int, default=None)
    start.add_argument(
        "--resources", default=None, help="custom resources as JSON, e.g. '{\"x\": 2}'"
    )
    start.add_argument("--object-store-memory", type=int, default=None, help="bytes")
    start.add_argument("--address", default=None, help=_ADDRESS_HELP)
    start.add_argument(
        "--include-dashboard",
        type=_boolean,
        default=None,
        metavar="BOOL",
        help="serve the dashboard (default: yes, if asyncray[dashboard] is installed)",
    )
    start.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="127.0.0.1 or localhost: the dashboard binds the loopback address only",
    )
    start.add_argument(
        "--dashboard-port",
        type=int,
        default=None,
        help="the dashboard's port (default 8265; another free one if it is taken; 0: any)",
    )
    start.add_argument(
        "--block", action="store_true", help="run in the foreground until Ctrl-C or SIGTERM"
    )

    stop = commands.add_parser("stop", help="stop the shared head")
    stop.add_argument("--address", default=None, help=_ADDRESS_HELP)
    stop.add_argument(
        "-g", "--grace-period", type=float, default=STOP_GRACE_S, help="seconds before SIGKILL"
    )
    stop.add_argument("-f", "--force", action="store_true", help="SIGKILL at once")

    status = commands.add_parser("status", help="show what the shared head runs")
    status.add_argument("--address", default=None, help=_ADDRESS_HELP)

    debug = commands.add_parser(
        "debug", help="join a task or actor stopped at breakpoint() with pdb"
    )
    debug.add_argument("--pid", type=int, default=None, help="the stopped worker's pid")
    _state_cli.add_commands(commands, _ADDRESS_HELP)

    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            return _start(args)
        if args.command == "stop":
            return _stop(args)
        if args.command == "status":
            return _status(args)
        if args.command == "debug":
            return _debug(args)
        return _state_cli.run(args, _joined)
    except (
        PermissionError,
        ValueError,
        TypeError,
        ConnectionError,
        _head.HeadRunning,
        RayStateApiException,
        ImportError,
    ) as e:
        print(f"asyncray {args.command}: {e}", file=sys.stderr)
        return 1


def _boolean(text: str) -> bool:
    """A flag's boolean, spelled as Ray's (click's): true/false, yes/no, 1/0, on/off."""
    word = text.strip().lower()
    if word in ("true", "yes", "y", "1", "on", "t"):
        return True
    if word in ("false", "no", "n", "0", "off", "f"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a valid boolean")


_ADDRESS_HELP = (
    "the head's socket path or directory (default: $ASYNCRAY_HEAD_DIR, else {tmp}/asyncray-{uid})"
)


def _files(address: str | None) -> head_files.HeadFiles:
    return head_files.resolve(address or head_files.AUTO)


# ==================================================================== start


def _start(args: argparse.Namespace) -> int:
    if not args.head:
        print(
            "asyncray start: asyncray runs on one machine; only `asyncray start --head` is "
            "supported (there are no worker nodes to join).",
            file=sys.stderr,
        )
        return 1
    resources = None
    if args.resources is not None:
        try:
            resources = json.loads(args.resources)
        except ValueError as e:
            raise ValueError(f"--resources must be a JSON object, e.g. '{{\"x\": 2}}': {e}")
        if not isinstance(resources, dict):
            raise ValueError("--resources must be a JSON object, e.g. '{\"x\": 2}'")
    from . import _dashboard

    _dashboard.check_host(args.dashboard_host)
    if args.include_dashboard:
        _dashboard.require()  # asked for: refused now, not in the daemon's log
    files = _files(args.address)
    head_files.private_directory(files.directory)
    if _head.head_alive(files):
        raise _head.HeadRunning(
            f"an asyncray head is already running at {files.socket}. Stop it with "
            "`asyncray stop`, or start another with `asyncray start --head --address <dir>`."
        )
    options = {
        "num_cpus": args.num_cpus,
        "num_gpus": args.num_gpus,
        "resources": resources,
        "object_store_memory": args.object_store_memory,
        "include_dashboard": args.include_dashboard,
        "dashboard_port": args.dashboard_port,
    }
    if args.block:
        _log_to(sys.stderr)
        _head.run_head(files, **options, on_ready=lambda info: _print_started(info, True))
        return 0
    return _daemonize(files, options)


def _daemonize(files: head_files.HeadFiles, options: dict[str, Any]) -> int:
    """Run the head in a new session, detached from this terminal; wait until it is ready."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the intermediate child: a new session, then the head's own fork
        os.close(read_end)
        os.setsid()
        if os.fork():
            os._exit(0)
        _run_daemon(files, options, write_end)  # never returns
    os.close(write_end)
    os.waitpid(pid, 0)
    return _await_daemon(files, read_end)


def _run_daemon(files: head_files.HeadFiles, options: dict[str, Any], report: int) -> None:
    """In the daemon: run the head, telling the `start` command how it went."""
    status = 1
    try:
        os.write(report, f"pid {os.getpid()}\n".encode())
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        # Not through a symlink: the head would append to whatever it names.
        log = head_files.open_nofollow(files.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(log, 1)
        os.dup2(log, 2)
        _log_to(sys.stderr)

        def ready(info: dict[str, Any]) -> None:
            os.write(report, b"ready " + json.dumps(info).encode() + b"\n")
            os.close(report)

        _head.run_head(files, **options, on_ready=ready)
        status = 0
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.write(report, f"error {type(e).__name__}: {e}\n".encode())
        if isinstance(e, (_head.HeadRunning, PermissionError)):
            # Refused, not failed: one line (this may be the running head's log).
            logging.getLogger("asyncray").error("asyncray head not started: %s", e)
        else:
            logging.getLogger("asyncray").exception("asyncray head failed")
    finally:
        os._exit(status)


def _await_daemon(files: head_files.HeadFiles, read_end: int) -> int:
    """In `asyncray start`: wait for the daemon's word, then print how to connect."""
    buf = b""
    pid = 0
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.2)
            if ready:
                chunk = os.read(read_end, 1 << 16)
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    word, _, rest = line.decode().partition(" ")
                    if word == "pid":
                        pid = int(rest)
                    elif word == "ready":
                        _print_started(json.loads(rest), False)
                        return 0
                    elif word == "error":
                        print(f"asyncray start: the head failed to start: {rest}", file=sys.stderr)
                        return 1
                if not chunk:
                    break
            elif pid and not _alive(pid):
                break
    finally:
        os.close(read_end)
    print(f"asyncray start: the head did not start (see its log, {files.log}).", file=sys.stderr)
    return 1


def _print_started(info: dict[str, Any], block: bool) -> None:
    address = info["address"]
    resources = ", ".join(f"{k}: {_amount(k, v)}" for k, v in sorted(info["resources"].items()))
    directory = os.path.dirname(address)
    # A head outside the default directory is found by "auto" only through
    # ASYNCRAY_HEAD_DIR, and by status/stop only with --address.
    default = directory == head_files.default_directory()
    auto = "" if default else f"    # with ASYNCRAY_HEAD_DIR={directory} in the environment\n"
    flag = "" if default else f" --address {directory}"
    url = info.get("dashboard_url")
    note = info.get("dashboard_note")
    dashboard = f"  Dashboard: http://{url}\n" if url else ""
    if note:
        dashboard += f"  Dashboard: {note}\n" if not url else f"    ({note})\n"
    print(
        f"asyncray runtime started (head pid {info['pid']}).\n"
        f"  Address: {address}\n"
        f"  Resources: {resources}\n"
        f"{dashboard}"
        "--------------------\n"
        "Next steps\n"
        "  To connect to this head from Python (in this user's processes only):\n"
        "    import asyncray as ray\n"
        "    ray.init(address='auto')\n"
        f"{auto}"
        f"  or, naming it: ray.init(address='{address}'), or RAY_ADDRESS={address}\n"
        "  To see what it runs:\n"
        f"    asyncray status{flag}\n"
        + (f"    or view the dashboard at http://{url}\n" if url else "")
        + (
            f"  To stop it: Ctrl-C, or `asyncray stop{flag}`\n"
            if block
            else f"  To stop it:\n    asyncray stop{flag}\n"
        ),
        flush=True,
    )


def _log_to(stream: Any) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("asyncray")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


# ==================================================================== stop


def _stop(args: argparse.Namespace) -> int:
    files = _files(args.address)
    info = files.read_info() if os.path.isdir(files.directory) else None
    pid = int(info["pid"]) if info and isinstance(info.get("pid"), int) else 0
    # A head holds head.lock while it runs: without the lock held, head.json
    # is a dead head's and its pid may be anyone's now (even another asyncray
    # process), so nothing is signalled.
    if not pid or not files.lock_held() or not _alive(pid) or not _is_head(pid):
        if info is not None:
            files.remove()  # a dead head's files
        print("Did not find any active asyncray head.")
        return 0
    if not args.force:
        os.kill(pid, signal.SIGTERM)
        if _wait_gone(pid, args.grace_period):
            print(f"Stopped the asyncray head (pid {pid}).")
            return 0
        print(f"The head (pid {pid}) did not stop within {args.grace_period:g} s: killing it.")
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 5.0)
    # The head's zygote cleans up its workers and segments when the head dies.
    files.remove()
    print(f"Killed the asyncray head (pid {pid}).")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", encoding="ascii") as f:
        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # a zombie is gone for our purposes
    return True


def _is_head(pid: int) -> bool:
    """Whether ``pid`` is an asyncray process (not a pid reused by something else)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"asyncray" in f.read()
    except OSError:
        return True  # no /proc: trust the head's file


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return not _alive(pid)


# ==================================================================== status


@contextlib.contextmanager
def _joined(address: str | None) -> Iterator[None]:
    """This process joins the head at ``address`` as a short-lived driver, then leaves."""
    from ._session import bootstrap

    files = _files(address)
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.pop("ASYNCRAY_ADDRESS", None)
    bootstrap.init(address=files.socket, namespace="asyncray-cli", log_to_driver=False)
    try:
        yield
    finally:
        bootstrap.shutdown()


def _status(args: argparse.Namespace) -> int:
    from ._session import bootstrap

    with _joined(args.address):
        status = bootstrap.client().query("status")
        me = bootstrap.job_id()
    info = _files(args.address).read_info() or {}
    print(_format_status(_files(args.address).socket, status, me, info.get("dashboard_url")))
    return 0


# ==================================================================== debug


def _waiting_breakpoints() -> list[dict[str, Any]]:
    """The breakpoint() calls waiting for a debugger (oldest first)."""
    from ._worker.debugger import debug_directory

    directory = debug_directory()
    waiting = []
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(directory)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(directory, name)) as f:
                    meta = json.load(f)
            except (OSError, ValueError):
                continue
            if os.path.exists(meta.get("socket", "")) and _alive(int(meta.get("pid", 0))):
                waiting.append(meta)
    return waiting


def _debug(args: argparse.Namespace) -> int:
    """Join a stopped task's pdb over its socket; this terminal is pdb's until it goes on."""
    import socket

    waiting = _waiting_breakpoints()
    if args.pid is not None:
        waiting = [w for w in waiting if w["pid"] == args.pid]
    if not waiting:
        which = f" in pid {args.pid}" if args.pid is not None else ""
        print(f"asyncray debug: no breakpoint() is waiting for a debugger{which}.", file=sys.stderr)
        return 1
    if len(waiting) > 1:
        print("breakpoint() calls waiting (joining the first; --pid chooses):")
        for w in waiting:
            print(f"  pid {w['pid']}: {w['task']} at {w['where']}")
    chosen = waiting[0]
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(chosen["socket"])
    sources: list[Any] = [conn, sys.stdin]
    try:
        while True:
            readable, _, _ = select.select(sources, [], [])
            if conn in readable:
                data = conn.recv(65536)
                if not data:
                    return 0  # the task went on (continue) or ended (quit)
                sys.stdout.write(data.decode("utf-8", "replace"))
                sys.stdout.flush()
            if sys.stdin in readable:
                line = sys.stdin.readline()
                if not line:  # end of input: pdb sees EOF and lets the task go on
                    conn.shutdown(socket.SHUT_WR)
                    sources = [conn]
                else:
                    conn.sendall(line.encode())
    except KeyboardInterrupt:
        return 130
    finally:
        conn.close()


def _amount(name: str, value: float) -> str:
    if name == "object_store_memory" or name == "memory":
        return _bytes(value)
    return f"{value:g}"


def _format_status(
    address: str, status: dict[str, Any], me: str, dashboard_url: str | None = None
) -> str:
    total, available = status["total"], status["available"]
    lines = [f"======== asyncray head at {address} ========"]
    if dashboard_url:
        lines.append(f"Dashboard: http://{dashboard_url}")
    lines += ["Resources", "-" * 40]
    for name in sorted(total):
        used = total[name] - available.get(name, 0.0)
        lines.append(f" {_amount(name, used)}/{_amount(name, total[name])} {name}")
    workers = status["workers"]
    lines += [
        "",
        "Workers",
        "-" * 40,
        f" {workers['task']} task workers ({workers['idle']} idle), "
        f"{workers['actor']} actor processes",
        f" {status['tasks']['live']} tasks live, {status['tasks']['queued']} waiting for resources",
        "",
        "Actors",
        "-" * 40,
    ]
    if not status["actors"]:
        lines.append(" (none)")
    for namespace, states in sorted(status["actors"].items()):
        counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        lines.append(f" namespace {namespace!r}: {counts}")
    objects = status["objects"]
    lines += [
        "",
        "Objects",
        "-" * 40,
        f" {objects['count']} objects; shared memory {_bytes(objects['store_used'])} used of "
        f"{_bytes(objects['store_capacity'])}; {_bytes(objects['spilled_bytes'])} spilled",
        "",
        "Drivers",
        "-" * 40,
    ]
    drivers = [d for d in status["drivers"] if d["job_id"] != me]
    if not drivers:
        lines.append(" (none connected)")
    for d in drivers:
        lines.append(
            f" job {d['job_id']}  pid {d['driver_pid']}  namespace {d['namespace']!r}  "
            f"{d['entrypoint'][:60]}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
