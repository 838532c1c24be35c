"""A seeded fuzz of the public API with arguments of the wrong type.

Every public function and method is called many times with one or two of
its arguments replaced by a random value of the wrong type or range. Each
call must return, or raise ``TypeError``/``ValueError`` (or an error Ray
documents for it), within ``CALL_DEADLINE_S`` — never hang, never raise an
internal error, never log one in the runtime (the suite's
``no_internal_errors`` check). Afterwards the runtime still runs a task and
every resource is free again.

The seed is fixed so a failure reproduces; ``ASYNCRAY_FUZZ_SEED`` picks
another one to explore.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from _helpers import wait_for_condition
from conftest import NUM_CPUS

import asyncray
from asyncray import exceptions as exc
from asyncray._options import TASK_OPTIONS
from asyncray.actor import ACTOR_OPTIONS, METHOD_CALL_OPTIONS
from asyncray.util import ActorPool
from asyncray.util.placement_group import placement_group, remove_placement_group
from asyncray.util.queue import Empty, Full, Queue

SEED = int(os.environ.get("ASYNCRAY_FUZZ_SEED", "20261204"))
# Calls per fuzz test: 3-6 s on the 2-core VM.
TRIALS = 1500
# A call that neither returns nor raises within this is a hang.
CALL_DEADLINE_S = 10.0

# What a call may raise for a bad argument: Python's and Ray's argument
# errors, and the errors Ray documents for these calls (a lost or timed-out
# object, a dead actor, an empty queue, an exhausted pool).
ALLOWED = (
    TypeError,
    ValueError,
    # A deprecated option that is valid (object_store_memory=0 on an actor):
    # Ray's DeprecationWarning, an error under the suite's filterwarnings.
    DeprecationWarning,
    exc.GetTimeoutError,
    exc.ObjectLostError,
    exc.RayActorError,
    exc.TaskCancelledError,
    exc.RayTaskError,
    Empty,
    Full,
    StopIteration,
    TimeoutError,  # ActorPool.get_next
)


class _Opaque:
    """An object no API takes."""

    def __repr__(self) -> str:
        return "<opaque>"


def wrong_values() -> list[Any]:
    return [
        None,
        True,
        False,
        -1,
        0,
        -(10**30),
        10**30,
        float("nan"),
        float("inf"),
        -float("inf"),
        0.25,  # a fraction where a count is wanted (short as a timeout)
        -0.5,
        "",
        "x",
        "streaming",
        b"x",
        [],
        [1],
        {},
        {"a": 1},
        {"CPU": 1},
        (1,),
        {1},
        _Opaque(),
        lambda: 1,
        asyncray.ObjectRef.nil(),
    ]


@asyncray.remote
def echo(x):
    return x


@asyncray.remote
def count_to(n):
    yield from range(n)


@asyncray.remote(num_cpus=0)
def forever():
    threading.Event().wait()


@asyncray.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def incr(self, by=1):
        self.n += by
        return self.n


def _call_with_deadline(label: str, call: Callable[[], Any]) -> None:
    """Run ``call`` on a thread; fail on a hang or on an error that is not allowed."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            result = call()
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        except BaseException as e:
            outcome.append(e)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True, name="fuzz-call")
    thread.start()
    thread.join(CALL_DEADLINE_S)
    assert not thread.is_alive(), f"{label} hung (no answer in {CALL_DEADLINE_S} s)"
    error = outcome[0]
    if error is None:
        return
    assert not isinstance(error, exc.RaySystemError), f"{label} hit an internal error: {error}"
    assert isinstance(error, ALLOWED), f"{label} raised {type(error).__name__}: {error}"


def _resources_all_free() -> bool:
    total = asyncray.cluster_resources()
    free = asyncray.available_resources()
    keys = ("CPU", "GPU", "memory")
    if any("_group_" in k for k in free):
        return False  # a placement group is still alive
    return all(free.get(k, 0.0) == total.get(k, 0.0) for k in keys)


def _assert_runtime_healthy() -> None:
    gc.collect()  # dropped actor handles and queues end their actors/queues
    assert asyncray.get(echo.remote("alive"), timeout=CALL_DEADLINE_S) == "alive"
    try:
        wait_for_condition(_resources_all_free, timeout=CALL_DEADLINE_S)
    except AssertionError:
        raise AssertionError(
            f"resources not all free: {asyncray.available_resources()} of "
            f"{asyncray.cluster_resources()}"
        ) from None


def _with_wrong(rng: random.Random, template: dict[str, Any]) -> dict[str, Any]:
    """``template`` with one or two values replaced by wrong ones."""
    args = dict(template)
    for key in rng.sample(sorted(args), k=min(len(args), rng.choice((1, 2)))):
        args[key] = rng.choice(wrong_values())
    return args


def _waits_for_ever(timeout: Any) -> bool:
    """Whether ``timeout`` is a valid "wait for ever" (so the call needs something ready)."""
    if timeout is None:
        return True
    number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
    return number and timeout == timeout and timeout >= 1e9


def _generators(
    rng: random.Random, ready: Any, pending: Any, actor: Any, queue: Queue, full: Queue
) -> list[tuple[str, Any]]:
    """(label, thunk) pairs: each public call with wrong arguments.

    A call given a timeout that means "for ever" gets something ready (a
    valid call must answer); any other timeout gets something that never
    will be, so a bad timeout that is not rejected hangs (and fails).
    """

    def pick() -> Any:
        return rng.choice(wrong_values())

    calls: list[tuple[str, Callable[[], Any]]] = []

    def add(label: str, thunk: Callable[[], Any]) -> None:
        calls.append((label, thunk))

    a = _with_wrong(rng, {"refs": ready, "timeout": 1.0})
    add(f"get({a})", lambda: asyncray.get(a["refs"], timeout=a["timeout"]))
    add(f"get_async({a})", lambda: asyncray.get_async(a["refs"], timeout=a["timeout"]))
    w = _with_wrong(rng, {"refs": [ready], "num_returns": 1, "timeout": 1.0, "fetch_local": True})
    add(
        f"wait({w})",
        lambda: asyncray.wait(
            w["refs"],
            num_returns=w["num_returns"],
            timeout=w["timeout"],
            fetch_local=w["fetch_local"],
        ),
    )
    add(
        f"wait_async({w})",
        lambda: asyncray.wait_async(w["refs"], num_returns=w["num_returns"], timeout=w["timeout"]),
    )
    inside = pick()
    add(f"get([ready, {inside!r}])", lambda: asyncray.get([ready, inside], timeout=1.0))
    add(f"wait([ready, {inside!r}])", lambda: asyncray.wait([ready, inside], timeout=1.0))
    v = pick()
    add(f"put({v!r})", lambda: asyncray.put(v))
    c = _with_wrong(rng, {"ref": ready, "force": False, "recursive": True})
    add(
        f"cancel({c})",
        lambda: asyncray.cancel(c["ref"], force=c["force"], recursive=c["recursive"]),
    )
    k = pick()
    add(f"kill({k!r})", lambda: asyncray.kill(k, no_restart=pick()))
    add(f"put_async({v!r})", lambda: asyncray.put_async(v))
    add(f"cancel_async({c})", lambda: asyncray.cancel_async(c["ref"], force=c["force"]))
    g = _with_wrong(rng, {"name": "no-such-actor", "namespace": None})
    add(f"get_actor({g})", lambda: asyncray.get_actor(g["name"], namespace=g["namespace"]))
    add(
        f"get_actor_async({g})",
        lambda: asyncray.get_actor_async(g["name"], namespace=g["namespace"]),
    )
    cargs = [pick() for _ in range(rng.choice((2, 3)))]
    add(f"Counter.remote(*{cargs!r})", lambda: Counter.remote(*cargs))

    option = rng.choice(sorted(TASK_OPTIONS))
    ov = pick()

    def task_with_option() -> Any:
        ref = echo.options(**{option: ov}).remote(1)
        refs = ref if isinstance(ref, list) else [] if ref is None else [ref]
        if refs and not isinstance(ref, asyncray.ObjectRefGenerator):
            asyncray.get(refs, timeout=CALL_DEADLINE_S / 2)

    add(f"echo.options({option}={ov!r}).remote(1)", task_with_option)
    args = [pick() for _ in range(rng.choice((0, 2, 3)))]
    add(f"echo.remote(*{args!r})", lambda: echo.remote(*args))
    add(f"echo({ov!r})", lambda: echo(ov))

    actor_option = rng.choice(sorted(ACTOR_OPTIONS))
    av = pick()

    def actor_with_option() -> Any:
        handle = Counter.options(**{actor_option: av}).remote()
        asyncray.get(handle.incr.remote(), timeout=CALL_DEADLINE_S / 2)

    if rng.random() < 0.25:  # an actor is a process: keep these few
        add(f"Counter.options({actor_option}={av!r})", actor_with_option)
    method_option = rng.choice(sorted(METHOD_CALL_OPTIONS))
    mv = pick()

    def method_with_option() -> Any:
        ref = actor.incr.options(**{method_option: mv}).remote(1)
        if isinstance(ref, asyncray.ObjectRef):
            asyncray.get(ref, timeout=CALL_DEADLINE_S / 2)

    add(f"actor.incr.options({method_option}={mv!r})", method_with_option)
    margs = [pick() for _ in range(rng.choice((2, 3)))]
    add(f"actor.incr.remote(*{margs!r})", lambda: actor.incr.remote(*margs))
    name = rng.choice(("incr_", "inc", "x", "__ray_x", "_private"))

    def missing_method() -> Any:
        with pytest.raises(AttributeError, match="Its methods are: incr"):
            getattr(actor, name).remote()

    if not name.startswith("_"):
        add(f"getattr(actor, {name!r})", missing_method)

    qa = _with_wrong(rng, {"maxsize": 0, "actor_options": None})
    add(f"Queue({qa})", lambda: Queue(maxsize=qa["maxsize"], actor_options=qa["actor_options"]))
    qp = _with_wrong(rng, {"item": 1, "block": True, "timeout": 1.0})
    add(f"queue.put({qp})", lambda: queue.put(qp["item"], block=qp["block"], timeout=qp["timeout"]))
    qg = _with_wrong(rng, {"block": True, "timeout": 0.01})

    def queue_get() -> Any:
        if _waits_for_ever(qg["timeout"]):
            queue.put_nowait(1)  # an item is there: a valid blocking get returns at once
        return queue.get(block=qg["block"], timeout=qg["timeout"])

    qf = _with_wrong(rng, {"block": True, "timeout": 0.01})
    target = queue if _waits_for_ever(qf["timeout"]) else full  # full: only a timeout ends it
    add(
        f"put on a full queue({qf})",
        lambda: target.put(2, block=qf["block"], timeout=qf["timeout"]),
    )

    add(f"queue.get({qg})", queue_get)

    def queue_get_async() -> Any:
        if _waits_for_ever(qg["timeout"]):
            queue.put_nowait(1)
        return queue.get_async(block=qg["block"], timeout=qg["timeout"])

    add(f"queue.get_async({qg})", queue_get_async)
    n = pick()
    add(f"queue.get_nowait_batch({n!r})", lambda: queue.get_nowait_batch(n))
    add(f"queue.put_nowait_batch({n!r})", lambda: queue.put_nowait_batch(n))

    pa = _with_wrong(
        rng, {"bundles": [{"CPU": 1}], "strategy": "PACK", "name": "", "lifetime": None}
    )

    def make_group() -> Any:
        pg = placement_group(
            pa["bundles"], strategy=pa["strategy"], name=pa["name"], lifetime=pa["lifetime"]
        )
        try:
            pg.wait(pick())
        finally:
            remove_placement_group(pg)

    add(f"placement_group({pa})", make_group)
    add(f"remove_placement_group({n!r})", lambda: remove_placement_group(n))
    add(f"get_placement_group({n!r})", lambda: asyncray.util.get_placement_group(n))
    add(f"placement_group_table({n!r})", lambda: asyncray.util.placement_group_table(n))
    add(f"ActorPool({n!r})", lambda: ActorPool(n))

    def pool_get_next() -> Any:
        pool = ActorPool([actor])
        pool.submit(lambda h, v: h.incr.remote(v), 1)
        try:
            pool.get_next(timeout=pick())
        finally:
            if pool.has_next():
                pool.get_next(timeout=CALL_DEADLINE_S / 2)

    add("ActorPool.get_next(timeout=?)", pool_get_next)

    gen_timeout = pick()

    def generator_wait() -> Any:
        gen = count_to.remote(2)
        asyncray.wait([gen], timeout=gen_timeout)
        return [asyncray.get(r, timeout=CALL_DEADLINE_S / 2) for r in gen]

    add(f"wait([generator], timeout={gen_timeout!r})", generator_wait)
    gen_method = rng.choice(("completed", "is_finished", "next_ready", "__next__"))

    def generator_method() -> Any:
        gen = count_to.remote(2)
        getattr(gen, gen_method)(n)

    add(f"generator.{gen_method}({n!r})", generator_method)
    context = asyncray.get_runtime_context()
    method = rng.choice(
        ("get_job_id", "get_node_id", "get_task_id", "get_actor_id", "get_assigned_resources")
    )
    add(f"runtime_context.{method}({n!r})", lambda: getattr(context, method)(n))
    return calls


@pytest.mark.timeout(120)
def test_wrong_arguments_to_every_public_call_raise_clearly_and_never_hang(ray_start):
    rng = random.Random(SEED)
    ready = asyncray.put("ready")
    pending = forever.remote()
    actor = Counter.remote()
    asyncray.get(actor.incr.remote(0))
    queue = Queue()
    full = Queue(maxsize=1)
    full.put(1)
    done = 0
    while done < TRIALS:
        calls = _generators(rng, ready, pending, actor, queue, full)
        rng.shuffle(calls)
        for label, thunk in calls:
            _call_with_deadline(label, thunk)
            done += 1
    assert full.qsize() == 1
    asyncray.cancel(pending, force=True)
    del queue, full
    _assert_runtime_healthy()


@pytest.mark.timeout(120)
def test_init_with_wrong_arguments_raises_or_starts_cleanly(shutdown_only):
    rng = random.Random(SEED + 1)
    template = {
        "num_cpus": NUM_CPUS,
        "num_gpus": 0,
        "resources": None,
        "object_store_memory": None,
        "namespace": None,
    }
    for _ in range(40):
        kwargs = _with_wrong(rng, template)
        try:
            asyncray.init(**kwargs)
        except (TypeError, ValueError, AssertionError):
            assert not asyncray.is_initialized(), f"init({kwargs}) failed but left a session"
            continue
        assert asyncray.get(echo.options(num_cpus=0).remote(1), timeout=CALL_DEADLINE_S) == 1
        asyncray.shutdown()
    asyncray.init(num_cpus=NUM_CPUS)
    _assert_runtime_healthy()


def _child_calls(v: Any, target: Any, queue: Queue) -> list[tuple[str, Callable[[], Any]]]:
    """The calls ``_fuzz_inside_a_task`` makes with the wrong value ``v``."""
    return [
        ("get", lambda: asyncray.get(target, timeout=v)),
        ("wait", lambda: asyncray.wait([target], timeout=v)),
        ("queue.get", lambda: queue.get(timeout=v)),
        ("Queue", lambda: Queue(maxsize=v)),
        ("echo.options(max_retries)", lambda: echo.options(max_retries=v).remote(1)),
        ("echo.options(num_returns)", lambda: echo.options(num_returns=v).remote(1)),
        (
            "count_to.options(backpressure)",
            lambda: count_to.options(_generator_backpressure_num_objects=v).remote(1),
        ),
        ("put", lambda: asyncray.put(v)),
        ("get_actor", lambda: asyncray.get_actor(v)),
        ("cancel", lambda: asyncray.cancel(v)),
        ("placement_group", lambda: remove_placement_group(placement_group([{"CPU": v}]))),
        ("Queue.get_nowait_batch", lambda: queue.get_nowait_batch(v)),
    ]


@asyncray.remote(max_retries=0)
def _fuzz_inside_a_task(seed: int, boxed: list[Any]) -> Any:
    """Wrong arguments from a child, whose messages are framed (the driver's are not).

    Returns None, or ``(label, value, error)`` for the first call that raised
    something not allowed.
    """
    ready, pending = boxed
    rng = random.Random(seed)
    queue = Queue()
    for _ in range(40):
        v = rng.choice(wrong_values())
        target = ready if _waits_for_ever(v) else pending
        if _waits_for_ever(v):
            queue.put_nowait(1)
        calls = _child_calls(v, target, queue)
        for label, call in calls:
            try:
                call()
            except ALLOWED as e:
                if isinstance(e, exc.RaySystemError):
                    return (label, repr(v), repr(e))
            except BaseException as e:
                return (label, repr(v), repr(e))
    return None


def test_wrong_arguments_inside_a_task_raise_clearly_and_never_hang(ray_start):
    ready = asyncray.put("ready")
    pending = forever.remote()
    failure = asyncray.get(
        _fuzz_inside_a_task.remote(SEED, [ready, pending]), timeout=CALL_DEADLINE_S * 3
    )
    assert failure is None, f"inside a task, {failure[0]}({failure[1]}) raised {failure[2]}"
    asyncray.cancel(pending, force=True)
    _assert_runtime_healthy()
