"""get and wait: accepted arguments, timeouts, ordering, and failures."""

from __future__ import annotations

import time

import pytest
from _helpers import wait_for_file

import asyncray
from asyncray.exceptions import GetTimeoutError, RayError, RayTaskError

# A call that should return at once must do so well inside this, even on a
# loaded two-core machine; tasks held open by ``hold`` last ~10 s.
PROMPT_S = 2.0


@asyncray.remote
def echo(x):
    return x


@asyncray.remote
def hold(path):
    """Run until ``path`` exists (or ~10 s), so the test decides when it ends."""
    return "released" if wait_for_file(path) else "hold timed out"


@asyncray.remote
def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


@asyncray.remote
def fail(message):
    raise ValueError(message)


# -- get ---------------------------------------------------------------------


def test_get_single_ref(ray_start):
    assert asyncray.get(echo.remote("x")) == "x"


def test_get_list_keeps_order_and_duplicates(ray_start):
    a, b = echo.remote(1), echo.remote(2)
    assert asyncray.get([b, a, b]) == [2, 1, 2]


def test_get_list_of_local_values_of_every_kind(ray_start):
    # Answered from the driver's local store: plain pickles, a payload with
    # out-of-band buffers, a finished task's result, in order, with a duplicate.
    import pickle

    buffer = pickle.PickleBuffer(bytearray(b"abc"))
    done = echo.remote([1, 2])
    asyncray.get(done)
    refs = [asyncray.put(300), asyncray.put(buffer), done, asyncray.put("x")]
    values = asyncray.get(refs + refs[:1])
    assert values[0] == 300 and bytes(values[1]) == b"abc"
    assert values[2:] == [[1, 2], "x", 300]
    pending = echo.remote(7)
    assert asyncray.get([*refs[:1], pending]) == [300, 7]


def test_get_empty_list(ray_start):
    assert asyncray.get([]) == []


@pytest.mark.parametrize(
    "make_bad",
    [lambda: (asyncray.put(1),), lambda: 5, lambda: "ref", lambda: {asyncray.put(1): 1}],
    ids=["tuple-of-refs", "int", "str", "dict"],
)
def test_get_of_a_non_list_raises_value_error(ray_start, make_bad):
    with pytest.raises(ValueError, match="Invalid type of object refs"):
        asyncray.get(make_bad())


def test_get_of_a_list_holding_a_non_ref_raises_type_error(ray_start):
    with pytest.raises(TypeError, match="Attempting to call `get` on the value 1"):
        asyncray.get([asyncray.put(0), 1])


def test_get_timeout_raises_get_timeout_error_which_is_a_timeout_error(ray_start, tmp_path):
    ref = hold.remote(str(tmp_path / "go"))
    start = time.monotonic()
    with pytest.raises(GetTimeoutError, match="Get timed out") as info:
        asyncray.get(ref, timeout=0.2)
    assert time.monotonic() - start < PROMPT_S
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, RayError)
    # A timed-out get does not cancel the task.
    (tmp_path / "go").touch()
    assert asyncray.get(ref, timeout=10) == "released"


def test_get_timeout_zero_returns_a_ready_value(ray_start):
    ref = asyncray.put("ready")
    assert asyncray.get(ref, timeout=0) == "ready"


def test_get_timeout_zero_on_a_pending_ref_raises(ray_start, tmp_path):
    ref = hold.remote(str(tmp_path / "go"))
    with pytest.raises(GetTimeoutError):
        asyncray.get(ref, timeout=0)
    (tmp_path / "go").touch()
    assert asyncray.get(ref) == "released"


def test_list_get_raises_as_soon_as_one_element_failed(ray_start, tmp_path):
    slow = hold.remote(str(tmp_path / "never"))
    bad = fail.remote("early")
    start = time.monotonic()
    with pytest.raises(ValueError, match="early"):
        asyncray.get([slow, bad])
    assert time.monotonic() - start < PROMPT_S


def test_list_get_raises_the_first_failure_in_input_order(ray_start):
    first, second = fail.remote("first"), fail.remote("second")
    asyncray.wait([first, second], num_returns=2)
    with pytest.raises(ValueError, match="first"):
        asyncray.get([first, second])


# -- wait --------------------------------------------------------------------


def test_wait_rejects_a_single_ref(ray_start):
    with pytest.raises(TypeError, match="got a single"):
        asyncray.wait(asyncray.put(1))


def test_wait_rejects_a_tuple(ray_start):
    with pytest.raises(TypeError, match="tuple"):
        asyncray.wait((asyncray.put(1),))


def test_wait_rejects_a_negative_timeout_before_checking_elements(ray_start):
    with pytest.raises(ValueError, match="nonnegative"):
        asyncray.wait([1], timeout=-1)


def test_wait_rejects_a_non_ref_element(ray_start):
    with pytest.raises(TypeError, match="list containing <class 'int'>"):
        asyncray.wait([asyncray.put(1), 2])


def test_wait_on_an_empty_list_returns_two_empty_lists(ray_start):
    assert asyncray.wait([]) == ([], [])
    assert asyncray.wait([], num_returns=0) == ([], [])


def test_wait_rejects_duplicates_before_num_returns(ray_start):
    ref = asyncray.put(1)
    with pytest.raises(ValueError, match="unique"):
        asyncray.wait([ref, ref], num_returns=0)


def test_wait_rejects_num_returns_zero(ray_start):
    with pytest.raises(ValueError, match="Invalid number of objects to return 0"):
        asyncray.wait([asyncray.put(1)], num_returns=0)


def test_wait_rejects_num_returns_above_the_list_length(ray_start):
    with pytest.raises(ValueError, match="num_returns cannot be greater"):
        asyncray.wait([asyncray.put(1)], num_returns=2)


def test_wait_returns_at_most_num_returns_in_input_order(ray_start):
    refs = [asyncray.put(i) for i in range(4)]
    ready, not_ready = asyncray.wait(refs, num_returns=2)
    assert ready == refs[:2]
    assert not_ready == refs[2:]


def test_wait_keeps_input_order_not_completion_order(ray_start, tmp_path):
    pending = hold.remote(str(tmp_path / "go"))
    done_late = echo.remote("x")
    done_early = asyncray.put("y")
    asyncray.get(done_late)
    refs = [done_late, pending, done_early]
    ready, not_ready = asyncray.wait(refs, num_returns=2)
    assert ready == [done_late, done_early]
    assert not_ready == [pending]
    (tmp_path / "go").touch()


def test_wait_with_timeout_may_return_fewer(ray_start, tmp_path):
    pending = hold.remote(str(tmp_path / "go"))
    done = asyncray.put(1)
    start = time.monotonic()
    ready, not_ready = asyncray.wait([pending, done], num_returns=2, timeout=0.2)
    assert time.monotonic() - start < PROMPT_S
    assert ready == [done]
    assert not_ready == [pending]
    ready, not_ready = asyncray.wait([pending], timeout=0)
    assert (ready, not_ready) == ([], [pending])
    (tmp_path / "go").touch()


def test_wait_blocks_until_num_returns_are_ready(ray_start):
    refs = [sleep_then.remote(0.05 * i, i) for i in range(3)]
    ready, not_ready = asyncray.wait(refs, num_returns=3, timeout=20)
    assert ready == refs
    assert not_ready == []


def test_a_failed_task_counts_as_ready(ray_start, tmp_path):
    pending = hold.remote(str(tmp_path / "go"))
    bad = fail.remote("boom")
    ready, not_ready = asyncray.wait([pending, bad], num_returns=1, timeout=10)
    assert ready == [bad]
    assert not_ready == [pending]
    with pytest.raises(RayTaskError):
        asyncray.get(bad)
    (tmp_path / "go").touch()


def test_a_wait_loop_over_a_list_changed_in_between_sees_the_change(ray_start):
    refs = [asyncray.put(i) for i in range(5)]
    ready, not_ready = asyncray.wait(refs)
    assert ready == [refs[0]] and not_ready == refs[1:]
    not_ready[0] = not_ready[1]  # now a duplicate: must be caught, not served from a cache
    with pytest.raises(ValueError, match="unique"):
        asyncray.wait(not_ready)
    not_ready[0] = "not a ref"
    with pytest.raises(TypeError):
        asyncray.wait(not_ready)
    not_ready[0] = refs[1]
    ready, rest = asyncray.wait(not_ready, num_returns=4)
    assert ready == refs[1:] and rest == []


def test_a_wait_list_with_a_generator_added_in_between_is_checked_again(ray_start):
    @asyncray.remote
    def items():
        yield 1

    refs = [asyncray.put(i) for i in range(3)]
    _, not_ready = asyncray.wait(refs)
    gen = items.remote()
    not_ready.append(gen)  # the list changed: no carried-over ids for it
    ready, rest = asyncray.wait(not_ready, num_returns=3)
    assert gen in ready + rest and len(ready) == 3
