"""Who may reach a shared head, and what happens when it goes away (issue #16).

- The head's files: a private directory (0700) with its socket and token
  (0600); a directory open to others, owned by another user or a symlink is
  refused with a message, and so is a token file that is a symlink or
  readable by others; the head writes through no symlink planted in its
  directory. The head listens on no TCP port.
- The driver's side: it sends the token only to a listener of its own uid
  found in a private directory (a fake head of uid 65534 learns nothing).
- Admission, spoken by hand on a raw socket: a wrong token, another
  protocol version, a first frame that is no hello, too much before a
  hello, another uid (SO_PEERCRED) — each is answered ``Refused`` with its
  reason, and the head logs "refused" with it. Random and mutated hellos are
  refused or admitted, nothing else; a hello in pieces is admitted.
- A stopped or SIGKILLed head fails a driver's waiting ``get``, ``wait`` and
  ``await`` within seconds with ``RaySystemError`` naming the head; no
  process (workers, a detached actor) or segment of it is left, a new head
  in the same directory starts clean, and the driver reconnects to it.
- The CLI: a second head at the same address is refused (exit 1, naming
  ``asyncray stop``), also when several start at once; ``asyncray stop``
  with nothing running says so (exit 0); a head that cannot act on SIGTERM
  is SIGKILLed after ``--grace-period``.

What an admitted driver may send is fuzzed in ``test_head_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import psutil
import pytest
from _head import Head, cli, driver_env, wait_gone

from asyncray._wire import protocol as P
from asyncray._wire.framing import take_first_frame, take_frames

pytestmark = pytest.mark.timeout(60)

# How soon a driver waiting on a head that went away must fail.
FAIL_WITHIN_S = 5.0


# ------------------------------------------------------------------ raw clients


def raw_connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    return sock


def hello(token: str, *, version: int = P.HANDSHAKE_VERSION, namespace: str = "raw") -> bytes:
    return P.frame(
        P.ClientHello(
            version=version,
            token=token,
            pid=os.getpid(),
            namespace=namespace,
            log_to_driver=False,
            entrypoint="test_head_security",
        )
    )


def read_answer(sock: socket.socket) -> P.Welcome | P.Refused | None:
    """The head's handshake answer, or None if it closed without one."""
    buf = bytearray()
    while True:
        answer = take_first_frame(buf, P.handshake_decoder.decode, P.MAX_FRAME)
        if answer is not None:
            return answer
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buf += chunk


def token_of(head: Head) -> str:
    with open(os.path.join(head.directory, "token")) as f:
        return f.read().strip()


def wait_for_log(head: Head, text: str, count: int = 1, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = head.read_log()
        if log.count(text) >= count or time.monotonic() > deadline:
            return log
        time.sleep(0.02)


# ------------------------------------------------------------------ files


def _mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_head_files_are_private_and_the_head_listens_on_no_tcp_port_but_loopback(head):
    assert _mode(head.directory) == 0o700
    st = os.lstat(head.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    for name in ("token", "head.json", "head.log"):
        assert _mode(os.path.join(head.directory, name)) == 0o600, name
    assert len(token_of(head)) >= 32  # a random secret, not a constant
    head.run_driver("import asyncray as ray; ray.init(address='auto'); ray.shutdown()")
    # Drivers reach the head only by its unix socket. The one TCP socket is the
    # read-only dashboard's, the head's own (not inherited by the zygote or
    # workers), listening on loopback.
    dashboard = head.info.get("dashboard_url")
    for proc in head.processes():
        with contextlib.suppress(psutil.NoSuchProcess):
            inet = proc.net_connections(kind="inet")
            if proc.pid == head.pid and dashboard:
                port = int(dashboard.rsplit(":", 1)[1])
                assert [(c.laddr.ip, c.laddr.port, c.status) for c in inet] == [
                    ("127.0.0.1", port, psutil.CONN_LISTEN)
                ], inet
            else:
                assert inet == [], proc
    listening = [c for c in psutil.Process(head.pid).net_connections(kind="unix") if c.laddr]
    assert [c.laddr for c in listening] == [head.socket]


def _start_at(directory: str) -> subprocess.CompletedProcess[str]:
    return cli("start", "--head", "--num-cpus", "1", "--address", directory, timeout=30)


def test_a_head_directory_open_to_others_owned_by_another_or_a_symlink_is_refused(tmp_path):
    wide = tmp_path / "wide"
    wide.mkdir()
    os.chmod(wide, 0o777)
    done = _start_at(str(wide))
    assert done.returncode == 1, done
    assert "refuses" in done.stderr and "777" in done.stderr and "chmod 700" in done.stderr
    assert not (wide / "head.sock").exists() and not (wide / "token").exists()

    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    done = _start_at(str(foreign))
    assert done.returncode == 1, done
    assert "belongs to uid 65534" in done.stderr, done.stderr
    assert not (foreign / "head.sock").exists()

    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    done = _start_at(str(link))
    assert done.returncode == 1, done
    assert "symlink" in done.stderr, done.stderr
    assert os.listdir(real) == []


def test_the_head_writes_through_no_symlink_in_its_directory(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    directory = tmp_path / "head"
    directory.mkdir(mode=0o700)
    (directory / "head.log").symlink_to(victim)
    done = _start_at(str(directory))
    assert done.returncode == 1, done
    assert "refuses" in done.stderr and "symlink" in done.stderr, done.stderr
    (directory / "head.log").unlink()
    for name in ("token", "head.json", "head.json.tmp", "head.lock"):
        (directory / name).symlink_to(victim)
    done = _start_at(str(directory))
    if done.returncode == 0:  # it replaced the planted links with files of its own
        head = Head(directory, 1)
        head.info = json.loads((directory / "head.json").read_text())
        head.pid = head.info["pid"]
        assert stat.S_ISREG(os.lstat(directory / "token").st_mode)
        assert _mode(str(directory / "token")) == 0o600
        head.stop()
    else:
        assert "refuses" in done.stderr and "symlink" in done.stderr, done.stderr
    assert victim.read_text() == "untouched"


def test_a_symlinked_or_readable_token_file_is_refused_by_the_driver(head, tmp_path):
    token = os.path.join(head.directory, "token")
    copy = tmp_path / "token-copy"
    copy.write_text(token_of(head))
    os.chmod(copy, 0o600)
    code = """
import asyncray as ray
try:
    ray.init(address="auto")
except PermissionError as e:
    print("refused:", e)
else:
    print("admitted")
"""
    original = token_of(head)
    os.rename(token, token + ".saved")
    try:
        os.symlink(copy, token)
        out = head.run_driver(code).stdout
        assert out.startswith("refused:") and "symlink" in out, out
        os.unlink(token)
        os.rename(token + ".saved", token)
        os.chmod(token, 0o644)
        out = head.run_driver(code).stdout
        assert out.startswith("refused:") and "644" in out, out
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.rename(token + ".saved", token)
        os.chmod(token, 0o600)
    assert token_of(head) == original
    assert head.run_driver(code).stdout.strip() == "admitted"


def test_a_driver_refuses_a_head_directory_open_to_others(head):
    os.chmod(head.directory, 0o777)
    try:
        out = head.run_driver(
            """
import asyncray as ray
try:
    ray.init(address="auto")
except PermissionError as e:
    print("refused:", e)
"""
        ).stdout
    finally:
        os.chmod(head.directory, 0o700)
    assert out.startswith("refused:") and "777" in out and head.directory in out, out
    assert "joined as job" not in head.read_log()


_FAKE_HEAD = """
import os, socket, sys
os.setgid(65534)
os.setuid(65534)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
server.listen()
print("listening", flush=True)
conn, _ = server.accept()
conn.settimeout(10)
got = b""
while True:
    chunk = conn.recv(4096)
    if not chunk:
        break
    got += chunk
print("received", len(got), b"secret-token" in got, flush=True)
"""


def test_a_driver_sends_its_token_to_no_process_of_another_uid(tmp_path):
    # Someone else's process listens where the head's socket goes (linked in
    # by root here); the driver must find out before it sends the token.
    outer = tempfile.mkdtemp(prefix="asyncray-test-fake-")
    os.chmod(outer, 0o777)
    fake = subprocess.Popen(
        [sys.executable, "-c", _FAKE_HEAD, os.path.join(outer, "fake.sock")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None and fake.stdout.readline() == "listening\n"
        directory = tmp_path / "head"
        directory.mkdir(mode=0o700)
        os.link(os.path.join(outer, "fake.sock"), directory / "head.sock")
        fd = os.open(directory / "token", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"secret-token")
        os.close(fd)
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import asyncray as ray\n"
                "try:\n"
                f"    ray.init(address={str(directory)!r})\n"
                "except ConnectionError as e:\n"
                "    print('refused:', e)\n",
            ],
            env=driver_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.stdout.startswith("refused:") and "uid 65534" in done.stdout, done
        out, err = fake.communicate(timeout=10)
        assert out.strip() == "received 0 False", (out, err)
    finally:
        if fake.poll() is None:
            fake.kill()
            fake.communicate()
        shutil.rmtree(outer)


# ------------------------------------------------------------------ admission


def test_every_kind_of_bad_hello_is_refused_with_its_reason_logged(head):
    token = token_of(head)
    too_big = P.HEADER.pack(100_000) + b"\0" * 100  # announces a frame over the limit
    # A whole frame under the limit followed by more: 64 KiB buffered before any hello.
    flood = P.HEADER.pack(60_000) + b"\xc1" * 60_000 + b"\0" * 10_000
    cases = [
        ("a wrong token", hello("0" * 64), "did not present the head's token"),
        ("no token", hello(""), "did not present the head's token"),
        ("another version", hello(token, version=99), "speaks protocol 99"),
        ("an empty namespace", hello(token, namespace=""), "namespace is empty"),
        (
            "a runtime message first",
            P.frame(P.GetObjects(1, [b"x" * 28], -1.0)),
            "its first frame is no hello",
        ),
        (
            "a head's answer first",
            P.frame(P.Refused("no")),
            "its first message is Refused, not a hello",
        ),
        ("garbage", P.HEADER.pack(5) + b"\xff\xfe\xfd\xfc\xfb", "its first frame is no hello"),
        ("a huge frame", too_big, "over the limit of 65536"),
        ("64 KiB before a hello", flood, "before a hello"),
    ]
    for what, data, reason in cases:
        with raw_connect(head.socket) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data)
            answer = read_answer(sock)
        assert type(answer) is P.Refused, (what, answer)
        assert reason in answer.reason, (what, answer.reason)
        log = wait_for_log(head, reason)
        assert f"refused a connection (pid={os.getpid()}): " in log, (what, log)
        assert reason in log, (what, log)
    log = head.read_log()
    assert "joined as job" not in log  # nobody got in
    assert "internal error" not in log
    # The head serves a well-behaved driver after all of that.
    out = head.run_driver(_ONE_TASK).stdout
    assert out.strip() == "2"


def test_a_hello_in_pieces_or_with_requests_behind_it_is_admitted(head):
    token = token_of(head)
    with raw_connect(head.socket) as sock:
        for byte in hello(token):  # one byte a write: the head waits for the whole frame
            sock.send(bytes([byte]))
        answer = read_answer(sock)
        assert type(answer) is P.Welcome, answer
    with raw_connect(head.socket) as sock:
        sock.sendall(hello(token) + P.frame(P.QueryState(5, "cluster")))
        buf = bytearray()
        while len(buf) < 8 or len(buf) < 8 + P.HEADER.unpack_from(buf)[0] + 4:
            buf += sock.recv(1 << 16)
        welcome = take_first_frame(buf, P.handshake_decoder.decode, P.MAX_FRAME)
        assert type(welcome) is P.Welcome, welcome
        while not buf or len(buf) < 4 + P.HEADER.unpack_from(buf)[0]:
            buf += sock.recv(1 << 16)
        (reply,) = take_frames(buf, P.decoder.decode)
        assert type(reply) is P.StateReply and reply.req_id == 5, reply
    log = wait_for_log(head, "disconnected", 2)
    assert log.count("joined as job") == 2 and "refused" not in log, log


def test_random_and_mutated_hellos_are_refused_or_admitted_never_more(head):
    token = token_of(head)
    rng = random.Random(20261204)
    outcomes: collections.Counter[str] = collections.Counter()
    for _ in range(150):
        body = bytearray(hello(token if rng.random() < 0.5 else "f" * 64)[4:])
        pick = rng.random()
        if pick < 0.3:
            body = bytearray(rng.randbytes(rng.randrange(0, 200)))
        else:
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(body))
                how = rng.randrange(3)
                if how == 0:
                    body[i] ^= 1 << rng.randrange(8)
                elif how == 1:
                    body.insert(i, rng.randrange(256))
                else:
                    del body[i : i + rng.randrange(1, 4)]
        with raw_connect(head.socket) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(P.HEADER.pack(len(body)) + body)
            answer = read_answer(sock)
        assert type(answer) in (P.Welcome, P.Refused), (bytes(body), answer)
        outcomes[type(answer).__name__] += 1
    assert outcomes["Refused"] > 50, outcomes
    log = wait_for_log(head, "refused a connection", outcomes["Refused"])
    assert log.count("refused a connection") == outcomes["Refused"], outcomes
    assert log.count("joined as job") == outcomes["Welcome"], outcomes
    assert "internal error" not in log and "Traceback" not in log, log
    assert head.run_driver(_ONE_TASK).stdout.strip() == "2"


def test_a_peer_that_sends_no_whole_hello_in_time_is_turned_away(monkeypatch, caplog):
    # In this process, on a socketpair: the head's 30 s would make a slow test.
    from asyncray._core import client_conn

    monkeypatch.setattr(client_conn, "HANDSHAKE_TIMEOUT_S", 0.2)

    class NoRuntime:  # nothing of the runtime is reached before a hello
        _stopped = False

    identity = client_conn.HeadIdentity("t" * 64, os.getuid(), "node", "/tmp")

    async def main() -> tuple[P.Refused | P.Welcome | None, float]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        with theirs:
            await loop.connect_accepted_socket(
                lambda: client_conn.ClientConn(NoRuntime(), identity),  # type: ignore[arg-type]
                ours,
            )
            theirs.sendall(hello("t" * 64)[:10])  # part of a hello, then nothing
            since = time.monotonic()
            answer = await loop.run_in_executor(None, read_answer, theirs)
            return answer, time.monotonic() - since

    with caplog.at_level(logging.WARNING, logger="asyncray"):
        answer, took = asyncio.run(main())
    assert type(answer) is P.Refused and answer.reason == "it sent no hello within 0.2 s"
    assert 0.15 < took < 5
    assert "refused a connection" in caplog.text and "no hello within 0.2 s" in caplog.text


def test_a_peer_of_another_uid_is_refused_even_with_the_token(head):
    token = token_of(head)
    # Open the way for uid 65534 (only for this test): a hard link to the
    # socket in a directory it may enter (pytest's tmp dirs are private) and
    # the socket 0666. The kernel's peer credentials must then turn it away.
    outer = tempfile.mkdtemp(prefix="asyncray-test-uid-")
    os.chmod(outer, 0o755)
    path = os.path.join(outer, "head.sock")
    os.link(head.socket, path)
    os.chmod(head.socket, 0o666)
    try:
        code = f"""
import os, socket, sys
sys.path[:0] = {sys.path!r}
from test_head_security import hello, read_answer
os.setgid(65534)
os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect({path!r})
try:
    s.sendall(hello({token!r}))
except OSError:
    pass  # the head may have refused and closed already, on connecting
answer = read_answer(s)
print(type(answer).__name__, getattr(answer, "reason", ""))
"""
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=driver_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        os.chmod(head.socket, 0o600)
        shutil.rmtree(outer)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Refused"), done.stdout
    assert "runs as uid 65534" in done.stdout, done.stdout
    log = wait_for_log(head, "runs as uid 65534")
    assert "refused a connection" in log and "runs as uid 65534" in log, log
    assert "joined as job" not in log


# ------------------------------------------------------------------ the head goes away

_ONE_TASK = """
import asyncray as ray
ray.init(address="auto")
@ray.remote
def two():
    return 2
print(ray.get(two.remote()))
"""

_WAITING_DRIVER = """
import asyncio, sys, threading, time
import asyncray as ray
from asyncray.exceptions import RaySystemError
ray.init(address="auto")
@ray.remote
def forever(path):
    open(path, "w").close()
    time.sleep(600)
@ray.remote
class Keeper:
    def ping(self):
        return "pong"
keeper = Keeper.options(name="keeper", lifetime="detached").remote()
assert ray.get(keeper.ping.remote()) == "pong"
big = ray.put(b"x" * 5_000_000)  # in a segment of the head's
ref = forever.remote(sys.argv[1])
failed = []
def wait_in_thread():
    try:
        ray.wait([ref])
    except RaySystemError:
        failed.append("wait")
async def await_ref():
    try:
        await ref
    except RaySystemError:
        failed.append("await")
waiter = threading.Thread(target=wait_in_thread)
waiter.start()
awaiter = threading.Thread(target=asyncio.run, args=(await_ref(),))
awaiter.start()
print("waiting", flush=True)
try:
    ray.get(ref)
except RaySystemError as e:
    print("RaySystemError:", e, flush=True)
    waiter.join(5)
    awaiter.join(5)
    print("also failed:", sorted(failed), flush=True)
    t = time.monotonic()
    try:
        ray.get(ray.put(1))
    except RaySystemError as e2:
        print("later:", time.monotonic() - t < 1, "head" in str(e2), flush=True)
    sys.exit(3)
print("returned", flush=True)
"""


def _spawn_waiting_driver(head: Head, started: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WAITING_DRIVER, started],
        env=head.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not os.path.exists(started) or not head.session_files():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.02)
    return proc


def _assert_failed_promptly(proc: subprocess.Popen[str], since: float, head: Head) -> None:
    try:
        out, err = proc.communicate(timeout=FAIL_WITHIN_S + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the driver hung after its head went away:\n{out}\n{err}")
    took = time.monotonic() - since
    assert proc.returncode == 3, (out, err)
    assert took < FAIL_WITHIN_S, f"the driver took {took:.1f} s to fail"
    failed = next(line for line in out.splitlines() if line.startswith("RaySystemError:"))
    assert "asyncray head" in failed and head.socket in failed, failed
    assert "also failed: ['await', 'wait']" in out, out  # every waiter, however it waits
    assert "later: True True" in out, out  # and so does every later call, at once


def _assert_nothing_left(procs: list[psutil.Process], head: Head) -> None:
    alive = wait_gone(procs, 10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not alive, f"processes of the old head outlived it: {alive}"
    deadline = time.monotonic() + 5
    while head.session_files() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert head.session_files() == [], "the old head's segments outlived it"


def _restart_clean(directory: str) -> None:
    with Head(directory, 2) as again:
        assert again.run_driver(_ONE_TASK).stdout.strip() == "2"


def test_stopping_the_head_fails_a_waiting_driver_promptly_and_leaves_nothing(tmp_path):
    head = Head(tmp_path / "head", 2).start()
    try:
        proc = _spawn_waiting_driver(head, str(tmp_path / "started"))
        procs = head.processes()
        assert len(procs) >= 4  # the head, its zygote, the task's worker, the actor
        # Two raw peers: one that never says hello, one admitted that never asks.
        idle = raw_connect(head.socket)
        quiet = raw_connect(head.socket)
        quiet.sendall(hello(token_of(head)))
        assert type(read_answer(quiet)) is P.Welcome
        since = time.monotonic()
        done = cli("stop", "--address", head.directory, env=head.env(), timeout=30)
        assert done.returncode == 0 and "Stopped the asyncray head" in done.stdout, done
        _assert_failed_promptly(proc, since, head)
        for sock in (idle, quiet):
            with sock:
                sock.settimeout(FAIL_WITHIN_S)
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(1 << 16) == b""  # closed, not left hanging
        _assert_nothing_left(procs, head)
        assert not os.path.exists(head.socket)
        assert not os.path.exists(os.path.join(head.directory, "token"))
    finally:
        head.stop(check=False)
    _restart_clean(head.directory)


def test_a_sigkilled_head_fails_a_waiting_driver_and_its_zygote_cleans_up(tmp_path):
    head = Head(tmp_path / "head", 2).start()
    try:
        proc = _spawn_waiting_driver(head, str(tmp_path / "started"))
        procs = head.processes()
        assert len(procs) >= 4
        since = time.monotonic()
        os.kill(head.pid, signal.SIGKILL)
        _assert_failed_promptly(proc, since, head)
        _assert_nothing_left(procs, head)
        # Its socket is left; a driver is told nobody listens there.
        out = head.run_driver(
            "import asyncray as ray\ntry:\n    ray.init(address='auto')\n"
            "except ConnectionError as e:\n    print(e)\n"
        ).stdout
        assert "Could not find any running asyncray head" in out and "stale" in out, out
        # `asyncray stop` finds nobody and tidies the head's files.
        done = cli("stop", "--address", head.directory, env=head.env(), timeout=30)
        assert done.returncode == 0 and "Did not find" in done.stdout, done
    finally:
        head.pid = 0
    _restart_clean(head.directory)


_RECONNECTING_DRIVER = """
import os, sys, time
import asyncray as ray
from asyncray.exceptions import RaySystemError
ray.init(address="auto")
@ray.remote
def two():
    return 2
@ray.remote
class Counter:
    def __init__(self):
        self.n = 0
    def inc(self):
        self.n += 1
        return self.n
c = Counter.remote()
print(ray.get(two.remote()), ray.get(c.inc.remote()), flush=True)
open(sys.argv[1] + ".ready", "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
try:
    ray.get(two.remote())
except RaySystemError as e:
    print("lost", "asyncray.init(address=...) to reconnect" in str(e), flush=True)
ray.shutdown()
ray.init(address="auto")
c = Counter.remote()
print(ray.get(two.remote()), ray.get(c.inc.remote()), flush=True)
"""


def test_a_driver_reconnects_to_a_restarted_head(tmp_path):
    directory = str(tmp_path / "head")
    head = Head(directory, 2).start()
    restarted = str(tmp_path / "restarted")
    proc = subprocess.Popen(
        [sys.executable, "-c", _RECONNECTING_DRIVER, restarted],
        env=head.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    again = Head(directory, 2)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(restarted + ".ready"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        head.stop()
        again.start()
        open(restarted, "w").close()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (out, err)
        assert out.splitlines() == ["2 1", "lost True", "2 1"], (out, err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        head.stop(check=False)
        again.stop()


# ------------------------------------------------------------------ the command line


def test_a_second_head_at_the_same_address_is_refused(head):
    done = cli("start", "--head", "--address", head.directory, env=head.env(), timeout=30)
    assert done.returncode == 1, done
    assert "already running" in done.stderr and "asyncray stop" in done.stderr, done.stderr
    # The first head is untouched: same token, still serving.
    assert head.run_driver(_ONE_TASK).stdout.strip() == "2"
    assert psutil.pid_exists(head.pid)


def test_heads_started_at_once_at_one_address_leave_one_running(tmp_path):
    directory = str(tmp_path / "head")
    os.mkdir(directory, 0o700)
    env = driver_env(ASYNCRAY_HEAD_DIR=directory)
    argv = [sys.executable, "-m", "asyncray", "start", "--head", "--num-cpus", "1"]
    starts = [
        subprocess.Popen(
            [*argv, "--address", directory],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(*p.communicate(timeout=60), p.returncode) for p in starts]
    winner = Head(directory, 1)
    with open(os.path.join(directory, "head.json")) as f:
        winner.info = json.load(f)
    winner.pid = winner.info["pid"]
    try:
        assert sorted(code for _out, _err, code in results) == [0, 1, 1], results
        for _out, err, code in results:
            if code:
                assert "already running" in err and "asyncray stop" in err, err
        ours = [
            p for p in psutil.process_iter(["cmdline"]) if directory in (p.info["cmdline"] or [])
        ]
        assert sorted(p.pid for p in ours) == sorted(p.pid for p in winner.processes()), ours
        assert winner.run_driver(_ONE_TASK).stdout.strip() == "2"
        assert "Traceback" not in winner.read_log()
    finally:
        winner.stop()


def test_stop_with_nothing_running_says_so(tmp_path):
    for address in (str(tmp_path / "never"), str(tmp_path)):
        done = cli("stop", "--address", address, timeout=30)
        assert done.returncode == 0, done
        assert "Did not find any active asyncray head" in done.stdout, done


def test_stop_signals_no_process_a_dead_heads_file_names(tmp_path):
    # A head died leaving head.json; its pid now belongs to another process,
    # an asyncray one even. `asyncray stop` must not signal it.
    decoy = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "asyncray", "start", "--head"]
    )
    try:
        directory = tmp_path / "head"
        directory.mkdir(mode=0o700)
        (directory / "head.json").write_text(json.dumps({"pid": decoy.pid}))
        (directory / "head.lock").touch(mode=0o600)
        done = cli("stop", "--address", str(directory), timeout=30)
        assert done.returncode == 0 and "Did not find" in done.stdout, done
        assert decoy.poll() is None, "asyncray stop signalled a process that is no head"
        assert not (directory / "head.json").exists()
    finally:
        decoy.kill()
        decoy.wait()


def test_stop_is_forceful_after_the_grace_period(tmp_path):
    head = Head(tmp_path / "head", 2).start()
    try:
        assert head.run_driver(_ONE_TASK).stdout.strip() == "2"
        procs = head.processes()
        os.kill(head.pid, signal.SIGSTOP)  # it cannot act on SIGTERM
        since = time.monotonic()
        done = cli(
            "stop", "--address", head.directory, "--grace-period", "0.5", env=head.env(), timeout=30
        )
        assert done.returncode == 0, done
        assert "did not stop within 0.5 s" in done.stdout and "Killed" in done.stdout, done
        assert time.monotonic() - since < 10
        _assert_nothing_left(procs, head)
        assert not os.path.exists(head.socket)
        done = cli("stop", "--address", head.directory, env=head.env(), timeout=30)
        assert "Did not find" in done.stdout, done
    finally:
        head.pid = 0
    _restart_clean(head.directory)
