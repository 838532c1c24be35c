"""Actor-task retries: ``retry_exceptions`` with ``max_task_retries`` on actor methods,
``sys.exit()`` inside a method, and ``kill(no_restart=False)``.

Checked against Ray 2.60: a method whose error is allowed by ``retry_exceptions``
runs again, up to ``max_task_retries`` more times, and its caller gets only the
last error; the count comes from ``.options()`` on the call, then
``@ray.method``, then the actor's own options, while ``retry_exceptions`` is a
method option only. Sync, threaded, async and streaming-generator methods all
retry; a retried stream keeps the items its first attempt produced.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys

import pytest
from _helpers import wait_for_condition, wait_for_process_exit

import asyncray
from asyncray.exceptions import ActorDiedError, ActorUnavailableError

pytestmark = pytest.mark.timeout(30)


class Boom(Exception):
    pass


class Other(Exception):
    pass


@asyncray.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    @asyncray.method(max_task_retries=2, retry_exceptions=True)
    def fail(self) -> None:
        self.n += 1
        raise Boom(f"attempt {self.n}")

    @asyncray.method(max_task_retries=3, retry_exceptions=[Boom])
    def fail_with(self, error: type[Exception]) -> None:
        self.n += 1
        raise error(f"attempt {self.n}")

    @asyncray.method(max_task_retries=3, retry_exceptions=True)
    def flaky(self) -> int:
        self.n += 1
        if self.n < 3:
            raise Boom(f"attempt {self.n}")
        return self.n

    @asyncray.method(retry_exceptions=True)
    def fail_no_count(self) -> None:
        self.n += 1
        raise Boom(f"attempt {self.n}")

    def plain(self) -> None:
        self.n += 1
        raise Boom(f"attempt {self.n}")

    @asyncray.method(max_task_retries=2, retry_exceptions=True)
    def gen(self):
        self.n += 1
        yield self.n
        raise Boom(f"attempt {self.n}")

    def count(self) -> int:
        n, self.n = self.n, 0
        return n


def _error_and_runs(actor, ref) -> tuple[str, int]:
    with pytest.raises(asyncray.exceptions.RayTaskError) as info:
        asyncray.get(ref)
    return _last_line(info.value), asyncray.get(actor.count.remote())


def _last_line(error: Exception) -> str:
    """The error's own line, ``Boom: attempt 3`` (without the module of its class)."""
    return re.sub(r"^[\w.]*\.", "", str(error).splitlines()[-1])


def test_sync_method_retried_up_to_count_and_last_error_delivered(ray_start):
    a = Counter.remote()
    with pytest.raises(Boom, match="attempt 3"):
        asyncray.get(a.fail.remote())
    assert asyncray.get(a.count.remote()) == 3
    # A method that succeeds on a retry returns its value.
    assert asyncray.get(a.flaky.remote()) == 3
    assert asyncray.get(a.count.remote()) == 3


def test_retry_exceptions_list_retries_only_those_types(ray_start):
    a = Counter.remote()
    assert _error_and_runs(a, a.fail_with.remote(Boom)) == ("Boom: attempt 4", 4)
    assert _error_and_runs(a, a.fail_with.remote(Other)) == ("Other: attempt 1", 1)


def test_option_precedence_call_then_method_then_actor(ray_start):
    a = Counter.remote()
    # retry_exceptions without a count retries nothing (max_task_retries defaults to 0).
    assert _error_and_runs(a, a.fail_no_count.remote()) == ("Boom: attempt 1", 1)
    assert _error_and_runs(a, a.plain.options(retry_exceptions=True).remote())[1] == 1
    # .options() on the call overrides @method, both ways.
    assert _error_and_runs(a, a.fail.options(max_task_retries=0).remote())[1] == 1
    assert _error_and_runs(a, a.fail.options(retry_exceptions=False).remote())[1] == 1
    assert (
        _error_and_runs(a, a.plain.options(max_task_retries=1, retry_exceptions=True).remote())[1]
        == 2
    )
    # The actor's max_task_retries applies where the method sets none...
    b = Counter.options(max_task_retries=1).remote()
    assert _error_and_runs(b, b.fail_no_count.remote()) == ("Boom: attempt 2", 2)
    # ...but only to the errors retry_exceptions allows.
    assert _error_and_runs(b, b.plain.remote())[1] == 1
    # A method's own count wins over the actor's.
    assert _error_and_runs(b, b.fail.remote())[1] == 3


def test_threaded_method_retried(ray_start):
    a = Counter.options(max_concurrency=4).remote()
    assert _error_and_runs(a, a.fail.remote()) == ("Boom: attempt 3", 3)


@asyncray.remote
class AsyncCounter:
    def __init__(self) -> None:
        self.n = 0

    @asyncray.method(max_task_retries=2, retry_exceptions=True)
    async def fail(self) -> None:
        self.n += 1
        await asyncio.sleep(0)
        raise Boom(f"attempt {self.n}")

    @asyncray.method(max_task_retries=2, retry_exceptions=True)
    async def gen(self):
        self.n += 1
        yield self.n
        raise Boom(f"attempt {self.n}")

    async def count(self) -> int:
        n, self.n = self.n, 0
        return n


def test_async_method_retried(ray_start):
    a = AsyncCounter.remote()
    assert _error_and_runs(a, a.fail.remote()) == ("Boom: attempt 3", 3)


def _items(gen) -> list:
    out = []
    for ref in gen:
        try:
            out.append(asyncray.get(ref))
        except Boom as e:
            out.append(_last_line(e))
    return out


@pytest.mark.parametrize("cls", [Counter, AsyncCounter], ids=["sync", "async"])
def test_streaming_method_retried_keeps_first_items(ray_start, cls):
    a = cls.remote()
    # Each attempt yields its attempt number, then raises: the consumer sees
    # the first attempt's item once, then the last attempt's error.
    assert _items(a.gen.remote()) == [1, "Boom: attempt 3"]
    assert asyncray.get(a.count.remote()) == 3
    # Without retries the error follows the item at once, as before.
    assert _items(a.gen.options(max_task_retries=0).remote()) == [1, "Boom: attempt 1"]


# ==================================================================== sys.exit in a method


@asyncray.remote
class Exiter:
    def pid(self) -> int:
        return os.getpid()

    def exit(self, code: object) -> None:
        sys.exit(code)

    @asyncray.method(max_task_retries=1)
    def exit_once(self, marker: str) -> int:
        """Exits its first process; the retry, on the restarted one, returns its pid."""
        if not os.path.exists(marker):
            open(marker, "w").close()
            sys.exit(3)
        return os.getpid()


@asyncray.remote
class AsyncExiter:
    async def pid(self) -> int:
        return os.getpid()

    async def exit(self, code: object) -> None:
        sys.exit(code)


_KINDS = {
    "plain": lambda **o: Exiter.options(**o).remote(),
    "threaded": lambda **o: Exiter.options(max_concurrency=2, **o).remote(),
    "async": lambda **o: AsyncExiter.options(**o).remote(),
}


@pytest.mark.parametrize("kind", list(_KINDS))
def test_sys_exit_nonzero_is_a_crash_and_restarts(ray_start, kind):
    a = _KINDS[kind](max_restarts=1)
    pid = asyncray.get(a.pid.remote())
    with pytest.raises(ActorUnavailableError, match="exit code 3"):
        asyncray.get(a.exit.remote(3))
    wait_for_process_exit(pid)
    assert asyncray.get(a.pid.remote()) != pid  # restarted, as after os._exit
    # Its restart used up, the next sys.exit() (code None) ends it for good.
    with pytest.raises(ActorDiedError, match="SYSTEM_ERROR"):
        asyncray.get(a.exit.remote(None))
    with pytest.raises(ActorDiedError):
        asyncray.get(a.pid.remote())


def test_sys_exit_call_retried_on_restarted_actor(ray_start, tmp_path):
    a = Exiter.options(max_restarts=1).remote()
    pid = asyncray.get(a.pid.remote())
    new_pid = asyncray.get(a.exit_once.remote(str(tmp_path / "exited")))
    assert new_pid != pid
    assert asyncray.get(a.pid.remote()) == new_pid


@pytest.mark.parametrize("kind", list(_KINDS))
def test_sys_exit_zero_is_an_intended_exit(ray_start, kind):
    a = _KINDS[kind](max_restarts=1)
    pid = asyncray.get(a.pid.remote())
    with pytest.raises(ActorDiedError, match="INTENDED_USER_EXIT"):
        asyncray.get(a.exit.remote(0))
    wait_for_process_exit(pid)
    with pytest.raises(ActorDiedError, match="INTENDED_USER_EXIT"):
        asyncray.get(a.pid.remote())  # not restarted


def test_sys_exit_message_without_restarts_kills_the_actor(ray_start):
    a = Exiter.remote()
    pid = asyncray.get(a.pid.remote())
    with pytest.raises(ActorDiedError, match=r"SYSTEM_ERROR.*exit code 1"):
        asyncray.get(a.exit.remote("bye"))
    wait_for_process_exit(pid)


# ==================================================================== kill(no_restart=False)


@asyncray.remote(num_cpus=1)
class Recorded:
    """Appends its pid to ``path`` when constructed."""

    def __init__(self, path: str) -> None:
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")

    def pid(self) -> int:
        return os.getpid()


def _constructed(path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _all_cpus_free() -> bool:
    return asyncray.available_resources().get("CPU") == asyncray.cluster_resources()["CPU"]


@pytest.mark.parametrize("first_kill", ["running", "starting"])
def test_kill_without_no_restart_uses_up_max_restarts(ray_start, tmp_path, first_kill):
    path = tmp_path / "pids"
    # max_task_retries: a call that reaches the killed process before the
    # runtime has seen it die runs again on the restarted one.
    a = Recorded.options(max_restarts=1, max_task_retries=1).remote(str(path))
    if first_kill == "running":
        pid = asyncray.get(a.pid.remote())
        asyncray.kill(a, no_restart=False)
        wait_for_process_exit(pid)
    else:  # while its process is still being forked: the kill counts all the same
        asyncray.kill(a, no_restart=False)
    restarted = asyncray.get(a.pid.remote())
    asyncray.kill(a, no_restart=False)  # no restart left: it dies and frees its CPU
    with pytest.raises(ActorDiedError, match=re.escape("killed by `ray.kill`")):
        asyncray.get(a.pid.remote())
    wait_for_condition(_all_cpus_free)
    assert restarted in _constructed(path)
    for pid in _constructed(path):
        wait_for_process_exit(pid)


def test_actor_killed_while_starting_leaves_no_process(ray_start, tmp_path):
    path = tmp_path / "pids"
    a = Recorded.remote(str(path))
    asyncray.kill(a, no_restart=False)  # no restarts: dead at once
    with pytest.raises(ActorDiedError):
        asyncray.get(a.pid.remote())
    # Another actor started after it: the killed one's fork has been answered.
    b = Recorded.remote(str(tmp_path / "other"))
    asyncray.get(b.pid.remote())
    for pid in _constructed(path):
        wait_for_process_exit(pid)
    wait_for_condition(lambda: asyncray.available_resources().get("CPU") == 1)
