"""Misuse gets a message that names the mistake and the fix.

A misspelt actor method lists the actor's methods; wrong arguments name the
function and its signature, at ``.remote()``; a ref or placement group kept
across ``shutdown()`` says it belongs to an earlier session.
"""

from __future__ import annotations

import functools

import pytest
from conftest import NUM_CPUS

import asyncray
from asyncray.exceptions import ObjectLostError
from asyncray.util.placement_group import placement_group


@asyncray.remote
def one(x):
    return x


@asyncray.remote
class Account:
    def __init__(self, owner, balance=0):
        self.balance = balance

    def deposit(self, amount):
        self.balance += amount
        return self.balance

    def balance_of(self):
        return self.balance

    @staticmethod
    def bank(code, *, country="NL"):
        return f"{country}{code}"

    @classmethod
    def kind(cls, short=False):
        return "acct" if short else cls.__name__

    fee = functools.partial(max, 0)  # a plain callable on the class: no self


def test_a_misspelt_method_names_the_class_and_lists_its_methods(ray_start):
    account = Account.remote("ann")
    with pytest.raises(AttributeError) as info:
        account.deposti.remote(1)
    message = str(info.value)
    assert "'ActorHandle' object has no attribute 'deposti'" in message  # Ray's words first
    assert "Account" in message
    assert "Did you mean 'deposit'?" in message
    assert "balance_of, bank, deposit, fee, kind" in message
    assert "__ray" not in message
    assert not hasattr(account, "nope")  # hasattr still works


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ((1, 2, 3), {}, "too many positional arguments"),
        ((), {}, "missing a required argument: 'x'"),
        ((1,), {"y": 2}, "got an unexpected keyword argument 'y'"),
    ],
)
def test_wrong_task_arguments_name_the_function(ray_start, args, kwargs, problem):
    with pytest.raises(TypeError) as info:
        one.remote(*args, **kwargs)
    assert str(info.value) == f"one.remote(): {problem}. The signature is one(x)."


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda a: a.deposit.remote(1, 2),
            "Account.deposit.remote(): too many positional arguments. "
            "The signature is Account.deposit(amount).",
        ),
        (
            lambda a: a.balance_of.remote(5),
            "Account.balance_of.remote(): too many positional arguments. "
            "The signature is Account.balance_of().",
        ),
        (
            lambda a: a.deposit.remote(sum=3),
            "Account.deposit.remote(): missing a required argument: 'amount'. "
            "The signature is Account.deposit(amount).",
        ),
        (
            lambda a: a.bank.remote(),
            "Account.bank.remote(): missing a required argument: 'code'. "
            "The signature is Account.bank(code, *, country='NL').",
        ),
    ],
)
def test_wrong_actor_method_arguments_raise_at_the_call_site(ray_start, call, message):
    account = Account.remote("ann")
    with pytest.raises(TypeError) as info:
        call(account)
    assert str(info.value) == message
    # Valid calls, positional and by keyword, still go through.
    assert asyncray.get(account.deposit.remote(2)) == 2
    assert asyncray.get(account.deposit.remote(amount=3)) == 5
    assert asyncray.get(account.bank.remote(7, country="BE")) == "BE7"
    assert asyncray.get(account.kind.remote(True)) == "acct"
    assert asyncray.get(account.fee.remote(-5)) == 0


def test_wrong_actor_constructor_arguments_name_the_class(ray_start):
    with pytest.raises(TypeError) as info:
        Account.remote()
    assert str(info.value) == (
        "Account.remote(): missing a required argument: 'owner'. "
        "The signature is Account(owner, balance=0)."
    )


def test_a_ref_from_an_earlier_session_says_so(shutdown_only):
    asyncray.init(num_cpus=NUM_CPUS)
    put_ref = asyncray.put("old")
    task_ref = one.remote("old")
    assert asyncray.get(task_ref) == "old"
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(10)
    asyncray.shutdown()
    asyncray.init(num_cpus=NUM_CPUS)
    for ref in (put_ref, task_ref):
        with pytest.raises(ObjectLostError, match="earlier asyncray session"):
            asyncray.get(ref, timeout=10)
    with pytest.raises(ObjectLostError, match="earlier asyncray session"):
        asyncray.get(one.remote(put_ref), timeout=10)  # as a task's argument
    with pytest.raises(ValueError, match="earlier asyncray session"):
        pg.wait(1)
    with pytest.raises(ValueError, match="earlier asyncray session"):
        one.options(placement_group=pg).remote(1)
    asyncray.util.remove_placement_group(pg)  # gone with its session: nothing to do
    # A ref of this session that was freed keeps the usual message.
    fresh = asyncray.put(1)
    stale = asyncray.ObjectRef(fresh.binary()[:-4] + b"\x09\x00\x00\x00")
    with pytest.raises(ObjectLostError, match="freed"):
        asyncray.get(stale, timeout=10)
    assert asyncray.get(one.remote(2)) == 2
