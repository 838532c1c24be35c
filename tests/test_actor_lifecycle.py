"""How actors end: kill, exit_actor, __ray_terminate__, failed __init__, dropped
handles, crashes, restarts and retries.

Every test that ends an actor process also waits for that process to be gone;
the conftest leak check covers what shutdown leaves behind.
"""

from __future__ import annotations

import atexit
import gc
import os
import re
import signal
import time

import pytest
from _helpers import (
    attempts,
    record_attempt,
    wait_for_condition,
    wait_for_file,
    wait_for_process_exit,
)

import asyncray
from asyncray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    RayActorError,
)

pytestmark = pytest.mark.timeout(30)

GATE_S = 20.0


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


@asyncray.remote
class Worker:
    """A sync actor that can block, crash or leave on request."""

    def __init__(self, start=0, init_log=None, atexit_marker=None):
        self.value = start
        if init_log is not None:
            record_attempt(init_log)
        if atexit_marker is not None:
            atexit.register(_write, atexit_marker, str(os.getpid()))

    def increment(self):
        self.value += 1
        return self.value

    def get(self):
        return self.value

    def pid(self):
        return os.getpid()

    def block(self, started, gate):
        open(started, "w").close()
        if not wait_for_file(gate, timeout=GATE_S):
            raise TimeoutError("gate never opened")
        return "released"

    def leave(self):
        asyncray.actor.exit_actor()
        return "not reached"

    def crash(self, code):
        os._exit(code)

    def crash_once(self, marker):
        """Crash the first time (no marker yet); answer with the pid after that."""
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return os.getpid()


@asyncray.remote
class AsyncLeaver:
    def __init__(self, atexit_marker):
        atexit.register(_write, atexit_marker, str(os.getpid()))

    async def leave(self):
        asyncray.actor.exit_actor()
        return "not reached"

    async def pid(self):
        return os.getpid()


@asyncray.remote(max_concurrency=2)
class ThreadedLeaver:
    def __init__(self, atexit_marker):
        atexit.register(_write, atexit_marker, str(os.getpid()))

    def leave(self):
        asyncray.actor.exit_actor()
        return "not reached"

    def pid(self):
        return os.getpid()


@asyncray.remote
def healthy(x):
    return x + 1


def name_is_free(name):
    try:
        asyncray.get_actor(name)
    except ValueError as e:
        assert "Failed to look up actor" in str(e)
        return True
    return False


def assert_dies(ref, *fragments):
    """``get(ref)`` raises ActorDiedError whose text holds every fragment; returns it."""
    with pytest.raises(ActorDiedError) as info:
        asyncray.get(ref, timeout=20)
    assert isinstance(info.value, RayActorError)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    return info.value


def wait_for_new_pid(handle, old_pid, timeout=15.0):
    """Call ``pid`` until the restarted actor answers; return its pid.

    Calls that were in flight when the process died fail with
    ActorUnavailableError; that is what a caller sees during a restart.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid = asyncray.get(handle.pid.remote(), timeout=timeout)
        except ActorUnavailableError:
            pid = None
        if pid is not None and pid != old_pid:
            return pid
        assert time.monotonic() < deadline, "the actor never came back"


# ====================================================================== kill


def test_kill_fails_in_flight_queued_and_later_calls_with_actor_died_error(ray_start, tmp_path):
    worker = Worker.remote()
    pid = asyncray.get(worker.pid.remote())
    in_flight = worker.block.remote(str(tmp_path / "started"), str(tmp_path / "gate"))
    assert wait_for_file(tmp_path / "started")
    queued = [worker.increment.remote() for _ in range(3)]
    asyncray.kill(worker)
    later = worker.increment.remote()
    for ref in [in_flight, *queued, later]:
        assert_dies(ref, "killed by `ray.kill`")
    wait_for_process_exit(pid)
    # Killing again is harmless.
    asyncray.kill(worker)


def test_kill_does_not_run_atexit_handlers(ray_start, tmp_path):
    marker = tmp_path / "atexit"
    worker = Worker.remote(atexit_marker=str(marker))
    pid = asyncray.get(worker.pid.remote())
    asyncray.kill(worker)
    wait_for_process_exit(pid)
    assert not marker.exists()


@pytest.mark.parametrize("target", [42, "actor", None], ids=["int", "str", "none"])
def test_kill_on_a_non_handle_raises_value_error(ray_start, target):
    with pytest.raises(ValueError, match=r"only supported for actors"):
        asyncray.kill(target)


def test_kill_on_an_object_ref_raises_value_error_naming_cancel(ray_start):
    with pytest.raises(ValueError, match=r"ray\.cancel"):
        asyncray.kill(asyncray.put(1))


def test_kill_with_no_restart_false_restarts_when_allowed(ray_start):
    worker = Worker.options(max_restarts=1).remote(5)
    assert asyncray.get(worker.increment.remote()) == 6
    old_pid = asyncray.get(worker.pid.remote())
    asyncray.kill(worker, no_restart=False)
    wait_for_process_exit(old_pid)
    wait_for_new_pid(worker, old_pid)
    # __init__ ran again with the original arguments: state was reset.
    assert asyncray.get(worker.increment.remote()) == 6


def test_kill_with_the_default_no_restart_ends_even_a_restartable_actor(ray_start):
    worker = Worker.options(max_restarts=3).remote()
    pid = asyncray.get(worker.pid.remote())
    asyncray.kill(worker)
    wait_for_process_exit(pid)
    assert_dies(worker.increment.remote(), "killed by `ray.kill`")


def test_kill_with_no_restart_false_and_no_restarts_left_ends_the_actor(ray_start):
    worker = Worker.remote()
    pid = asyncray.get(worker.pid.remote())
    asyncray.kill(worker, no_restart=False)
    wait_for_process_exit(pid)
    with pytest.raises(ActorDiedError):
        asyncray.get(worker.increment.remote(), timeout=20)


# ====================================================================== exit_actor


@pytest.mark.parametrize("kind", ["plain", "async", "threaded"])
def test_exit_actor_fails_its_caller_and_later_calls_and_runs_atexit(ray_start, tmp_path, kind):
    marker = tmp_path / "atexit"
    actor_class = {"plain": Worker, "async": AsyncLeaver, "threaded": ThreadedLeaver}[kind]
    if kind == "plain":
        actor = actor_class.options(max_restarts=2).remote(atexit_marker=str(marker))
    else:
        actor = actor_class.options(max_restarts=2).remote(str(marker))
    pid = asyncray.get(actor.pid.remote())
    assert_dies(actor.leave.remote())
    assert_dies(actor.pid.remote())
    wait_for_process_exit(pid)
    assert wait_for_file(marker), "atexit handlers did not run"
    assert marker.read_text() == str(pid)
    # No restart, despite max_restarts=2.
    assert_dies(actor.pid.remote())


def test_exit_actor_fails_calls_queued_behind_it_and_does_not_restart(ray_start, tmp_path):
    init_log = tmp_path / "inits"
    worker = Worker.options(max_restarts=2).remote(init_log=str(init_log))
    pid = asyncray.get(worker.pid.remote())
    leaving = worker.leave.remote()
    queued = [worker.increment.remote() for _ in range(3)]
    for ref in [leaving, *queued]:
        assert_dies(ref)
    wait_for_process_exit(pid)
    assert_dies(worker.increment.remote())
    assert attempts(init_log) == [pid]


def test_exit_actor_outside_an_actor_raises_type_error(ray_start):
    with pytest.raises(TypeError, match="non-actor"):
        asyncray.actor.exit_actor()


def test_exit_actor_frees_the_name(shutdown_only):
    asyncray.init(num_cpus=2, namespace="x")
    worker = Worker.options(name="leaver").remote()
    pid = asyncray.get(worker.pid.remote())
    assert_dies(worker.leave.remote())
    wait_for_process_exit(pid)
    wait_for_condition(lambda: name_is_free("leaver"))


# ====================================================================== __ray_terminate__


def test_ray_terminate_lets_earlier_calls_finish_and_fails_later_ones(ray_start, tmp_path):
    worker = Worker.options(max_restarts=1).remote()
    pid = asyncray.get(worker.pid.remote())
    earlier = [worker.increment.remote() for _ in range(5)]
    terminate = worker.__ray_terminate__.remote()
    later = worker.increment.remote()
    assert asyncray.get(earlier, timeout=20) == [1, 2, 3, 4, 5]
    assert_dies(terminate)
    assert_dies(later)
    wait_for_process_exit(pid)
    # Not restarted.
    assert_dies(worker.increment.remote())


# ====================================================================== __init__ raising


@asyncray.remote(max_restarts=2)
class BadInit:
    def __init__(self, init_log):
        record_attempt(init_log)
        raise ZeroDivisionError("init boom")

    def method(self):
        return "unreachable"


def test_init_error_makes_every_call_raise_actor_died_error(ray_start, tmp_path):
    init_log = tmp_path / "inits"
    bad = BadInit.remote(str(init_log))
    for ref in [bad.__ray_ready__.remote(), bad.method.remote(), bad.method.remote()]:
        error = assert_dies(ref, "init boom")
        assert error.actor_init_failed is True
        assert str(error).startswith(
            "The actor died because of an error raised in its creation task"
        ), str(error)
        assert "ZeroDivisionError" in str(error)
        assert not isinstance(error, ZeroDivisionError)
    # max_restarts does not rerun an __init__ that raised.
    assert len(attempts(init_log)) == 1
    # The runtime is unharmed.
    assert asyncray.get(healthy.remote(1)) == 2


# ====================================================================== handles out of scope


def test_dropping_the_last_handle_ends_a_non_named_actor(ray_start):
    worker = Worker.remote()
    pid = asyncray.get(worker.pid.remote())
    del worker
    gc.collect()
    wait_for_process_exit(pid)


def test_calls_submitted_before_the_handle_is_dropped_still_run(ray_start):
    # Ray's idiom: get(Actor.remote().method.remote()).
    assert asyncray.get(Worker.remote(41).increment.remote(), timeout=20) == 42
    worker = Worker.remote()
    refs = [worker.increment.remote() for _ in range(3)]
    pid_ref = worker.pid.remote()
    del worker
    gc.collect()
    assert asyncray.get(refs, timeout=20) == [1, 2, 3]
    wait_for_process_exit(asyncray.get(pid_ref))


def test_a_handle_held_by_a_task_keeps_the_actor_alive(ray_start):
    worker = Worker.remote()
    pid = asyncray.get(worker.pid.remote())
    kept = asyncray.put([worker])
    del worker
    gc.collect()
    [copy] = asyncray.get(kept)
    assert asyncray.get(copy.increment.remote()) == 1
    assert asyncray.get(copy.pid.remote()) == pid


# ====================================================================== crashes and restarts


def test_sigkilled_actor_with_max_restarts_restarts_with_fresh_state(ray_start):
    worker = Worker.options(max_restarts=1).remote(10)
    assert asyncray.get([worker.increment.remote() for _ in range(2)]) == [11, 12]
    old_pid = asyncray.get(worker.pid.remote())
    os.kill(old_pid, signal.SIGKILL)
    new_pid = wait_for_new_pid(worker, old_pid)
    assert new_pid != old_pid
    assert asyncray.get(worker.get.remote()) == 10
    assert asyncray.get(worker.increment.remote()) == 11


def test_crash_during_a_call_with_no_task_retries_raises_actor_unavailable(ray_start):
    worker = Worker.options(max_restarts=1, max_task_retries=0).remote(3)
    old_pid = asyncray.get(worker.pid.remote())
    with pytest.raises(ActorUnavailableError) as info:
        asyncray.get(worker.crash.remote(1), timeout=20)
    assert isinstance(info.value, RayActorError)
    wait_for_process_exit(old_pid)
    new_pid = wait_for_new_pid(worker, old_pid)
    assert new_pid != old_pid
    assert asyncray.get(worker.increment.remote()) == 4


def test_sigkill_during_a_call_with_no_task_retries_raises_actor_unavailable(ray_start, tmp_path):
    worker = Worker.options(max_restarts=1).remote()
    old_pid = asyncray.get(worker.pid.remote())
    in_flight = worker.block.remote(str(tmp_path / "started"), str(tmp_path / "gate"))
    assert wait_for_file(tmp_path / "started")
    os.kill(old_pid, signal.SIGKILL)
    with pytest.raises(ActorUnavailableError):
        asyncray.get(in_flight, timeout=20)
    assert wait_for_new_pid(worker, old_pid) != old_pid


@pytest.mark.parametrize(
    ("actor_retries", "call_retries"),
    [(-1, None), (1, None), (0, 1), (0, -1)],
    ids=["actor-infinite", "actor-one", "call-one", "call-infinite"],
)
def test_a_one_off_crash_is_retried_on_the_restarted_actor(
    ray_start, tmp_path, actor_retries, call_retries
):
    marker = tmp_path / "crashed"
    worker = Worker.options(max_restarts=1, max_task_retries=actor_retries).remote()
    old_pid = asyncray.get(worker.pid.remote())
    method = worker.crash_once
    if call_retries is not None:
        method = method.options(max_task_retries=call_retries)
    new_pid = asyncray.get(method.remote(str(marker)), timeout=20)
    assert marker.exists(), "the first attempt did not run"
    assert new_pid != old_pid
    wait_for_process_exit(old_pid)


def test_method_level_retries_from_the_decorator_apply(ray_start, tmp_path):
    @asyncray.remote(max_restarts=1)
    class Retrying:
        @asyncray.method(max_task_retries=1)
        def crash_once(self, marker):
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            return os.getpid()

        def pid(self):
            return os.getpid()

    actor = Retrying.remote()
    old_pid = asyncray.get(actor.pid.remote())
    assert asyncray.get(actor.crash_once.remote(str(tmp_path / "crashed")), timeout=20) != old_pid


def test_retried_call_that_keeps_crashing_ends_with_actor_died_error(ray_start):
    worker = Worker.options(max_restarts=1, max_task_retries=-1).remote()
    first_pid = asyncray.get(worker.pid.remote())
    assert_dies(worker.crash.remote(1))
    wait_for_process_exit(first_pid)
    # The restart budget is spent: the actor is dead for good.
    assert_dies(worker.pid.remote())


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_crash_without_restarts_raises_actor_died_error_naming_pid_and_cause(
    ray_start, tmp_path, how
):
    worker = Worker.remote()
    bystander = Worker.remote(100)
    pid = asyncray.get(worker.pid.remote())
    if how == "exit":
        error = assert_dies(worker.crash.remote(37), str(pid))
        assert re.search(r"\b37\b", str(error)), str(error)
    else:
        in_flight = worker.block.remote(str(tmp_path / "started"), str(tmp_path / "gate"))
        assert wait_for_file(tmp_path / "started")
        os.kill(pid, signal.SIGKILL)
        error = assert_dies(in_flight, str(pid), "SIGKILL")
    wait_for_process_exit(pid)
    # Later calls fail too.
    assert_dies(worker.increment.remote(), str(pid))
    # Other actors and tasks are unaffected.
    assert asyncray.get(bystander.increment.remote()) == 101
    assert asyncray.get([healthy.remote(i) for i in range(4)], timeout=20) == [1, 2, 3, 4]


def test_crashed_named_actor_without_restarts_frees_its_name(shutdown_only):
    asyncray.init(num_cpus=2, namespace="x")
    worker = Worker.options(name="fragile").remote()
    pid = asyncray.get(worker.pid.remote())
    assert_dies(worker.crash.remote(1))
    wait_for_process_exit(pid)
    wait_for_condition(lambda: name_is_free("fragile"))
    again = Worker.options(name="fragile").remote(7)
    assert asyncray.get(asyncray.get_actor("fragile").get.remote()) == 7
    assert again != worker


def test_crash_of_an_actor_holding_a_cpu_gives_the_cpu_back(ray_start):
    worker = Worker.options(num_cpus=2).remote()
    assert_dies(worker.crash.remote(1))

    @asyncray.remote(num_cpus=2)
    def needs_both_cpus():
        return "ran"

    assert asyncray.get(needs_both_cpus.remote(), timeout=20) == "ran"


@asyncray.remote
class SaysItExits:
    def say_exit_and_stay(self):
        from asyncray._clients import base
        from asyncray._task_context import current_task
        from asyncray._wire import protocol as P

        base.current().post(P.ActorExiting(current_task().task_id))
        return os.getpid()

    def ping(self):
        return 1


@pytest.mark.timeout(30)
def test_an_actor_that_says_it_exits_but_lives_on_is_killed(ray_start, monkeypatch):
    from asyncray._core import mailbox

    monkeypatch.setattr(mailbox, "EXIT_GRACE_S", 0.3)
    total = asyncray.cluster_resources()["CPU"]
    actor = SaysItExits.options(num_cpus=1).remote()
    assert asyncray.get(actor.ping.remote(), timeout=20) == 1
    with pytest.raises(asyncray.exceptions.ActorDiedError, match="exit_actor"):
        asyncray.get(actor.say_exit_and_stay.remote(), timeout=20)
    deadline = time.monotonic() + 10
    while asyncray.available_resources().get("CPU") != total:
        assert time.monotonic() < deadline, "the lingering actor kept its CPU"
        time.sleep(0.05)


@asyncray.remote
class Dies:
    def die(self):
        os._exit(1)


@pytest.mark.timeout(30)
def test_the_death_of_a_named_actor_names_it_as_ray_does(ray_start):
    named = Dies.options(name="x").remote()
    with pytest.raises(ActorDiedError) as info:
        asyncray.get(named.die.remote(), timeout=20)
    assert re.search(r"\tpid: \d+\n\tname: x\n\tnamespace: ", str(info.value))
    anonymous = Dies.remote()
    with pytest.raises(ActorDiedError) as info:
        asyncray.get(anonymous.die.remote(), timeout=20)
    assert "\tname: " not in str(info.value)
