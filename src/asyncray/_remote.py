"""``@remote`` and ``@method``: the decorators, with Ray's forms and errors."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar, overload

from . import _options
from .remote_function import RemoteFunction

if TYPE_CHECKING:
    from .actor import ActorClass
    from .remote_function import ListOfRefs, NoRefs

_P = ParamSpec("_P")
_R = TypeVar("_R")
_C = TypeVar("_C")
_F = TypeVar("_F", bound=Callable[..., Any])


class _RemoteDecorator(Protocol):
    """What ``remote(**options)`` returns, for type checkers: ``@remote`` with options."""

    @overload
    def __call__(self, target: type[_C], /) -> ActorClass[_C]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, target: Callable[_P, _R], /) -> RemoteFunction[_P, _R]: ...


class _RemoteDecoratorListOfRefs(Protocol):
    """What ``remote(num_returns=n)`` returns (n > 1), for type checkers."""

    def __call__(self, target: Callable[_P, Any], /) -> ListOfRefs[_P]: ...


class _RemoteDecoratorNoRefs(Protocol):
    """What ``remote(num_returns=0)`` returns, for type checkers."""

    def __call__(self, target: Callable[_P, Any], /) -> NoRefs[_P]: ...


def _make_remote(target: Any, options: dict[str, Any]) -> Any:
    if inspect.isclass(target):
        from .actor import ActorClass

        return ActorClass._from_class(target, options)
    if inspect.isfunction(target) or inspect.isbuiltin(target) or callable(target):
        if inspect.iscoroutinefunction(target):
            raise ValueError(
                "'async def' should not be used for remote tasks. You can wrap the async function "
                "with `asyncio.run(f())`. See more at: "
                "https://docs.ray.io/en/latest/ray-core/actors/async_api.html "
            )
        _options.validate_task_options(options)
        return RemoteFunction(target, options)
    raise TypeError("The @ray.remote decorator must be applied to either a function or a class.")


# The types (README, "Types"): a class gives ``ActorClass[C]``, a function
# ``RemoteFunction[P, R]`` with its parameters and result.
@overload
def remote(target: type[_C], /) -> ActorClass[_C]: ...  # type: ignore[overload-overlap]
@overload
def remote(target: Callable[_P, _R], /) -> RemoteFunction[_P, _R]: ...
@overload
def remote(
    *, num_returns: Literal[1, "streaming", "dynamic"] = ..., **options: Any
) -> _RemoteDecorator: ...
@overload
def remote(*, num_returns: Literal[0], **options: Any) -> _RemoteDecoratorNoRefs: ...
@overload
def remote(*, num_returns: int, **options: Any) -> _RemoteDecoratorListOfRefs: ...


def remote(*args: Any, **kwargs: Any) -> Any:
    """Make a function a remote task, or a class an actor.

    Forms: ``@remote``, ``remote(fn)``, ``@remote(num_cpus=..., ...)``.
    """
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make_remote(args[0], {})
    if args or not kwargs:
        raise AssertionError(
            "The @ray.remote decorator must be applied either with no arguments and no "
            "parentheses, for example '@ray.remote', or it must be applied using some of "
            "the arguments in the list ['max_calls', 'max_restarts', 'max_retries', "
            "'max_task_retries', 'memory', 'name', 'num_cpus', 'num_gpus', 'num_returns', "
            "'resources', 'runtime_env', 'scheduling_strategy', ...], for example "
            "'@ray.remote(num_returns=2, resources={\"CustomResource\": 1})'."
        )

    def decorator(target: Any) -> Any:
        return _make_remote(target, dict(kwargs))

    return decorator


_METHOD_OPTIONS = frozenset(
    {
        "num_returns",
        "concurrency_group",
        "max_task_retries",
        "retry_exceptions",
        "_generator_backpressure_num_objects",
        "_num_objects_per_yield",
        "enable_task_events",
        "tensor_transport",
        "timeout_s",
    }
)


@overload
def method(fn: _F, /) -> _F: ...
@overload
def method(**options: Any) -> Callable[[_F], _F]: ...


def method(*args: Any, **kwargs: Any) -> Any:
    """Annotate an actor method: ``@method(num_returns=2, concurrency_group="io")``.

    Bare ``@method`` is accepted too (it changes nothing).
    """
    if len(args) == 1 and not kwargs and callable(args[0]):
        return args[0]
    if args:
        raise AssertionError("The @ray.method decorator only takes keyword arguments.")
    for key in kwargs:
        if key not in _METHOD_OPTIONS:
            raise AssertionError(
                f"Unexpected keyword argument to @ray.method: '{key}'. The supported keywords "
                f"are {sorted(_METHOD_OPTIONS)}."
            )
    from .actor import _check_method_options

    _check_method_options(kwargs)

    def annotate(fn: Any) -> Any:
        fn.__ray_method_options__ = dict(kwargs)
        return fn

    return annotate
