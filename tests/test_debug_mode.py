"""Debug mode (``init(debug=True)``, ``ASYNCRAY_DEBUG=1``): tasks and actor calls run in
the driver's thread, in submission order, with the usual semantics of refs, errors,
``get``, ``wait``, generators and actors; pdb and trace functions see task code."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading

import psutil
import pytest
from _head import driver_env

import asyncray as ray
from asyncray import exceptions as exc

pytestmark = pytest.mark.timeout(60)

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@pytest.fixture
def debug_ray():
    ray.init(debug=True, num_cpus=2)
    try:
        yield ray
    finally:
        ray.shutdown()


# ==================================================================== tasks


def test_tasks_run_at_submission_in_order_in_this_thread(debug_ray):
    seen = []

    @ray.remote
    def step(i):
        seen.append((i, threading.get_ident()))
        return i * 10

    refs = [step.remote(i) for i in range(5)]
    # Each task ran when it was submitted, before any get.
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert {t for _, t in seen} == {threading.get_ident()}
    assert ray.get(refs) == [0, 10, 20, 30, 40]


def test_refs_as_arguments_nested_tasks_and_put(debug_ray):
    @ray.remote
    def add(a, b):
        return a + b

    @ray.remote
    def total(refs):  # refs nested in a list arrive as refs
        return sum(ray.get(refs))

    @ray.remote
    def outer(n):
        return ray.get(add.remote(n, ray.put(100)))

    a = ray.put(1)
    b = add.remote(a, 2)
    assert ray.get(add.remote(b, b)) == 6
    assert ray.get(total.remote([a, b])) == 4
    assert ray.get(outer.remote(5)) == 105
    assert ray.get(ray.put({"k": [1, 2]})) == {"k": [1, 2]}


def test_arguments_and_results_are_copies(debug_ray):
    shared = [1, 2]

    @ray.remote
    def mutate(xs):
        xs.append(3)
        return xs

    out = ray.get(mutate.remote(shared))
    assert out == [1, 2, 3]
    assert shared == [1, 2]  # the task changed its own copy
    ref = ray.put(shared)
    got = ray.get(ref)
    got.append(9)
    assert ray.get(ref) == [1, 2]


def test_num_returns(debug_ray):
    @ray.remote(num_returns=2)
    def pair():
        return 1, 2

    a, b = pair.remote()
    assert ray.get([a, b]) == [1, 2]


def test_runtime_context_inside_a_task(debug_ray):
    @ray.remote
    def who():
        return ray.get_runtime_context().get_task_id()

    ref = who.remote()
    assert ray.get(ref) == ref.task_id().hex()


# ==================================================================== errors


def test_task_error_is_ray_task_error_and_the_users_class(debug_ray):
    @ray.remote
    def boom():
        raise ValueError("bad value")

    @ray.remote
    def after(x):
        return x

    ref = boom.remote()
    with pytest.raises(ValueError, match="bad value") as info:
        ray.get(ref)
    assert isinstance(info.value, exc.RayTaskError)
    # A task whose argument failed fails with that error, as in a normal session.
    with pytest.raises(ValueError, match="bad value"):
        ray.get(after.remote(ref))


def test_get_of_an_unknown_object_raises_at_once(debug_ray):
    with pytest.raises(exc.ObjectLostError):
        ray.get(ray.ObjectRef.from_random(), timeout=1)


# ==================================================================== get / wait


def test_get_and_wait_with_timeouts(debug_ray):
    @ray.remote
    def f(i):
        return i

    refs = [f.remote(i) for i in range(4)]
    assert ray.get(refs, timeout=0) == [0, 1, 2, 3]
    ready, not_ready = ray.wait(refs, num_returns=2, timeout=0)
    assert ready == refs[:2] and not_ready == refs[2:]
    ready, not_ready = ray.wait(refs, num_returns=4, timeout=None)
    assert len(ready) == 4 and not not_ready


def test_await_refs_in_async_code(debug_ray):
    @ray.remote
    def f(x):
        return x + 1

    async def main():
        one = await f.remote(1)
        many = await asyncio.gather(f.remote(10), f.remote(20))
        ready, _ = await ray.wait_async([f.remote(0)], timeout=1)
        return one, many, len(ready)

    assert asyncio.run(main()) == (2, [11, 21], 1)


# ==================================================================== generators


def test_streaming_generator_sync_and_async(debug_ray):
    @ray.remote
    def count(n):
        yield from range(n)

    assert [ray.get(r) for r in count.remote(3)] == [0, 1, 2]

    async def consume():
        return [await r async for r in count.remote(4)]

    assert asyncio.run(consume()) == [0, 1, 2, 3]


def test_generator_runs_lazily_so_an_infinite_one_works(debug_ray):
    produced = []

    @ray.remote
    def forever():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    gen = forever.remote()
    assert produced == []  # nothing runs until the consumer asks
    assert [ray.get(next(gen)) for _ in range(3)] == [0, 1, 2]
    assert produced == [0, 1, 2]
    ready, _ = ray.wait([gen], timeout=0)
    assert ready == [gen]
    ray.cancel(gen)


def test_generator_error_is_the_last_item(debug_ray):
    @ray.remote
    def bad():
        yield 1
        raise KeyError("k")

    gen = bad.remote()
    assert ray.get(next(gen)) == 1
    with pytest.raises(KeyError):
        ray.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)
    assert ray.get(gen.completed()) is None


def test_async_generator_and_async_task(debug_ray):
    @ray.remote
    async def agen(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i * i

    assert [ray.get(r) for r in agen.remote(3)] == [0, 1, 4]


# ==================================================================== actors


def test_actor_keeps_state_and_sees_its_context(debug_ray):
    @ray.remote
    class Counter:
        def __init__(self, start):
            self.n = start

        def inc(self):
            self.n += 1
            return self.n

        def ids(self):
            ctx = ray.get_runtime_context()
            return ctx.get_actor_id(), ctx.get_task_id()

    c = Counter.remote(10)
    assert ray.get([c.inc.remote() for _ in range(3)]) == [11, 12, 13]
    actor_id, task_id = ray.get(c.ids.remote())
    assert actor_id == c._actor_id.hex() and task_id


def test_async_actor_keeps_state(debug_ray):
    @ray.remote
    class AsyncCounter:
        def __init__(self):
            self.n = 0
            self.lock = asyncio.Lock()

        async def inc(self):
            async with self.lock:
                await asyncio.sleep(0)
                self.n += 1
                return self.n

        async def stream(self, n):
            for i in range(n):
                yield i

    a = AsyncCounter.remote()
    assert ray.get([a.inc.remote() for _ in range(3)]) == [1, 2, 3]
    assert [ray.get(r) for r in a.stream.remote(2)] == [0, 1]

    async def from_async_code():
        return await a.inc.remote()

    assert asyncio.run(from_async_code()) == 4


def test_actor_init_failure_is_actor_died_error(debug_ray, capsys):
    @ray.remote
    class Broken:
        def __init__(self):
            raise RuntimeError("no")

        def ping(self):
            return 1

    b = Broken.remote()
    with pytest.raises(exc.ActorDiedError, match="creation task") as info:
        ray.get(b.ping.remote())
    assert info.value.actor_init_failed
    assert "Exception raised in creation task" in capsys.readouterr().err


def test_actor_method_error_and_kill(debug_ray):
    @ray.remote
    class A:
        def fail(self):
            raise ZeroDivisionError("x")

        def ok(self):
            return "ok"

    a = A.remote()
    with pytest.raises(ZeroDivisionError):
        ray.get(a.fail.remote())
    assert ray.get(a.ok.remote()) == "ok"  # the actor lives on
    ray.kill(a)
    with pytest.raises(exc.ActorDiedError, match=r"ray\.kill"):
        ray.get(a.ok.remote())


def test_exit_actor(debug_ray):
    @ray.remote
    class A:
        def leave(self):
            ray.actor.exit_actor()

        def ok(self):
            return 1

    a = A.remote()
    with pytest.raises(exc.ActorDiedError):
        ray.get(a.leave.remote())
    with pytest.raises(exc.ActorDiedError):
        ray.get(a.ok.remote())


def test_named_actors(debug_ray):
    @ray.remote
    class Box:
        def __init__(self):
            self.v = None

        def set(self, v):
            self.v = v

        def get(self):
            return self.v

    box = Box.options(name="box").remote()
    ray.get(box.set.remote(5))
    assert ray.get(ray.get_actor("box").get.remote()) == 5
    assert "box" in ray.util.list_named_actors()
    same = Box.options(name="box", get_if_exists=True).remote()
    assert ray.get(same.get.remote()) == 5
    with pytest.raises(ValueError):
        Box.options(name="box").remote()
    with pytest.raises(ValueError):
        ray.get_actor("nobody")
    ray.kill(box)
    with pytest.raises(ValueError):
        ray.get_actor("box")


def test_actor_handle_passed_to_a_task(debug_ray):
    @ray.remote
    class Acc:
        def __init__(self):
            self.items = []

        def add(self, x):
            self.items.append(x)
            return len(self.items)

    @ray.remote
    def use(acc, x):
        return ray.get(acc.add.remote(x))

    acc = Acc.remote()
    assert ray.get([use.remote(acc, i) for i in range(3)]) == [1, 2, 3]


# ==================================================================== the rest of the API


def test_placement_group_is_ready_at_once(debug_ray):
    from asyncray.util.placement_group import placement_group

    pg = placement_group([{"CPU": 1}])
    assert ray.get(pg.ready(), timeout=5) is not None
    assert pg.wait(timeout_seconds=1)


def test_cancel_of_a_finished_task_does_nothing(debug_ray):
    @ray.remote
    def f():
        return 1

    ref = f.remote()
    ray.cancel(ref)
    assert ray.get(ref) == 1


def test_queue_between_tasks_and_the_driver(debug_ray):
    from asyncray.util.queue import Empty, Full, Queue

    q = Queue(maxsize=3)

    @ray.remote
    def produce(q, n):
        for i in range(n):
            q.put(i)
        return n

    @ray.remote
    class Consumer:
        def take(self, q, n):
            return [q.get(timeout=1) for _ in range(n)]

    assert ray.get(produce.remote(q, 3)) == 3
    assert q.qsize() == 3
    with pytest.raises(Full):
        q.put(99, timeout=0.05)
    assert ray.get(Consumer.remote().take.remote(q, 2)) == [0, 1]
    assert q.get() == 2
    with pytest.raises(Empty):
        q.get(timeout=0.05)
    q.put_nowait_batch([5, 6])
    assert q.get_nowait_batch(2) == [5, 6]


def test_a_queue_wait_nothing_can_end_raises_instead_of_hanging():
    # In a fresh interpreter: there, no other thread is alive that could end the wait
    # (in this test process, other tests' threads may be).
    code = """
import threading
import asyncray as ray
from asyncray import exceptions as exc
from asyncray.util.queue import Queue

ray.init(debug=True)
q = Queue()

@ray.remote
def consume(q):
    return q.get()  # no producer can run while this task runs

assert threading.active_count() == 1
try:
    ray.get(consume.remote(q))
except exc.RaySystemError as e:
    print("raised:", "would wait for ever" in str(e))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], env=driver_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["raised: True"]


def test_a_queue_wait_ended_by_another_thread(debug_ray):
    from asyncray.util.queue import Queue

    q = Queue()
    timer = threading.Timer(0.1, lambda: q.put("late"))
    timer.start()
    try:
        assert q.get(timeout=10) == "late"
    finally:
        timer.join()


def test_resources(debug_ray):
    assert ray.cluster_resources()["CPU"] == 2
    assert ray.available_resources()["CPU"] == 2


# ==================================================================== the session


def test_no_process_and_no_thread_is_started():
    me = psutil.Process()
    children = len(me.children(recursive=True))
    threads = threading.active_count()
    ray.init(debug=True)
    try:

        @ray.remote
        def f():
            return os.getpid()

        @ray.remote
        class A:
            def pid(self):
                return os.getpid()

        assert ray.get(f.remote()) == os.getpid()
        assert ray.get(A.remote().pid.remote()) == os.getpid()
        assert len(me.children(recursive=True)) == children
        assert threading.active_count() == threads
    finally:
        ray.shutdown()


def test_environment_variable_turns_it_on(monkeypatch):
    monkeypatch.setenv("ASYNCRAY_DEBUG", "1")
    ray.init()
    try:

        @ray.remote
        def pid():
            return os.getpid()

        assert ray.get(pid.remote()) == os.getpid()
    finally:
        ray.shutdown()


def test_local_mode_still_raises_and_debug_refuses_an_address():
    with pytest.raises(RuntimeError, match="local_mode"):
        ray.init(local_mode=True)
    with pytest.raises(ValueError, match="cannot join a head"):
        ray.init(debug=True, address="127.0.0.1:6379")
    assert not ray.is_initialized()


def test_the_variable_overrides_an_address_with_a_warning(monkeypatch):
    monkeypatch.setenv("ASYNCRAY_DEBUG", "1")
    with pytest.warns(RuntimeWarning, match="ASYNCRAY_DEBUG"):
        ray.init(address="auto")
    try:
        assert ray.get(ray.put(1)) == 1
        assert ray._api.is_embedded()
    finally:
        ray.shutdown()


def test_shutdown_and_init_again():
    ray.init(debug=True)
    ref = ray.put(1)
    ray.shutdown()
    ray.init(debug=True)
    try:
        assert ray.get(ray.put(2)) == 2
    finally:
        ray.shutdown()
    del ref


# ==================================================================== debuggers and tracers


def test_a_trace_function_sees_the_tasks_frames(debug_ray):
    @ray.remote
    def traced_task(x):
        y = x + 1
        return y

    @ray.remote
    class TracedActor:
        def traced_method(self):
            return 2

    seen = set()

    def tracer(frame, event, arg):
        seen.add(frame.f_code)
        return tracer

    actor = TracedActor.remote()
    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        ref = traced_task.remote(1)
        mref = actor.traced_method.remote()
    finally:
        sys.settrace(old)
    assert ray.get([ref, mref]) == [2, 2]
    # The function's own code object (not a copy): coverage attributes its lines.
    assert traced_task._function.__code__ in seen
    assert "traced_method" in {code.co_name for code in seen}


def test_breakpoint_stops_in_the_drivers_terminal(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncray as ray

            ray.init(debug=True)

            @ray.remote
            def task(x):
                secret = x * 7
                breakpoint()
                return secret

            print("result", ray.get(task.remote(6)))
            ray.shutdown()
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONBREAKPOINT": "pdb.set_trace"}
    env.pop("ASYNCRAY_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, str(script)],
        input="p secret\nsecret = 0\nc\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    assert "(Pdb)" in proc.stdout
    assert "42" in proc.stdout  # pdb printed the task's local
    assert "result 0" in proc.stdout  # the debugger changed the task's value


def test_placement_group_table_and_removal(debug_ray):
    from asyncray.util.placement_group import (
        get_placement_group,
        placement_group,
        placement_group_table,
        remove_placement_group,
    )

    pg = placement_group([{"CPU": 1}], name="g")
    assert placement_group_table(pg)["state"] == "CREATED"
    assert get_placement_group("g").id == pg.id
    remove_placement_group(pg)
    assert placement_group_table(pg)["state"] == "REMOVED"
    with pytest.raises(exc.RayError):
        ray.get(pg.ready())


def test_async_actor_awaiting_another_async_actor(debug_ray):
    @ray.remote
    class Inner:
        async def f(self, x):
            await asyncio.sleep(0)
            return x + 1

    @ray.remote
    class Outer:
        def __init__(self, inner):
            self.inner = inner

        async def g(self, x):
            return await self.inner.f.remote(x) * 10

        async def leave(self):
            ray.actor.exit_actor()

    outer = Outer.remote(Inner.remote())
    assert ray.get(outer.g.remote(1)) == 20

    async def main():
        return await outer.g.remote(2)

    assert asyncio.run(main()) == 30
    with pytest.raises(exc.ActorDiedError):
        ray.get(outer.leave.remote())


def test_tasks_from_another_thread_run_one_at_a_time(debug_ray):
    running = []
    overlaps = []

    @ray.remote
    def work(i):
        if running:
            overlaps.append(i)
        running.append(i)
        total = sum(range(20000))
        running.remove(i)
        return total

    def submit():
        ray.get([work.remote(i) for i in range(20)])

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not overlaps


def test_sys_exit_in_a_task_fails_it_as_a_crash(debug_ray):
    @ray.remote(max_retries=0)
    def leave():
        sys.exit(3)

    with pytest.raises(exc.WorkerCrashedError, match=r"sys\.exit"):
        ray.get(leave.remote())


def test_failed_dependency_of_an_actor_constructor(debug_ray):
    @ray.remote
    def boom():
        raise ValueError("dep")

    @ray.remote
    class A:
        def __init__(self, x):
            self.x = x

        def get(self):
            return self.x

    a = A.remote(boom.remote())
    with pytest.raises(exc.ActorDiedError):
        ray.get(a.get.remote())


def test_a_streaming_method_returning_a_list_streams_its_items(debug_ray):
    @ray.remote
    class A:
        @ray.method(num_returns="streaming")
        def items(self):
            return [1, 2]

        @ray.method(num_returns="streaming")
        def nothing(self):
            return 5

    a = A.remote()
    assert [ray.get(r) for r in a.items.remote()] == [1, 2]
    with pytest.raises(TypeError):
        ray.get(next(a.nothing.remote()))
