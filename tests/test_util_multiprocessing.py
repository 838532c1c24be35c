"""``ray.util.multiprocessing.Pool``: ``multiprocessing.Pool``'s API on actors."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

import asyncray as ray
from asyncray.exceptions import ActorDiedError
from asyncray.util.multiprocessing import Pool, TimeoutError

pytestmark = pytest.mark.timeout(60)


def square(x):
    return x * x


def fail_on_three(x):
    if x == 3:
        raise ValueError(f"bad {x}")
    return x


def slow(x, delay=0.3):
    time.sleep(delay)
    return x


_STATE: list = []


def init(*args):
    _STATE.append(args)


def state_and_pid(_):
    return list(_STATE), os.getpid()


def pid(_):
    return os.getpid()


def test_map_starmap_and_apply(ray_start):
    with Pool(2) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
        assert pool.map(square, range(7), chunksize=3) == [x * x for x in range(7)]
        assert pool.map(square, []) == []
        assert pool.starmap(pow, [(2, 3), (3, 2), (5, 0)]) == [8, 9, 1]
        assert pool.apply(square, (4,)) == 16
        assert pool.apply(slow, (5,), {"delay": 0}) == 5
        assert pool.apply(slow, args=(6,), kwargs={"delay": 0}) == 6  # Ray's names
        assert pool.apply(square, args=None, kwds={"x": 3}) == 9
        with pytest.raises(TypeError, match="kwds or kwargs"):
            pool.apply(slow, (1,), {"delay": 0}, kwargs={"delay": 0})


def test_imap_keeps_order_and_imap_unordered_yields_as_ready(ray_start):
    with Pool(2) as pool:
        assert list(pool.imap(square, range(9), chunksize=2)) == [x * x for x in range(9)]
        assert sorted(pool.imap_unordered(square, range(9))) == sorted(x * x for x in range(9))
        # chunks go round robin: 0 and 2 to one actor, 1 and 3 to the other;
        # the slow first item holds back 2 but not 1 and 3
        delays = [1.0, 0.0, 0.0, 0.0]
        unordered = list(pool.imap_unordered(_sleep_then, list(enumerate(delays))))
        assert unordered == [1, 3, 0, 2]
        assert list(pool.imap(_sleep_then, list(enumerate(delays)))) == [0, 1, 2, 3]


def _sleep_then(item):
    index, delay = item
    time.sleep(delay)
    return index


def test_imap_over_an_endless_iterable(ray_start):
    def naturals():
        n = 0
        while True:
            yield n
            n += 1

    with Pool(2) as pool:
        it = pool.imap(square, naturals())
        assert [next(it) for _ in range(20)] == [x * x for x in range(20)]


def test_imap_next_timeout_raises_multiprocessing_timeout_error(ray_start):
    with Pool(1) as pool:
        it = pool.imap(slow, [1])
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.01)
        assert it.next(timeout=10) == 1
        with pytest.raises(StopIteration):
            next(it)


def test_a_failing_call_raises_its_own_exception(ray_start):
    with Pool(2) as pool:
        with pytest.raises(ValueError, match="bad 3") as info:
            pool.map(fail_on_three, range(6))
        assert type(info.value) is ValueError
        it = pool.imap(fail_on_three, range(5))
        assert [next(it) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(ValueError, match="bad 3"):
            next(it)
        assert next(it) == 4  # one failure fails only its own result
        with pytest.raises(ValueError, match="bad 3"):
            pool.apply(fail_on_three, (3,))


def test_async_result_get_wait_ready_successful(ray_start):
    with Pool(2) as pool:
        result = pool.apply_async(slow, (7,))
        with pytest.raises(ValueError, match="not ready"):
            result.successful()
        assert result.ready() is False
        with pytest.raises(TimeoutError):
            result.get(timeout=0.01)
        assert TimeoutError is multiprocessing.TimeoutError
        result.wait(0.01)  # never raises
        assert result.get(timeout=10) == 7
        assert result.ready() is True and result.successful() is True

        failed = pool.map_async(fail_on_three, range(5))
        failed.wait(10)
        assert failed.ready() is True and failed.successful() is False
        with pytest.raises(ValueError, match="bad 3"):
            failed.get()
        assert pool.starmap_async(pow, [(2, 2)]).get(10) == [4]


def test_callbacks_run_on_a_pool_thread(ray_start):
    got = []
    done = threading.Event()

    def record(value):
        got.append((value, threading.current_thread() is threading.main_thread()))
        if len(got) == 2:
            done.set()

    with Pool(2) as pool:
        pool.map_async(square, [1, 2, 3], callback=record)
        pool.apply_async(fail_on_three, (3,), error_callback=record)
        assert done.wait(10)
    values = sorted((repr(v) for v, _ in got))
    assert values == ["ValueError('bad 3')", "[1, 4, 9]"]
    assert not any(on_main for _, on_main in got)


def test_initializer_runs_once_per_process(ray_start):
    with Pool(2, initializer=init, initargs=("x", 1)) as pool:
        results = pool.map(state_and_pid, range(8), chunksize=1)
    assert {tuple(map(tuple, state)) for state, _ in results} == {(("x", 1),)}
    assert len({p for _, p in results}) == 2


def test_an_initializer_in_main_sets_globals_the_functions_see(ray_start):
    # Functions of __main__ arrive by value with globals of their own; in Ray's
    # pool a global the initializer sets stays invisible. Here it is seen.
    namespace = {"__name__": "__main__"}
    exec(
        "def init(v):\n    global G\n    G = v\n\ndef read(_):\n    return G\n",
        namespace,
    )
    with Pool(2, initializer=namespace["init"], initargs=(42,)) as pool:
        assert pool.map(namespace["read"], range(4), chunksize=1) == [42] * 4


def test_maxtasksperchild_replaces_the_process(ray_start):
    with Pool(1, maxtasksperchild=2, initializer=init, initargs=("y",)) as pool:
        pids = pool.map(pid, range(6), chunksize=1)
        assert len(set(pids)) == 3
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
        state, _ = pool.apply(state_and_pid, (0,))
        assert state == [("y",)]  # the fresh actor ran the initializer


def test_close_join_and_terminate(ray_start):
    pool = Pool(2)
    result = pool.map_async(slow, [1, 2])
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(square, [1])
    pool.join()  # waits for the submitted work
    assert result.ready() and result.get() == [1, 2]

    pool = Pool(2)
    with pytest.raises(ValueError, match="Pool is still running"):
        pool.join()
    pending = pool.apply_async(slow, (1,), {"delay": 30})
    start = time.monotonic()
    pool.terminate()
    pool.join()
    assert time.monotonic() - start < 10
    pending.wait(10)
    assert pending.ready() is True and pending.successful() is False
    with pytest.raises(ActorDiedError):
        pending.get()


def test_context_manager_terminates_and_refuses_new_work(ray_start):
    with Pool(1) as pool:
        assert pool.apply(square, (3,)) == 9
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply(square, (3,))
    with pytest.raises(ValueError, match="Pool not running"), pool:
        pass


def test_options_are_checked(ray_start):
    with pytest.raises(ValueError, match="only 2 CPUs"):
        Pool(3)
    with pytest.raises(ValueError, match="must be >0"):
        Pool(0)
    with pytest.raises(ValueError, match="context"):
        Pool(1, context=multiprocessing.get_context("spawn"))
    with pytest.raises(ValueError, match="maxtasksperchild"):
        Pool(1, maxtasksperchild=0)
    with pytest.raises(TypeError, match="initializer"):
        Pool(1, initializer=5)
    with Pool(1) as pool, pytest.raises(ValueError, match="Chunksize"):
        pool.map(square, [1], chunksize=0)


def test_processes_defaults_to_the_cpus_and_ray_remote_args_apply(ray_start):
    with Pool() as pool:
        assert len(set(pool.map(pid, range(8), chunksize=1))) == 2
    with Pool(2, ray_remote_args={"num_cpus": 0.5}) as pool:
        assert ray_start.available_resources().get("CPU") == 1.0
    with pytest.raises(ValueError, match="Invalid option keyword no_such_option"):
        Pool(1, ray_remote_args={"no_such_option": 1})


def test_a_pool_starts_a_session_if_none_runs(shutdown_only):
    assert not ray.is_initialized()
    with Pool(1) as pool:
        assert pool.map(square, [2]) == [4]
    assert ray.cluster_resources()["CPU"] == 1


def test_ray_address_local_starts_a_session_with_processes_cpus(shutdown_only):
    with Pool(1, ray_address="local") as pool:
        assert pool.apply(square, (5,)) == 25
    assert ray.cluster_resources()["CPU"] == 1


def test_a_pool_on_a_connected_driver(connected):
    with Pool(2, initializer=init, initargs=("head",)) as pool:
        results = pool.map(state_and_pid, range(4), chunksize=1)
        assert [state for state, _ in results] == [[("head",)]] * 4
        assert sorted(pool.imap_unordered(square, range(4))) == [0, 1, 4, 9]


def _failing_initializer():
    raise RuntimeError("init failed")


def test_a_failing_initializer_fails_the_pool_with_its_error(ray_start):
    with pytest.raises(ActorDiedError, match="init failed"):
        Pool(1, initializer=_failing_initializer)


def test_a_pool_cannot_be_pickled(ray_start):
    import pickle

    with Pool(1) as pool, pytest.raises(NotImplementedError, match="cannot be passed"):
        pickle.dumps(pool)


def test_join_returns_after_the_callbacks_ran(ray_start):
    got = []
    pool = Pool(2)
    for i in range(6):
        pool.apply_async(slow, (i,), {"delay": 0.05}, callback=got.append)
    pool.map_async(fail_on_three, range(5), error_callback=got.append)
    pool.close()
    pool.join()
    assert sorted(x for x in got if isinstance(x, int)) == list(range(6))
    assert [repr(x) for x in got if not isinstance(x, int)] == ["ValueError('bad 3')"]
