"""@remote on functions: decorator forms, option validation, .options(), returns."""

from __future__ import annotations

import os

import pytest
from _helpers import wait_for_file

import asyncray
from asyncray.exceptions import RayTaskError


@asyncray.remote
def module_level(x, y=10):
    return x + y


def test_bare_decorator_runs_in_another_process(ray_start):
    @asyncray.remote
    def whoami():
        return os.getpid()

    assert asyncray.get(whoami.remote()) != os.getpid()


def test_decorator_with_options(ray_start):
    @asyncray.remote(num_cpus=0.5, max_retries=0)
    def f(x):
        return x * 2

    assert asyncray.get(f.remote(21)) == 42


def test_functional_form(ray_start):
    def plain(x):
        return x - 1

    remote_plain = asyncray.remote(plain)
    assert asyncray.get(remote_plain.remote(1)) == 0
    assert plain(5) == 4  # the original function is left callable


def test_module_level_function_with_keyword_and_default_args(ray_start):
    assert asyncray.get(module_level.remote(1)) == 11
    assert asyncray.get(module_level.remote(1, y=2)) == 3
    assert asyncray.get(module_level.remote(x=3, y=4)) == 7


def test_arguments_are_passed_by_value(ray_start):
    @asyncray.remote
    def mutate(items):
        items.append("task")
        return items

    mine = ["driver"]
    assert asyncray.get(mutate.remote(mine)) == ["driver", "task"]
    assert mine == ["driver"]


def test_empty_parentheses_raise_assertion_error():
    with pytest.raises(AssertionError, match="no arguments and no parentheses"):

        @asyncray.remote()
        def f():
            pass


def test_async_def_is_rejected():
    async def coro():
        return 1

    with pytest.raises(ValueError, match="async def"):
        asyncray.remote(coro)


def test_calling_a_remote_function_directly_raises_type_error():
    with pytest.raises(TypeError, match=r"module_level\.remote\(\)"):
        module_level(1)


def test_unknown_option_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="Invalid option keyword foo"):
        asyncray.remote(foo=1)(lambda: 1)
    with pytest.raises(ValueError, match="Invalid option keyword bar"):
        module_level.options(bar=2)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("num_cpus", "two"),
        ("num_gpus", [1]),
        ("max_retries", "3"),
        ("retry_exceptions", 1),
        ("resources", ["r"]),
    ],
)
def test_ill_typed_option_is_rejected_naming_it(option, value):
    with pytest.raises((TypeError, ValueError), match=option):
        asyncray.remote(**{option: value})(lambda: 1)
    with pytest.raises((TypeError, ValueError), match=option):
        module_level.options(**{option: value})


@pytest.mark.parametrize("option", ["num_cpus", "num_gpus"])
def test_negative_resource_is_rejected(option):
    with pytest.raises(ValueError, match=f"{option} cannot be negative"):
        asyncray.remote(**{option: -1})(lambda: 1)
    with pytest.raises(ValueError, match=f"{option} cannot be negative"):
        module_level.options(**{option: -1})


def test_max_retries_below_minus_one_is_rejected():
    with pytest.raises(ValueError, match="max_retries"):
        asyncray.remote(max_retries=-2)(lambda: 1)


def test_max_calls_is_not_allowed_in_options():
    with pytest.raises(ValueError, match="max_calls"):
        module_level.options(max_calls=2)


@pytest.mark.parametrize("key", ["CPU", "GPU"])
def test_cpu_and_gpu_are_not_custom_resources(key):
    with pytest.raises(ValueError, match=key):
        asyncray.remote(resources={key: 1})(lambda: 1)


def test_options_merge_over_decorator_options(ray_start):
    @asyncray.remote(num_returns=2)
    def pair():
        return asyncray.get_runtime_context().get_assigned_resources(), "second"

    a, b = pair.options(num_cpus=0.5).remote()
    assert asyncray.get(a) == {"CPU": 0.5}
    assert asyncray.get(b) == "second"
    # .options() returns a new wrapper; the decorated function is unchanged.
    a, b = pair.remote()
    assert asyncray.get(a) == {"CPU": 1.0}


def test_options_revalidate_the_merged_options():
    @asyncray.remote(num_cpus=1)
    def f():
        pass

    with pytest.raises(ValueError, match="num_cpus"):
        f.options(num_cpus=-0.5)
    with pytest.raises(ValueError, match="max_retries"):
        f.options(max_retries=-7)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing a required argument: 'x'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1,), {"z": 3}, "unexpected keyword argument 'z'"),
    ],
    ids=["missing", "too-many", "unexpected-keyword"],
)
def test_wrong_call_arguments_raise_at_remote(ray_start, args, kwargs, message):
    with pytest.raises(TypeError, match=message):
        module_level.remote(*args, **kwargs)


def test_num_returns_two_gives_a_list_of_two_refs(ray_start):
    @asyncray.remote(num_returns=2)
    def two():
        return "a", "b"

    refs = two.remote()
    assert isinstance(refs, list)
    assert len(refs) == 2
    assert all(isinstance(r, asyncray.ObjectRef) for r in refs)
    assert refs[0] != refs[1]
    assert asyncray.get(refs) == ["a", "b"]


def test_num_returns_zero_returns_none_and_still_runs(ray_start, tmp_path):
    marker = tmp_path / "ran"

    @asyncray.remote(num_returns=0)
    def side_effect(path):
        open(path, "w").close()
        return "discarded"

    assert side_effect.remote(str(marker)) is None
    assert wait_for_file(marker)


def test_num_returns_mismatch_fails_every_return_ref(ray_start):
    @asyncray.remote(num_returns=2)
    def not_a_pair():
        return 1

    a, b = not_a_pair.remote()
    with pytest.raises(RayTaskError):
        asyncray.get(a)
    with pytest.raises(RayTaskError):
        asyncray.get(b)


@asyncray.remote
def rest_and_key(a, *rest, key):
    return a, rest, key


@asyncray.remote
def rest_only(a, b=2, *rest):
    return a, b, rest


def test_argument_checks_know_var_positional_and_keyword_only(ray_start):
    with pytest.raises(TypeError, match="missing a required argument: 'key'"):
        rest_and_key.remote(1, 2, 3)
    assert asyncray.get(rest_and_key.remote(1, 2, 3, key=4)) == (1, (2, 3), 4)
    assert asyncray.get(rest_only.remote(1)) == (1, 2, ())
    assert asyncray.get(rest_only.remote(1, 5, 6, 7)) == (1, 5, (6, 7))
    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        rest_only.remote()
