"""Generators as Ray 2.60 runs them (issue #15).

A generator called with a fixed ``num_returns=N`` stores its N yielded
values in N refs (tasks, plain and async actors); a wrong count fails with
Ray's ``ValueError``. An ``ObjectRefGenerator`` cannot be passed to another
task, as in Ray: ``TypeError`` at the call site, and the generator stays usable.
"""

from __future__ import annotations

import pytest

import asyncray
from asyncray.exceptions import RayTaskError


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
