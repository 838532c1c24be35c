"""Work submitted from inside tasks: .remote(), get, put and wait in a worker."""

from __future__ import annotations

import os

import pytest

import asyncray


@asyncray.remote
def square(x):
    return x * x


@asyncray.remote
def fib(n):
    if n < 2:
        return n
    return sum(asyncray.get([fib.remote(n - 1), fib.remote(n - 2)]))


@asyncray.remote
def factorial(n):
    if n <= 1:
        return 1
    return n * asyncray.get(factorial.remote(n - 1))


def test_task_submits_and_gets_a_child_task(ray_start):
    @asyncray.remote
    def parent(x):
        return asyncray.get(square.remote(x)) + 1

    assert asyncray.get(parent.remote(3)) == 10


def test_task_puts_and_gets_an_object(ray_start):
    @asyncray.remote
    def put_and_get():
        ref = asyncray.put({"from": os.getpid()})
        return asyncray.get(ref)["from"] == os.getpid()

    assert asyncray.get(put_and_get.remote()) is True


def test_object_put_in_a_task_is_readable_by_the_driver(ray_start):
    @asyncray.remote
    def put_inside():
        return [asyncray.put("made in a worker")]

    (ref,) = asyncray.get(put_inside.remote())
    assert asyncray.get(ref) == "made in a worker"


def test_task_waits_on_child_tasks(ray_start):
    @asyncray.remote
    def parent():
        refs = [square.remote(i) for i in range(4)]
        ready, not_ready = asyncray.wait(refs, num_returns=4, timeout=20)
        return ready == refs and not_ready == [], asyncray.get(ready)

    assert asyncray.get(parent.remote()) == (True, [0, 1, 4, 9])


def test_task_passes_driver_refs_to_its_children(ray_start):
    @asyncray.remote
    def parent(boxed):
        return asyncray.get(square.remote(boxed[0]))

    ref = asyncray.put(6)
    assert asyncray.get(parent.remote([ref])) == 36


@pytest.mark.timeout(30)
def test_recursive_fib_completes_on_two_cpus(ray_start):
    # Every parent blocks in get while holding a CPU; without lending its CPU
    # to its children this deadlocks at depth two.
    assert asyncray.get(fib.remote(10), timeout=25) == 55


@pytest.mark.timeout(30)
def test_recursive_factorial(ray_start):
    assert asyncray.get(factorial.remote(8), timeout=25) == 40320


@pytest.mark.timeout(30)
def test_parent_holding_every_cpu_can_still_get_a_child(ray_start):
    @asyncray.remote(num_cpus=2)
    def greedy_parent():
        return asyncray.get(square.remote(5), timeout=20)

    assert asyncray.get(greedy_parent.remote(), timeout=25) == 25
