"""The async API under anyio, on both of its backends: asyncio and trio (#19).

Tested with anyio's pytest plugin (``@pytest.mark.anyio``, the ``anyio_backend``
fixture): ``await ref``, the ``*_async`` twins, ``async for`` over a streaming
generator, an async actor's calls from the driver, and cancellation by the
backend's own scopes.
"""

from __future__ import annotations

import time

import anyio
import pytest

import asyncray
from asyncray.exceptions import GetTimeoutError, RayTaskError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    if request.param == "trio":
        pytest.importorskip("trio")
    return request.param


@asyncray.remote
def double(x):
    return 2 * x


@asyncray.remote
def fails():
    raise ValueError("no")


@asyncray.remote
def sleeps(seconds):
    time.sleep(seconds)
    return seconds


@asyncray.remote
def count(n):
    yield from range(n)


@asyncray.remote
class Adder:
    async def add(self, x):
        await anyio.sleep(0)  # the actor's own loop is asyncio, whatever the driver runs
        return x + 1


@pytest.mark.anyio
async def test_await_refs_and_the_async_twins(ray_start, anyio_backend):
    assert await double.remote(21) == 42
    assert await asyncray.get_async([double.remote(1), double.remote(2)]) == [2, 4]
    ready, not_ready = await asyncray.wait_async([double.remote(3), sleeps.remote(5)])
    assert await ready[0] == 6 and len(not_ready) == 1
    ref = await asyncray.put_async("x")
    assert await ref == "x"
    with pytest.raises(RayTaskError, match="no"):
        await fails.remote()
    with pytest.raises(GetTimeoutError):
        await asyncray.get_async(sleeps.remote(5), timeout=0.1)


@pytest.mark.anyio
async def test_async_for_over_a_generator_and_an_async_actor(ray_start, anyio_backend):
    assert [await ref async for ref in count.remote(4)] == [0, 1, 2, 3]
    owner = Adder.options(name="adder").remote()  # the owner's handle keeps it alive
    adder = await asyncray.get_actor_async("adder")
    assert await adder.add.remote(1) == 2
    got = []

    async def call(i):
        got.append(await adder.add.remote(i))

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(call, i)
    assert sorted(got) == [1, 2, 3, 4, 5]
    del owner


@pytest.mark.anyio
async def test_a_cancel_scope_stops_waiting_and_the_session_goes_on(ray_start, anyio_backend):
    start = time.monotonic()
    with anyio.move_on_after(0.2) as scope:
        await sleeps.remote(5)
    assert scope.cancelled_caught and time.monotonic() - start < 2
    assert await double.remote(5) == 10


@pytest.mark.timeout(120)
def test_a_driver_connected_to_a_head_awaits_under_trio(head):
    pytest.importorskip("trio")
    out = head.run_driver(
        """
import trio
import asyncray as ray
ray.init(address="auto")

@ray.remote
def double(x):
    return 2 * x

async def main():
    print(await double.remote(21), await ray.get_async([double.remote(1), double.remote(2)]))

trio.run(main)
"""
    ).stdout
    assert out.splitlines() == ["42 [2, 4]"]
