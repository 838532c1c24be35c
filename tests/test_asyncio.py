"""Refs on the user's event loop: await, the asyncio combinators, and async twins."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest
from _helpers import wait_for_file

import asyncray
from asyncray.exceptions import GetTimeoutError, RayTaskError


@asyncray.remote
def echo(x):
    return x


@asyncray.remote
def hold(path):
    return "released" if wait_for_file(path) else "hold timed out"


@asyncray.remote
def raise_key_error():
    raise KeyError("missing")


async def test_await_a_ref(ray_start):
    assert await echo.remote(1) == 1
    assert await asyncray.put("put") == "put"


async def test_await_a_failing_ref_raises_the_users_exception_type(ray_start):
    with pytest.raises(KeyError) as info:
        await raise_key_error.remote()
    assert isinstance(info.value, RayTaskError)


async def test_await_does_not_block_the_event_loop(ray_start, tmp_path):
    go = tmp_path / "go"
    ref = hold.remote(str(go))

    async def release():
        go.touch()  # only runs if awaiting the ref left the loop free

    value, _ = await asyncio.gather(ref, release())
    assert value == "released"


async def test_gather(ray_start):
    refs = [echo.remote(i) for i in range(5)]
    assert await asyncio.gather(*refs) == [0, 1, 2, 3, 4]


async def test_wait_for(ray_start):
    assert await asyncio.wait_for(echo.remote("w"), 10) == "w"


async def test_wait_for_timeout_does_not_cancel_the_task(ray_start, tmp_path):
    ref = hold.remote(str(tmp_path / "go"))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ref, 0.1)
    (tmp_path / "go").touch()
    assert await asyncio.wait_for(ref, 10) == "released"


async def test_asyncio_wait_on_ensured_futures(ray_start):
    futures = [asyncio.ensure_future(echo.remote(i)) for i in range(3)]
    done, pending = await asyncio.wait(futures, timeout=10)
    assert not pending
    assert sorted(f.result() for f in done) == [0, 1, 2]


async def test_asyncio_wait_on_refs_directly(ray_start, tmp_path):
    # Ray's refs break here on Python 3.11+ (ray#31606); asyncray's must not.
    fast = echo.remote("fast")
    slow = hold.remote(str(tmp_path / "go"))
    done, pending = await asyncio.wait([fast, slow], return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    assert len(pending) == 1
    assert [f.result() for f in done] == ["fast"]
    (tmp_path / "go").touch()
    done, pending = await asyncio.wait(pending, timeout=10)
    assert [f.result() for f in done] == ["released"]


async def test_as_completed(ray_start, tmp_path):
    slow = hold.remote(str(tmp_path / "go"))
    fast = echo.remote("fast")
    results = []
    for next_done in asyncio.as_completed([slow, fast], timeout=10):
        results.append(await next_done)
        (tmp_path / "go").touch()
    assert results == ["fast", "released"]


async def test_future_is_a_concurrent_future_with_the_value(ray_start):
    future = echo.remote(9).future()
    assert isinstance(future, concurrent.futures.Future)
    assert await asyncio.wrap_future(future) == 9


def test_future_carries_the_users_exception_type(ray_start):
    future = raise_key_error.remote().future()
    with pytest.raises(KeyError):
        future.result(timeout=10)


async def test_get_async_single_and_list(ray_start):
    a, b = echo.remote("a"), echo.remote("b")
    assert await asyncray.get_async(a) == "a"
    assert await asyncray.get_async([b, a], timeout=None) == ["b", "a"]
    assert await asyncray.get_async([]) == []


async def test_get_async_timeout_raises_get_timeout_error(ray_start, tmp_path):
    ref = hold.remote(str(tmp_path / "go"))
    start = time.monotonic()
    with pytest.raises(GetTimeoutError):
        await asyncray.get_async(ref, timeout=0.1)
    assert time.monotonic() - start < 2
    (tmp_path / "go").touch()
    assert await asyncray.get_async(ref, timeout=10) == "released"


async def test_get_async_raises_the_users_exception_type(ray_start):
    with pytest.raises(KeyError):
        await asyncray.get_async([echo.remote(1), raise_key_error.remote()])


async def test_get_async_validates_like_get(ray_start):
    with pytest.raises(ValueError, match="Invalid type of object refs"):
        await asyncray.get_async((echo.remote(1),))


async def test_wait_async_returns_ready_and_not_ready_in_input_order(ray_start, tmp_path):
    pending = hold.remote(str(tmp_path / "go"))
    done = echo.remote("d")
    await asyncray.get_async(done)
    ready, not_ready = await asyncray.wait_async([pending, done], num_returns=1, timeout=None)
    assert ready == [done]
    assert not_ready == [pending]
    ready, not_ready = await asyncray.wait_async([pending, done], num_returns=2, timeout=0.1)
    assert ready == [done]
    assert not_ready == [pending]
    (tmp_path / "go").touch()


async def test_wait_async_validates_like_wait(ray_start):
    ref = echo.remote(1)
    with pytest.raises(TypeError, match="got a single"):
        await asyncray.wait_async(ref)
    with pytest.raises(ValueError, match="unique"):
        await asyncray.wait_async([ref, ref])
    assert await asyncray.wait_async([]) == ([], [])


async def test_blocking_get_inside_an_event_loop_warns_and_still_returns(ray_start):
    ref = echo.remote("v")
    with pytest.warns(RuntimeWarning, match="get_async"):
        value = asyncray.get(ref)
    assert value == "v"
