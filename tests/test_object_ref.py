"""ObjectRef identity, pickling, and how refs travel as task arguments and results."""

from __future__ import annotations

import pickle
import re

import pytest

import asyncray
from asyncray import ObjectRef


def test_ref_equality_and_hash_are_by_id(ray_start):
    ref = asyncray.put("value")
    same = ObjectRef(ref.binary())
    assert same == ref
    assert hash(same) == hash(ref)
    assert {ref: 1}[same] == 1
    assert len({ref, same}) == 1


def test_two_puts_of_one_value_give_two_refs(ray_start):
    a, b = asyncray.put(1), asyncray.put(1)
    assert a != b
    assert a.hex() != b.hex()


def test_hex_is_56_hex_chars_and_appears_in_repr(ray_start):
    ref = asyncray.put(None)
    assert re.fullmatch(r"[0-9a-f]{56}", ref.hex())
    assert bytes.fromhex(ref.hex()) == ref.binary()
    assert ref.hex() in repr(ref)


def test_ref_survives_a_pickle_round_trip(ray_start):
    ref = asyncray.put([1, 2, 3])
    copy = pickle.loads(pickle.dumps(ref))
    assert copy == ref
    assert asyncray.get(copy) == [1, 2, 3]


def test_put_copies_the_value_at_call_time(ray_start):
    value = {"k": 1}
    ref = asyncray.put(value)
    value["k"] = 2
    assert asyncray.get(ref) == {"k": 1}


def test_put_of_a_ref_raises_type_error(ray_start):
    ref = asyncray.put(1)
    with pytest.raises(TypeError, match=r"wrap the .*ObjectRef in a list"):
        asyncray.put(ref)


def test_top_level_ref_arguments_are_resolved(ray_start):
    @asyncray.remote
    def show(positional, keyword=None):
        return type(positional).__name__, positional, type(keyword).__name__, keyword

    ref = asyncray.put(7)
    assert asyncray.get(show.remote(ref, keyword=ref)) == ("int", 7, "int", 7)


def test_task_results_chain_as_arguments(ray_start):
    @asyncray.remote
    def inc(x):
        return x + 1

    ref = asyncray.put(0)
    for _ in range(5):
        ref = inc.remote(ref)
    assert asyncray.get(ref) == 5


def test_nested_refs_arrive_as_refs_and_can_be_fetched(ray_start):
    @asyncray.remote
    def inspect(items, mapping):
        return (
            [isinstance(i, ObjectRef) for i in items],
            isinstance(mapping["r"], ObjectRef),
            [*asyncray.get(items), asyncray.get(mapping["r"])],
        )

    a, b = asyncray.put("a"), asyncray.put("b")
    assert asyncray.get(inspect.remote([a, b], {"r": a})) == ([True, True], True, ["a", "b", "a"])


def test_same_ref_may_be_passed_several_times(ray_start):
    @asyncray.remote
    def total(*xs):
        return sum(xs)

    ref = asyncray.put(3)
    assert asyncray.get(total.remote(ref, ref, ref)) == 9


def test_a_returned_ref_is_not_unwrapped(ray_start):
    @asyncray.remote
    def inner():
        return "payload"

    @asyncray.remote
    def outer():
        return inner.remote()

    result = asyncray.get(outer.remote())
    assert isinstance(result, ObjectRef)
    assert asyncray.get(result) == "payload"


def test_a_ref_put_inside_a_list_survives_the_round_trip(ray_start):
    inner = asyncray.put("deep")
    outer = asyncray.put([inner])
    (got,) = asyncray.get(outer)
    assert got == inner
    assert asyncray.get(got) == "deep"
