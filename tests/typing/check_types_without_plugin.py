"""What a checker knows of asyncray's types from its annotations alone (README, "Types").

Checked by mypy without asyncray's plugin (``tests/test_static_checks.py``),
as an editor's checker sees the code: the results' types are exact, a ref is
accepted wherever a value is, and the arguments of ``.remote()`` are not
checked. Lines without an ignore must pass; each ``# type: ignore[code]``
must be needed (``--warn-unused-ignores``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

from typing_extensions import assert_type

import asyncray as ray
from asyncray import ActorClass, ActorHandle, ObjectRef, ObjectRefGenerator


@ray.remote
def scale(x: int, factor: float = 2.0) -> float:
    return x * factor


@ray.remote
def count(n: int) -> Iterator[int]:
    yield from range(n)


@ray.remote
def pairs(n: int) -> Generator[tuple[int, str], None, None]:
    for i in range(n):
        yield i, str(i)


@ray.remote
def unannotated(x):
    return x


@ray.remote(num_returns=2)
def split(x: int) -> tuple[int, int]:
    return x, x


ref = scale.remote(1)
assert_type(ref, ObjectRef[float])
assert_type(scale.options(num_cpus=1).remote(x=1), ObjectRef[float])
assert_type(scale.remote(ray.put(1)), ObjectRef[float])  # a ref for a value: accepted
assert_type(count.remote(3), ObjectRefGenerator[int])
assert_type(pairs.remote(3), ObjectRefGenerator[tuple[int, str]])
assert_type(unannotated.remote(1), ObjectRef[Any])
assert_type(scale.options(num_returns=2).remote(1), list[ObjectRef[Any]])
assert_type(scale.options(num_returns=0).remote(1), None)
first_ref, second_ref = split.remote(1)
assert_type(ray.get(ref), float)
assert_type(ray.get([ref]), list[float])
scale.remote("1")  # not flagged without the plugin: the arguments are not checked
scale(1)  # type: ignore[operator]  # a direct call is flagged


async def awaiting() -> None:
    assert_type(await ref, float)
    assert_type(await ray.get_async([ref]), list[float])


class Counter:
    def __init__(self, start: int) -> None:
        self.value = start

    def incr(self) -> int:
        self.value += 1
        return self.value


# mypy ignores what a class decorator returns: without the plugin, make the
# actor class with a call.
CounterActor = ray.remote(Counter)
assert_type(CounterActor, ActorClass[Counter])
counter = CounterActor.remote(1)
assert_type(counter, ActorHandle[Counter])
assert_type(CounterActor.options(name="c").remote(1), ActorHandle[Counter])
assert_type(counter.incr.remote(), ObjectRef[Any])  # a method's result: not known
Counter.remote(1)  # type: ignore[attr-defined]
CounterActor(1)  # type: ignore[operator]
counter.incr()  # type: ignore[operator]
