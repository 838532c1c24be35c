"""What mypy knows of asyncray's types, with asyncray's plugin (README, "Types").

Checked by mypy, never run (``tests/test_static_checks.py``; pytest does not
collect it). ``assert_type`` pins each type; each ``# type: ignore[code]``
marks a call mypy must reject with that code: with ``warn_unused_ignores``
an ignore mypy no longer needs is itself an error, so the test fails if a
mistake stops being flagged.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, TypeVar

from typing_extensions import assert_type

import asyncray as ray
from asyncray import ActorHandle, ObjectRef, ObjectRefGenerator

T = TypeVar("T")

# ==================================================================== tasks


@ray.remote
def scale(x: int, factor: float = 2.0) -> float:
    return x * factor


@ray.remote(num_cpus=1, max_retries=0)
def words(n: int) -> list[str]:
    return ["a"] * n


@ray.remote
def nothing() -> None:
    pass


@ray.remote
def total(*values: int, start: int = 0) -> int:
    return start + sum(values)


@ray.remote
def count(n: int) -> Iterator[int]:
    yield from range(n)


@ray.remote
def pairs(n: int) -> Generator[tuple[int, str], None, None]:
    for i in range(n):
        yield i, str(i)


@ray.remote
def unannotated(x, y=1):  # no annotations: any arguments, ObjectRef[Any]
    return x


@ray.remote
def ident(x: T, times: int = 1) -> T:
    return x


@ray.remote
def first(xs: list[T]) -> T:
    return xs[0]


@ray.remote(num_returns=2)
def split(x: int) -> tuple[int, int]:
    return x, x


def undecorated(flag: bool) -> bytes:
    return b""


as_call = ray.remote(undecorated)
assert_type(as_call.remote(True), ObjectRef[bytes])

ref = scale.remote(1)
assert_type(ref, ObjectRef[float])
assert_type(scale.remote(1, 3.0), ObjectRef[float])
assert_type(scale.remote(x=1, factor=0.5), ObjectRef[float])
assert_type(words.remote(3), ObjectRef[list[str]])
assert_type(nothing.remote(), ObjectRef[None])
assert_type(total.remote(1, 2, 3, start=4), ObjectRef[int])
assert_type(unannotated.remote("anything"), ObjectRef[Any])
unannotated.remote(1, 2, 3)  # type: ignore[call-overload]

# A ref stands for a value of its type, by position or by keyword (as in Ray).
int_ref: ObjectRef[int] = ray.put(1)
str_ref: ObjectRef[str] = ray.put("one")
assert_type(ray.put(1.5), ObjectRef[float])
assert_type(scale.remote(int_ref), ObjectRef[float])
assert_type(scale.remote(x=int_ref, factor=ref), ObjectRef[float])
assert_type(total.remote(int_ref, 2, start=int_ref), ObjectRef[int])

# Generic functions: the type variables are solved from values and refs alike.
assert_type(ident.remote("s"), ObjectRef[str])
assert_type(ident.remote(str_ref, times=int_ref), ObjectRef[str])
assert_type(ident.remote(x=int_ref), ObjectRef[int])
assert_type(first.remote([1.5]), ObjectRef[float])
assert_type(first.remote(ray.put([b""])), ObjectRef[bytes])
ident.remote("s", times="1")  # type: ignore[call-overload]

# Wrong calls.
scale.remote("1")  # type: ignore[call-overload]
scale.remote(str_ref)  # type: ignore[arg-type]
scale.remote()  # type: ignore[call-overload]
scale.remote(1, 2.0, 3)  # type: ignore[call-overload]
scale.remote(1, scale=2.0)  # type: ignore[call-overload]
total.remote(1, "2")  # type: ignore[call-overload]
scale(1)  # type: ignore[operator]  # not called directly (a TypeError at run time)
scale.not_an_attribute  # type: ignore[attr-defined]

# .options() keeps the types.
assert_type(scale.options(num_cpus=2).remote(1), ObjectRef[float])
assert_type(scale.options(name="s").options(max_retries=1).remote(int_ref), ObjectRef[float])
scale.options(num_cpus=2).remote("1")  # type: ignore[call-overload]

# num_returns: a list of refs (n > 1), None (0).
assert_type(split.remote(1), list[ObjectRef[Any]])
low, high = split.remote(int_ref)
assert_type(scale.options(num_returns=2).remote(1), list[ObjectRef[Any]])
assert_type(scale.options(num_returns=0).remote(1), None)
assert_type(scale.options(num_returns=1).remote(1), ObjectRef[float])
split.remote("1")  # type: ignore[call-overload]
scale.options(num_returns=3).remote("1")  # type: ignore[call-overload]

# Generators: their items' refs.
assert_type(count.remote(3), ObjectRefGenerator[int])
assert_type(count.options(num_returns="streaming").remote(int_ref), ObjectRefGenerator[int])
assert_type(pairs.remote(2), ObjectRefGenerator[tuple[int, str]])
count.remote("3")  # type: ignore[call-overload]
for item in count.remote(3):
    assert_type(item, ObjectRef[int])
assert_type(next(count.remote(3)), ObjectRef[int])

# ==================================================================== get, wait, await

assert_type(ray.get(ref), float)
assert_type(ray.get(ref, timeout=1.0), float)
assert_type(ray.get([ref, scale.remote(2)]), list[float])
assert_type(ray.get(words.remote(1)), list[str])
assert_type(ray.get(count.remote(3)), ObjectRefGenerator[int])
mixed = ray.get([ref, int_ref])  # refs of different types: a list of their join
ready, not_ready = ray.wait([ref, scale.remote(2)], num_returns=1)
assert_type(ready, list[ObjectRef[float]])
assert_type(not_ready, list[ObjectRef[float]])
assert_type(ref.future(), concurrent.futures.Future[float])
ray.get(1.5)  # a value the checker cannot see through: Any (a ValueError at run time)


async def awaiting() -> None:
    assert_type(await ref, float)
    assert_type(await ray.get_async(ref), float)
    assert_type(await ray.get_async([ref]), list[float])
    assert_type(await ray.put_async("x"), ObjectRef[str])
    done, _ = await ray.wait_async([ref])
    assert_type(done, list[ObjectRef[float]])
    async for item in count.remote(3):
        assert_type(item, ObjectRef[int])
        assert_type(await item, int)


# ==================================================================== actors


@ray.remote
class Counter:
    def __init__(self, start: int, *, step: int = 1) -> None:
        self.value = start
        self.step = step

    def incr(self, by: int | None = None) -> int:
        self.value += self.step if by is None else by
        return self.value

    async def slow_incr(self, by: int) -> str:
        return str(by)

    def history(self, n: int) -> Iterator[int]:
        yield from range(n)

    async def feed(self) -> AsyncIterator[bytes]:
        yield b""

    @ray.method(num_returns=1)
    def annotated(self, key: str) -> dict[str, int]:
        return {key: self.value}

    @ray.method(num_returns=2)
    def both(self, key: str) -> tuple[str, int]:
        return key, self.value

    @ray.method(num_returns=0)
    def reset(self) -> None:
        self.value = 0

    @staticmethod
    def helper(x: int) -> int:
        return x


counter = Counter.remote(1)
assert_type(counter, ActorHandle[Counter])
assert_type(Counter.remote(1, step=2), ActorHandle[Counter])
assert_type(Counter.remote(int_ref), ActorHandle[Counter])
assert_type(Counter.options(name="c", num_cpus=0).remote(1), ActorHandle[Counter])
Counter.remote("1")  # type: ignore[arg-type]
Counter.remote()  # type: ignore[call-arg]
Counter.options(name="c").remote(str_ref)  # type: ignore[arg-type]

assert_type(counter.incr.remote(), ObjectRef[int])
assert_type(counter.incr.remote(2), ObjectRef[int])
assert_type(counter.incr.remote(by=int_ref), ObjectRef[int])
assert_type(counter.incr.options(name="i").remote(None), ObjectRef[int])
assert_type(counter.slow_incr.remote(1), ObjectRef[str])  # async: the awaited result
assert_type(counter.history.remote(3), ObjectRefGenerator[int])
assert_type(counter.feed.remote(), ObjectRefGenerator[bytes])
assert_type(counter.annotated.remote("k"), ObjectRef[dict[str, int]])
assert_type(counter.helper.remote(1), ObjectRef[int])
assert_type(counter.both.remote("k"), list[ObjectRef[Any]])
key_ref, value_ref = counter.both.remote("k")
assert_type(counter.reset.remote(), None)
assert_type(counter.incr.options(num_returns=2).remote(), list[ObjectRef[Any]])
counter.both.remote(1)  # type: ignore[call-overload]
assert_type(ray.get(counter.incr.remote()), int)
counter.incr.remote("2")  # type: ignore[call-overload]
counter.incr.remote(str_ref)  # type: ignore[arg-type]
counter.slow_incr.remote()  # type: ignore[call-overload]
counter.history.options(num_returns="streaming").remote("3")  # type: ignore[call-overload]
counter.decr.remote()  # type: ignore[attr-defined]
counter.value  # type: ignore[attr-defined]
counter.incr()  # type: ignore[operator]


@ray.remote(num_cpus=0, max_restarts=1)
class WithOptions:
    def ping(self) -> bool:
        return True


with_options = WithOptions.remote()
assert_type(with_options, ActorHandle[WithOptions])
assert_type(with_options.ping.remote(), ObjectRef[bool])
WithOptions.remote(1)  # type: ignore[call-arg]

# __ray_ready__ and friends: any arguments, ObjectRef[Any].
ray.get(counter.__ray_ready__.remote())


class Plain:
    def __init__(self, name: str) -> None:
        self.name = name

    def greet(self, other: str) -> str:
        return f"{self.name}, {other}"


PlainActor = ray.remote(Plain)
plain = PlainActor.remote("a")
assert_type(plain, ActorHandle[Plain])
assert_type(plain.greet.remote("b"), ObjectRef[str])
assert_type(PlainActor.options(name="p").remote(str_ref), ActorHandle[Plain])
PlainActor.remote(1)  # type: ignore[arg-type]
PlainActor("a")  # type: ignore[operator]
plain.greet.remote(1)  # type: ignore[call-overload]


def use(handle: ActorHandle[Plain]) -> ObjectRef[str]:
    return handle.greet.remote("c")


# A handle from get_actor is ActorHandle[Any]: anything goes.
named = ray.get_actor("c")
named.whatever.remote(1, 2)
