"""Every numeric option and argument rejects bad values at the call site.

Table-driven: each option or argument crossed with NaN, infinities, negatives, huge
ints (10**30, which cannot even be framed) and wrong types raises
``TypeError``/``ValueError`` naming it, at once — never a hang, a silent
wrong result or a wedged worker. Valid edge values (None, 0, -1 meaning
infinite, inf meaning for ever) keep working.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from _helpers import wait_for_condition

import asyncray
from asyncray.util import ActorPool
from asyncray.util.placement_group import placement_group
from asyncray.util.queue import Empty, Full, Queue

NAN = float("nan")
INF = float("inf")
HUGE = 10**30
# A call that validates must answer within this (a hang is the bug).
ANSWER_S = 5.0


@asyncray.remote
def echo(x):
    return x


@asyncray.remote
def count_to(n):
    yield from range(n)


@asyncray.remote
def forever():
    time.sleep(3600)


@asyncray.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def incr(self, by=1):
        self.n += by
        return self.n

    def read(self):
        return self.n


# ---------------------------------------------------------------- option tables

# (option, bad value, exception type): @remote / .options() of a task.
TASK_OPTION_CASES = [
    *[
        (opt, bad, kind)
        for opt in ("num_cpus", "num_gpus", "memory")
        for bad, kind in (
            (NAN, ValueError),
            (INF, ValueError),
            (-1, ValueError),
            (HUGE, ValueError),
            ("1", TypeError),
            (True, TypeError),
        )
    ],
    *[
        (opt, bad, kind)
        for opt in ("max_retries", "max_calls")
        for bad, kind in ((NAN, TypeError), (-2, ValueError), (HUGE, ValueError), (1.5, TypeError))
    ],
    ("num_returns", -1, ValueError),
    ("num_returns", HUGE, ValueError),
    ("num_returns", NAN, TypeError),
    ("num_returns", "1", TypeError),
    ("_generator_backpressure_num_objects", HUGE, ValueError),
    ("_generator_backpressure_num_objects", -2, ValueError),
    ("_generator_backpressure_num_objects", 0, ValueError),
    ("_generator_backpressure_num_objects", NAN, TypeError),
    ("timeout_s", NAN, ValueError),
    ("timeout_s", INF, ValueError),
    ("timeout_s", -1, ValueError),
    ("placement_group_bundle_index", 1.5, TypeError),
    ("placement_group_bundle_index", -2, ValueError),
    ("placement_group_bundle_index", HUGE, ValueError),
    ("name", 5, TypeError),
]


@pytest.mark.parametrize(("option", "bad", "kind"), TASK_OPTION_CASES)
def test_a_bad_task_option_raises_naming_it(option, bad, kind):
    with pytest.raises(kind, match=option):
        asyncray.remote(**{option: bad})(lambda: 1)
    if option != "max_calls":  # not allowed in .options() at all
        with pytest.raises(kind, match=option):
            echo.options(**{option: bad})


@pytest.mark.parametrize(
    ("option", "bad"),
    [("resources", {"a": NAN}), ("resources", {"a": INF}), ("resources", {"a": -1})],
)
def test_a_bad_custom_resource_quantity_names_the_resource(option, bad):
    with pytest.raises(ValueError, match="resource a"):
        echo.options(**{option: bad})


ACTOR_OPTION_CASES = [
    *[
        (opt, bad, kind)
        for opt in ("max_restarts", "max_task_retries", "max_pending_calls")
        for bad, kind in ((NAN, TypeError), (-2, ValueError), (HUGE, ValueError), (1.5, TypeError))
    ],
    ("max_concurrency", -1, ValueError),
    ("max_concurrency", HUGE, ValueError),
    ("max_concurrency", NAN, TypeError),
    ("num_cpus", NAN, ValueError),
    ("num_cpus", INF, ValueError),
    ("_actor_generator_backpressure_num_objects", HUGE, ValueError),
]


@pytest.mark.parametrize(("option", "bad", "kind"), ACTOR_OPTION_CASES)
def test_a_bad_actor_option_raises_naming_it(option, bad, kind):
    with pytest.raises(kind, match=option):
        Counter.options(**{option: bad})


@pytest.mark.parametrize(("size", "kind"), [(0, ValueError), (HUGE, ValueError), (1.5, TypeError)])
def test_a_bad_concurrency_group_size_names_the_group(size, kind):
    class Grouped:
        def f(self):
            return 1

    with pytest.raises(kind, match="concurrency_groups\\['io'\\]"):
        asyncray.remote(concurrency_groups={"io": size})(Grouped)


@pytest.mark.parametrize(
    ("option", "bad", "kind"),
    [
        ("num_returns", HUGE, ValueError),
        ("max_task_retries", HUGE, ValueError),
        ("_generator_backpressure_num_objects", HUGE, ValueError),
        ("timeout_s", NAN, ValueError),
        ("concurrency_group", 5, TypeError),
    ],
)
def test_a_bad_method_option_raises_naming_it(ray_start, option, bad, kind):
    with pytest.raises(kind, match=option):
        asyncray.method(**{option: bad})
    actor = Counter.remote()
    with pytest.raises(kind, match=option):
        actor.incr.options(**{option: bad})


def test_huge_backpressure_is_rejected_and_no_cpu_is_lost(ray_start):
    """The issue's reproducer: 10**30 failed while framing and wedged a CPU for good."""
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        count_to.options(_generator_backpressure_num_objects=HUGE).remote(3)
    assert [asyncray.get(r) for r in count_to.remote(3)] == [0, 1, 2]
    total = asyncray.cluster_resources()["CPU"]
    wait_for_condition(lambda: asyncray.available_resources().get("CPU") == total)


def test_valid_edge_values_keep_working(ray_start):
    assert asyncray.get(echo.options(max_retries=-1, num_cpus=0).remote(1)) == 1
    assert asyncray.get(echo.options(max_retries=0, num_cpus=0.5).remote(2)) == 2
    assert echo.options(num_returns=0).remote(1) is None
    gen = count_to.options(_generator_backpressure_num_objects=-1).remote(2)
    assert [asyncray.get(r) for r in gen] == [0, 1]
    gen = count_to.options(num_returns="streaming", _generator_backpressure_num_objects=1).remote(2)
    assert [asyncray.get(r) for r in gen] == [0, 1]
    actor = Counter.options(max_restarts=-1, max_task_retries=-1, max_concurrency=1).remote()
    assert asyncray.get(actor.incr.remote()) == 1


# ---------------------------------------------------------------- get / wait timeouts

TIMEOUT_BAD = [(NAN, ValueError, "nan"), (-1, ValueError, "nonnegative"), ("1", TypeError, "'1'")]


@pytest.mark.parametrize(("bad", "kind", "text"), TIMEOUT_BAD)
def test_get_and_wait_reject_a_bad_timeout_at_once(ray_start, bad, kind, text):
    ref = forever.remote()
    start = time.monotonic()
    with pytest.raises(kind, match=text):
        asyncray.get(ref, timeout=bad)
    with pytest.raises(kind, match=text):
        asyncray.wait([ref], timeout=bad)
    with pytest.raises(kind, match=text):
        asyncio.run(asyncray.get_async(ref, timeout=bad))
    with pytest.raises(kind, match=text):
        asyncio.run(asyncray.wait_async([ref], timeout=bad))
    assert time.monotonic() - start < ANSWER_S
    asyncray.cancel(ref, force=True)


@pytest.mark.parametrize("forever_s", [INF, HUGE, 1e300])
def test_an_infinite_or_huge_timeout_waits_for_the_value(ray_start, forever_s):
    ref = echo.remote(7)
    assert asyncray.get(ref, timeout=forever_s) == 7
    assert asyncray.wait([ref], timeout=forever_s) == ([ref], [])


def test_timeout_zero_and_none_still_work(ray_start):
    ref = forever.remote()
    with pytest.raises(asyncray.exceptions.GetTimeoutError):
        asyncray.get(ref, timeout=0)
    assert asyncray.wait([ref], timeout=0) == ([], [ref])
    assert asyncray.get(echo.remote(1), timeout=None) == 1
    asyncray.cancel(ref, force=True)


@pytest.mark.parametrize(
    ("bad", "kind"),
    [
        (1.5, TypeError),
        ("1", TypeError),
        (NAN, TypeError),
        (0, ValueError),
        (-1, ValueError),
        (True, TypeError),
    ],
)
def test_wait_rejects_a_bad_num_returns(ray_start, bad, kind):
    with pytest.raises(kind, match=r"num_returns|number of objects"):
        asyncray.wait([echo.remote(1)], num_returns=bad)


# ---------------------------------------------------------------- Queue


@pytest.mark.parametrize(("bad", "kind", "text"), [*TIMEOUT_BAD[:1], ("1", TypeError, "timeout")])
def test_queue_rejects_a_bad_timeout_at_once(ray_start, bad, kind, text):
    empty = Queue()
    full = Queue(maxsize=1)
    full.put(0)
    start = time.monotonic()
    for call in (lambda: empty.get(timeout=bad), lambda: full.put(1, timeout=bad)):
        with pytest.raises(kind, match=text):
            call()
    with pytest.raises(kind, match=text):
        asyncio.run(empty.get_async(timeout=bad))
    assert time.monotonic() - start < ANSWER_S
    assert full.qsize() == 1 and empty.qsize() == 0  # nothing taken or added


def test_queue_negative_timeout_keeps_rays_message(ray_start):
    with pytest.raises(ValueError, match=r"^'timeout' must be a non-negative number$"):
        Queue().get(timeout=-1)


def test_queue_infinite_timeout_waits_and_zero_times_out(ray_start):
    q = Queue()
    q.put(1)
    assert q.get(timeout=INF) == 1
    with pytest.raises(Empty):
        q.get(timeout=0)
    q2 = Queue(maxsize=1)
    q2.put(1, timeout=INF)
    with pytest.raises(Full):
        q2.put(2, timeout=0)


@pytest.mark.parametrize(
    ("call", "kind", "text"),
    [
        (lambda: Queue(maxsize=HUGE), ValueError, "maxsize"),
        (lambda: Queue(maxsize=-HUGE), ValueError, "maxsize"),
        (lambda: Queue(maxsize=1.5), TypeError, "maxsize"),
        (lambda: Queue(maxsize=NAN), TypeError, "maxsize"),
        (lambda: Queue().get_nowait_batch(HUGE), ValueError, "num_items"),
        (lambda: Queue().get_nowait_batch(-1), ValueError, "num_items"),
        (lambda: Queue().get_nowait_batch(True), TypeError, "num_items"),
        (lambda: Queue().put_nowait_batch(5), TypeError, "items"),
    ],
)
def test_queue_rejects_bad_sizes(ray_start, call, kind, text):
    with pytest.raises(kind, match=text):
        call()


# ---------------------------------------------------------------- placement groups, pool


@pytest.mark.parametrize(
    ("bundles", "kind", "text"),
    [
        ([{"CPU": NAN}], ValueError, "bundle 0.*CPU"),
        ([{"CPU": INF}], ValueError, "bundle 0.*CPU"),
        ([{"CPU": -1}], ValueError, "bundle 0.*negative"),
        ([{"CPU": HUGE}], ValueError, "bundle 0.*CPU"),
        ([{"CPU": "1"}], TypeError, "bundle 0.*CPU"),
        ([{1: 1}], ValueError, "Bundle 0"),
        ({"CPU": 1}, ValueError, "must be a list"),
    ],
)
def test_placement_group_rejects_bad_bundles(ray_start, bundles, kind, text):
    with pytest.raises(kind, match=text):
        placement_group(bundles)


def test_placement_group_rejects_a_bad_strategy_name_and_wait_timeout(ray_start):
    with pytest.raises(ValueError, match="strategy"):
        placement_group([{"CPU": 1}], strategy=5)
    with pytest.raises(TypeError, match="name"):
        placement_group([{"CPU": 1}], name=5)
    pg = placement_group([{"CPU": 1}])
    with pytest.raises(ValueError, match="timeout_seconds"):
        pg.wait(NAN)
    assert pg.wait(INF) is True


@pytest.mark.parametrize(("bad", "kind"), [(NAN, ValueError), (-1, ValueError), ("1", TypeError)])
def test_actor_pool_rejects_a_bad_timeout(ray_start, bad, kind):
    pool = ActorPool([Counter.remote()])
    pool.submit(lambda a, v: a.incr.remote(v), 1)
    with pytest.raises(kind, match="timeout"):
        pool.get_next(timeout=bad)
    assert pool.get_next(timeout=INF) == 1  # the task was kept


# ---------------------------------------------------------------- init


@pytest.mark.parametrize(
    ("kwargs", "kind", "text"),
    [
        ({"num_cpus": NAN}, ValueError, "num_cpus"),
        ({"num_cpus": INF}, ValueError, "num_cpus"),
        ({"num_cpus": -1}, ValueError, "num_cpus"),
        ({"num_cpus": HUGE}, ValueError, "num_cpus"),
        ({"num_cpus": 1.5}, ValueError, "num_cpus"),
        ({"num_cpus": "2"}, TypeError, "num_cpus"),
        ({"num_gpus": NAN}, ValueError, "num_gpus"),
        ({"resources": {"r": NAN}}, ValueError, "'r'"),
        ({"resources": {"r": HUGE}}, ValueError, "'r'"),
        ({"resources": "r"}, TypeError, "resources"),
        ({"resources": {1: 1}}, TypeError, "resource names"),
        ({"object_store_memory": HUGE}, ValueError, "object_store_memory"),
        ({"object_store_memory": NAN}, ValueError, "object_store_memory"),
        ({"object_store_memory": -1}, ValueError, "object_store_memory"),
    ],
)
def test_init_rejects_bad_numbers_before_starting(shutdown_only, kwargs, kind, text):
    with pytest.raises(kind, match=text):
        asyncray.init(**kwargs)
    assert not asyncray.is_initialized()


def test_a_huge_value_is_shown_short_in_the_message():
    with pytest.raises(ValueError) as info:
        echo.options(max_retries=10**5000)
    assert len(str(info.value)) < 300
    assert "bits" in str(info.value)
    assert math.isnan(NAN)  # the table's NaN is a real NaN


@pytest.mark.parametrize("gpus", [1.5, 2.25])
def test_more_than_one_gpu_must_be_whole_devices(gpus):
    @asyncray.remote
    def f():
        return 1

    with pytest.raises(ValueError, match=r"GPU resource quantities >1 must be whole numbers"):
        f.options(num_gpus=gpus)
    with pytest.raises(ValueError, match=r"The specified quantity .* is invalid"):
        asyncray.remote(num_gpus=gpus)(lambda: 1)
    f.options(num_gpus=0.5)  # a fraction of one device is fine
    f.options(num_gpus=2)
