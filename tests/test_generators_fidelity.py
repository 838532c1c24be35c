"""Generators as Ray 2.60 runs them (issue #15).

A generator called with a fixed ``num_returns=N`` stores its N yielded
values in N refs (tasks, plain and async actors); a wrong count fails with
Ray's ``ValueError``. An ``ObjectRefGenerator`` cannot be passed to another
task, as in Ray: ``TypeError`` at the call site, and the generator stays usable.
A generator task is retried (``retry_exceptions``, crashes) as Ray retries it.
"""

from __future__ import annotations

import os

import pytest

import asyncray
from asyncray._core.child_checks import task_done_problem
from asyncray._wire import protocol as P
from asyncray.exceptions import RayTaskError
from tests._helpers import attempts, record_attempt, wait_for_file


def _outcomes(refs: list[asyncray.ObjectRef]) -> list[object]:
    """Each ref's value, or ``(error type, last line of its message)``."""
    out: list[object] = []
    for ref in refs:
        try:
            out.append(asyncray.get(ref, timeout=30))
        except RayTaskError as e:
            out.append((type(e.cause).__name__, str(e).strip().splitlines()[-1]))
    return out


# ---------------------------------------------------------------- num_returns=N


@asyncray.remote(num_returns=3)
def tens(n):
    for i in range(n):
        yield i * 10


@asyncray.remote
class Yielder:
    @asyncray.method(num_returns=2)
    def count(self, n):
        yield from range(n)


@asyncray.remote
class AsyncYielder:
    async def ping(self):
        return 1

    @asyncray.method(num_returns=2)
    def count(self, n):
        yield from range(n)

    @asyncray.method(num_returns=2)
    async def acount(self, n):
        for i in range(n):
            yield i


def test_generator_task_with_fixed_num_returns_fills_each_ref(ray_start):
    assert asyncray.get(tens.remote(3), timeout=30) == [0, 10, 20]
    # More items than refs: the first N are kept, as in Ray.
    assert asyncray.get(tens.remote(5), timeout=30) == [0, 10, 20]
    wrong = ("ValueError", "ValueError: Task returned 2 objects, but num_returns=3.")
    assert _outcomes(tens.remote(2))[2] == wrong
    none = ("ValueError", "ValueError: Task returned 0 objects, but num_returns=3.")
    assert _outcomes(tens.remote(0)) == [none] * 3


def test_generator_with_num_returns_one_or_zero(ray_start):
    @asyncray.remote(num_returns=1)
    def first():
        yield "a"
        yield "b"

    @asyncray.remote(num_returns=0)
    def nothing():
        yield from ()

    assert asyncray.get(first.remote(), timeout=30) == "a"
    assert nothing.remote() is None


def test_generator_error_reaches_the_refs_and_is_not_retried(ray_start, tmp_path):
    marker = tmp_path / "runs"

    @asyncray.remote(num_returns=2, retry_exceptions=True, max_retries=2)
    def fails():
        with open(marker, "a") as f:
            f.write("x")
        yield 1
        raise KeyError("boom")

    outcome = _outcomes(fails.remote())
    # Every ref raises the error (Ray keeps the values yielded before it: see
    # docs/ray-compatibility.md).
    assert outcome == [("KeyError", "KeyError: 'boom'")] * 2
    assert marker.read_text() == "x"  # Ray does not retry a fixed-num_returns generator


@pytest.mark.parametrize("cls", [Yielder, AsyncYielder], ids=["plain", "async"])
def test_actor_generator_method_with_fixed_num_returns(ray_start, cls):
    actor = cls.remote()
    assert asyncray.get(actor.count.remote(2), timeout=30) == [0, 1]
    assert asyncray.get(actor.count.remote(3), timeout=30) == [0, 1]
    wrong = ("ValueError", "ValueError: Task returned 1 objects, but num_returns=2.")
    assert _outcomes(actor.count.remote(1))[1] == wrong


def test_async_generator_with_fixed_num_returns_is_a_type_error(ray_start):
    @asyncray.remote(num_returns=2)
    async def agen():
        yield 1
        yield 2

    for ref in [*agen.remote(), *AsyncYielder.remote().acount.remote(2)]:
        with pytest.raises(RayTaskError) as info:
            asyncray.get(ref, timeout=30)
        assert isinstance(info.value, TypeError)
        assert "'async_generator' object is not iterable" in str(info.value)
        assert "num_returns='streaming'" in str(info.value)


# ---------------------------------------------------------------- passing a generator

RAY_PASS_MESSAGE = (
    "You cannot return or pass a generator to other task. "
    "Serializing a ObjectRefGenerator is not allowed."
)


@asyncray.remote
def count_to(n):
    yield from range(n)


@asyncray.remote
def takes(value):
    return value


@asyncray.remote
class Taker:
    def take(self, value):
        return value


def test_generator_cannot_be_passed_or_put_as_in_ray(ray_start):
    gen = count_to.remote(2)
    taker = Taker.remote()
    calls = {
        "task": lambda: takes.remote(gen),
        "keyword": lambda: takes.remote(value=gen),
        "nested": lambda: takes.remote([gen]),
        "actor": lambda: taker.take.remote(gen),
        "put": lambda: asyncray.put(gen),
    }
    for what, call in calls.items():
        with pytest.raises(TypeError) as info:
            call()
        assert RAY_PASS_MESSAGE in str(info.value), what
    assert [asyncray.get(ref, timeout=30) for ref in gen] == [0, 1]  # still the caller's


def test_generator_cannot_be_returned_from_a_task(ray_start):
    @asyncray.remote
    def make():
        return count_to.remote(1)

    with pytest.raises(RayTaskError) as info:
        asyncray.get(make.remote(), timeout=30)
    assert isinstance(info.value, TypeError)
    assert RAY_PASS_MESSAGE in str(info.value)


# ---------------------------------------------------------------- retries of generator tasks
#
# Ray runs a retried generator again from its start; the items the consumer
# already has (or could have) stay, the new attempt's items at those indices
# are dropped, and its later items follow: the consumer goes on where it was.


def _drain(gen) -> list[object]:
    out: list[object] = []
    for ref in gen:
        try:
            out.append(asyncray.get(ref, timeout=30))
        except RayTaskError as e:
            out.append((type(e.cause).__name__, str(e.cause)))
    return out


@asyncray.remote(retry_exceptions=True, max_retries=2)
def flaky_items(log, gate, fail_until):
    attempt = record_attempt(log)
    for i in range(4):
        yield (i, attempt)
        if i == 0 and attempt == 1:
            wait_for_file(gate)  # the consumer has taken item 0
        if i == 1 and attempt < fail_until:
            raise KeyError(f"attempt {attempt}")


@asyncray.remote(retry_exceptions=True, max_retries=2)
async def flaky_items_async(log, gate, fail_until):
    attempt = record_attempt(log)
    for i in range(4):
        yield (i, attempt)
        if i == 0 and attempt == 1:
            wait_for_file(gate)
        if i == 1 and attempt < fail_until:
            raise KeyError(f"attempt {attempt}")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("producer", [flaky_items, flaky_items_async], ids=["sync", "async"])
def test_generator_task_retried_after_yielding_continues_where_the_consumer_was(
    ray_start, tmp_path, producer
):
    log, gate = tmp_path / "log", tmp_path / "gate"
    gen = producer.remote(str(log), str(gate), 3)
    assert asyncray.get(next(gen), timeout=30) == (0, 1)
    gate.touch()
    # Items 0 and 1 of attempt 1 are kept; attempts 2 and 3 rerun from the start.
    assert _drain(gen) == [(1, 1), (2, 3), (3, 3)]
    assert len(attempts(log)) == 3
    assert asyncray.get(gen.completed(), timeout=30) is None


@pytest.mark.timeout(30)
def test_generator_task_out_of_retries_ends_with_the_last_error(ray_start, tmp_path):
    log, gate = tmp_path / "log", tmp_path / "gate"
    gate.touch()
    gen = flaky_items.remote(str(log), str(gate), 99)
    assert _drain(gen) == [(0, 1), (1, 1), ("KeyError", "'attempt 3'")]
    assert len(attempts(log)) == 3  # max_retries=2
    assert asyncray.get(gen.completed(), timeout=30) is None  # an item's error, as before


@pytest.mark.timeout(30)
def test_retried_generator_that_yields_fewer_keeps_the_items_of_the_first(ray_start, tmp_path):
    @asyncray.remote(retry_exceptions=True, max_retries=1)
    def shrinking(log, fail_last):
        attempt = record_attempt(log)
        for i in range(3 if attempt == 1 else 1):
            yield (i, attempt)
        if attempt == 1 or fail_last:
            raise KeyError(f"attempt {attempt}")

    # As in Ray: the stream ends after the most items any attempt produced,
    # with the last attempt's error (if it raised) after them.
    ok = shrinking.remote(str(tmp_path / "a"), False)
    assert _drain(ok) == [(0, 1), (1, 1), (2, 1)]
    failed = shrinking.remote(str(tmp_path / "b"), True)
    assert _drain(failed) == [(0, 1), (1, 1), (2, 1), ("KeyError", "'attempt 2'")]

    @asyncray.remote(retry_exceptions=[KeyError], max_retries=1)
    def other_error(log):
        attempt = record_attempt(log)
        for i in range(3 if attempt == 1 else 1):
            yield (i, attempt)
        raise KeyError("again") if attempt == 1 else ValueError("not retried")

    # A rerun's error that is not retried also comes after the kept items.
    other = other_error.remote(str(tmp_path / "c"))
    assert _drain(other) == [(0, 1), (1, 1), (2, 1), ("ValueError", "not retried")]


@pytest.mark.timeout(30)
def test_generator_retry_only_for_the_listed_exceptions(ray_start, tmp_path):
    @asyncray.remote(retry_exceptions=[KeyError], max_retries=2)
    def wrong_error(log):
        yield record_attempt(log)
        raise ValueError("not listed")

    log = tmp_path / "log"
    assert _drain(wrong_error.remote(str(log))) == [1, ("ValueError", "not listed")]
    assert len(attempts(log)) == 1


@pytest.mark.timeout(30)
def test_generator_task_retried_after_its_worker_crashed(ray_start, tmp_path):
    @asyncray.remote(max_retries=1)
    def crashing(log):
        attempt = record_attempt(log)
        for i in range(3):
            yield (i, attempt)
            if i == 1 and attempt == 1:
                os._exit(1)

    log = tmp_path / "log"
    assert _drain(crashing.remote(str(log))) == [(0, 1), (1, 1), (2, 2)]
    assert len(attempts(log)) == 2


@pytest.mark.timeout(30)
def test_retried_generator_with_backpressure_resumes(ray_start, tmp_path):
    @asyncray.remote(retry_exceptions=True, max_retries=1, _generator_backpressure_num_objects=1)
    def paced(log):
        attempt = record_attempt(log)
        for i in range(5):
            yield (i, attempt)
            if i == 2 and attempt == 1:
                raise KeyError("once")

    # The rerun passes the items the consumer already took without waiting for it.
    log = tmp_path / "log"
    assert _drain(paced.remote(str(log))) == [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2)]


def test_a_generator_error_reply_without_its_error_is_refused():
    # A child that says its generator raised must send the error: the
    # runtime retries with it or ends the stream with it.
    bare = P.TaskDone(b"t" * 24, [], True, retryable=True, stream_count=2)
    assert task_done_problem(bare, 0, True, 2, False) == (
        "reported an error without the error's payload"
    )
    full = P.TaskDone(b"t" * 24, [b"error"], True, retryable=True, stream_count=2)
    assert task_done_problem(full, 0, True, 2, False) == ""
