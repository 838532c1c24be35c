"""``@remote`` on functions: ``RemoteFunction``, ``.options()`` and ``.remote()``.

``.remote()`` does everything it can in the caller so mistakes surface at the
call site: it binds the arguments to the signature, checks the resource
request against the host, and pickles the arguments (top-level refs are
replaced by slots the worker fills with the resolved values). Then it posts
one ``SubmitTask`` and returns refs at once.

The function itself is pickled once per definition, on first use, and sent
to the runtime once per session.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Literal, NoReturn, ParamSpec, TypeVar, overload

from . import _api, _options, _scheduling, _task_context
from ._wire import protocol as P
from ._wire import runtime_env as _runtime_env
from ._wire import serialization as ser
from ._wire.serialization import DepSlot
from .object_ref import ObjectRef

if TYPE_CHECKING:
    from .object_ref_generator import ObjectRefGenerator

P_ = ParamSpec("P_")
# Covariant, so a function returning Generator[T, ...] matches the overloads for
# Iterator[T] (a checker that holds R invariant would not).
R = TypeVar("R", covariant=True)
# For the overloads of ``remote()`` that match the function's own type.
_P = ParamSpec("_P")
_T = TypeVar("_T")

_EMPTY_ARGS = ser.EMPTY_ARGS


def pack_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], what: str
) -> tuple[bytes, list[bytes]]:
    """Pickle call arguments; top-level refs become ``DepSlot`` s listed in the returned ids."""
    if not args and not kwargs:
        return _EMPTY_ARGS, []
    dep_ids: list[bytes] = []
    if ObjectRef in map(type, args):
        new_args = []
        for a in args:
            if type(a) is ObjectRef:
                new_args.append(DepSlot(len(dep_ids)))
                dep_ids.append(a._id)
            else:
                new_args.append(a)
        args = tuple(new_args)
    if kwargs and any(type(v) is ObjectRef for v in kwargs.values()):
        new_kwargs = {}
        for k, v in kwargs.items():
            if type(v) is ObjectRef:
                new_kwargs[k] = DepSlot(len(dep_ids))
                dep_ids.append(v._id)
            else:
                new_kwargs[k] = v
        kwargs = new_kwargs
    try:
        return ser.dumps((args, kwargs)), dep_ids
    except Exception as e:
        bad = _first_unpicklable(args, kwargs)
        raise TypeError(
            f"Could not serialize the argument {bad!r} for a task or actor {what}: "
            f"{type(e).__name__}: {e}"
        ) from e


def _first_unpicklable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    for value in (*args, *kwargs.values()):
        try:
            ser.dumps(value)
        except Exception:
            return value
    return (args, kwargs)


def check_call(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any], what: str
) -> None:
    """Bind a call's arguments to ``signature``; a ``TypeError`` names ``what`` and the signature.

    ``what`` is how the user called it, e.g. ``"f.remote()"``.
    """
    try:
        signature.bind(*args, **kwargs)
    except TypeError as e:
        name = what.split(".remote(")[0]
        raise TypeError(f"{what}: {e}. The signature is {name}{signature}.") from None


def underscore_remote_arguments(
    args: Any, kwargs: Any, what: str
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``args`` and ``kwargs`` of Ray's ``_remote(args=..., kwargs=...)``, checked.

    ``what`` names the call, e.g. ``"f._remote()"``.
    """
    if args is None:
        args = ()
    if kwargs is None:
        kwargs = {}
    if not isinstance(args, (list, tuple)):
        raise TypeError(
            f"{what}: args must be a list or tuple of positional arguments, got "
            f"{type(args).__name__}. Pass args=[{_options.shown(args)}] for one argument."
        )
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(
            f"{what}: kwargs must be a dict of keyword arguments by name, got "
            f"{_options.shown(kwargs)}."
        )
    return tuple(args), dict(kwargs)


def _max_retries_default() -> int:
    return int(os.environ.get("RAY_TASK_MAX_RETRIES", _options.DEFAULT_MAX_RETRIES))


class RemoteFunction(Generic[P_, R]):
    """A function decorated with ``@remote``; call ``.remote()`` to run it as a task."""

    def __init__(self, function: Callable[P_, R], options: dict[str, Any], _shared: Any = None):
        self._function = function
        self._options = options
        self._shared = _shared if _shared is not None else _Definition(function)
        self.__name__ = getattr(function, "__name__", "remote_function")
        self.__qualname__ = getattr(function, "__qualname__", self.__name__)
        self.__doc__ = getattr(function, "__doc__", None)
        self.__module__ = getattr(function, "__module__", __name__)
        self.__wrapped__ = function
        self._prepare()

    def _prepare(self) -> None:
        opts = self._options
        is_gen = self._shared.is_generator
        num_returns = opts.get("num_returns")
        if num_returns in ("streaming", "dynamic") and not is_gen:
            raise ValueError(
                f"num_returns='{num_returns}' can only be used with generator functions "
                f"(a function that uses `yield`); {self.__qualname__} is not one."
            )
        if num_returns is None:
            num_returns = "streaming" if is_gen else 1
        self._num_returns = num_returns
        self._request = _options.resource_request(opts)
        retries = opts.get("max_retries")
        self._max_retries = _max_retries_default() if retries is None else retries
        retry_exc = opts.get("retry_exceptions", False)
        if retry_exc is True:
            self._retry_exc = P.RETRY_ALL
        elif retry_exc:
            self._retry_exc = ser.dumps_function(tuple(retry_exc))
        else:
            self._retry_exc = P.RETRY_NONE
        self._name = opts.get("name") or self.__name__
        self._feasible_for: Any = None
        timeout = opts.get("timeout_s")
        self._timeout_s = P.NO_TIMEOUT if timeout is None else float(timeout)
        backpressure = opts.get("_generator_backpressure_num_objects")
        self._backpressure = -1 if backpressure is None else backpressure
        runtime_env = opts.get("runtime_env")
        self._env = None if runtime_env is None else _runtime_env.own_env(runtime_env)

    # Hidden from type checkers, so they flag a direct call (README, "Types").
    if not TYPE_CHECKING:

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise TypeError(
                "Remote functions cannot be called directly. Instead of running "
                f"'{self.__module__}.{self.__qualname__}()', try "
                f"'{self.__module__}.{self.__qualname__}.remote()'."
            )

    # ``num_returns`` decides what ``.remote()`` returns: a ref (1, the default),
    # a generator ("streaming", "dynamic"), ``None`` (0) or a list of refs.
    @overload
    def options(
        self, *, num_returns: Literal[1, "streaming", "dynamic"] = ..., **options: Any
    ) -> RemoteFunction[P_, R]: ...

    @overload
    def options(self, *, num_returns: Literal[0], **options: Any) -> NoRefs[P_]: ...

    @overload
    def options(self, *, num_returns: int, **options: Any) -> ListOfRefs[P_]: ...

    def options(self, **options: Any) -> Any:
        """A copy of this function with some options overridden (validated now)."""
        _options.validate_task_options(options, in_options_call=True)
        merged = {**self._options, **options}
        return RemoteFunction(self._function, merged, self._shared)

    def _remote(
        self,
        args: Any = None,
        kwargs: Any = None,
        serialized_runtime_env_info: str | None = None,
        **task_options: Any,
    ) -> Any:
        """Ray's underscore API (used by libraries and benchmarks): submit with these options.

        As in Ray, the options given here are the task's only options: those of
        ``@remote`` and ``.options()`` do not apply unless passed again
        (``f.remote(*a)`` is ``f._remote(args=a, **options_of_f)``). ``max_calls``
        is accepted and ignored, as in Ray; other options are checked as in
        ``.options()``. ``serialized_runtime_env_info`` is accepted and ignored.
        """
        task_options.pop("max_calls", None)
        _options.validate_task_options(task_options)
        call_args, call_kwargs = underscore_remote_arguments(
            args, kwargs, f"{self.__qualname__}._remote()"
        )
        variant = RemoteFunction(self._function, task_options, self._shared)
        return variant.remote(*call_args, **call_kwargs)

    # The types of ``.remote()`` (README, "Types"): a generator function gives
    # an ``ObjectRefGenerator`` of its items, any other an ``ObjectRef`` of its
    # result. The exact overloads check the arguments against the function's
    # parameters; the ``Any`` ones after them accept what a checker without
    # asyncray's mypy plugin cannot (an ``ObjectRef`` in place of a value),
    # keeping the result type. The plugin rewrites every one of them to the
    # function's parameters, each widened to ``T | ObjectRef[T]``.
    @overload
    def remote(  # type: ignore[overload-overlap]
        self: RemoteFunction[_P, NoReturn], *args: _P.args, **kwargs: _P.kwargs
    ) -> ObjectRef[Any]: ...  # first, for an unannotated result (Any matches NoReturn)

    @overload
    def remote(  # type: ignore[overload-overlap]
        self: RemoteFunction[_P, Iterator[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> ObjectRefGenerator[_T]: ...

    @overload
    def remote(  # type: ignore[overload-overlap]
        self: RemoteFunction[_P, AsyncIterator[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> ObjectRefGenerator[_T]: ...

    @overload
    def remote(self, *args: P_.args, **kwargs: P_.kwargs) -> ObjectRef[R]: ...

    @overload
    def remote(
        self: RemoteFunction[_P, Iterator[_T]], *args: Any, **kwargs: Any
    ) -> ObjectRefGenerator[_T]: ...

    @overload
    def remote(
        self: RemoteFunction[_P, AsyncIterator[_T]], *args: Any, **kwargs: Any
    ) -> ObjectRefGenerator[_T]: ...

    @overload
    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef[R]: ...

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit the task; returns an ``ObjectRef`` (or a list, ``None``, a generator)."""
        client, totals = _api.client_and_totals()
        shared = self._shared
        if args or kwargs or shared.has_required:
            shared.bind(args, kwargs)
        pg_id, pg_bundle, pg_capture = _scheduling.resolve(self._options, self._request, self._name)
        if not pg_id and totals is not self._feasible_for:
            message = _options.infeasible_message(f"Task {self._name}", self._request, totals)
            if message is not None:
                from .exceptions import TaskUnschedulableError

                raise TaskUnschedulableError(message)
            self._feasible_for = totals  # a session's totals never change: check once
        payload, dep_ids = pack_arguments(args, kwargs, self.__qualname__)
        client.ensure_function(shared.func_id, shared.blob)
        task_id = client.new_task_id()
        num_returns = self._num_returns
        streaming = num_returns == "streaming" or num_returns == "dynamic"
        return_ids = (
            []
            if streaming
            else [task_id + i.to_bytes(4, "little") for i in range(1, num_returns + 1)]  # type: ignore[operator]  # not streaming: an int
        )
        client.post(
            P.SubmitTask(
                task_id=task_id,
                func_id=shared.func_id,
                name=self._name,
                args=payload,
                dep_ids=dep_ids,
                return_ids=return_ids,
                resources=self._request,
                max_retries=self._max_retries,
                retry_exc=self._retry_exc,
                streaming=streaming,
                timeout_s=self._timeout_s,
                backpressure=self._backpressure,
                pg_id=pg_id,
                pg_bundle=pg_bundle,
                pg_capture=pg_capture,
                parent=_task_context.current_task().task_id or b"",
                env=(
                    _task_context.current_runtime_env
                    if self._env is None
                    else _runtime_env.for_submit(self._env)
                ),
            )
        )
        if streaming:
            from .object_ref_generator import ObjectRefGenerator

            return ObjectRefGenerator(task_id)
        if num_returns == 1:
            return ObjectRef(return_ids[0], True)
        if num_returns == 0:
            return None
        return [ObjectRef(rid, True) for rid in return_ids]


if TYPE_CHECKING:
    # For type checkers only: what ``.remote()`` returns with ``num_returns``
    # other than 1 (``options(num_returns=...)``, ``@remote(num_returns=...)``,
    # ``@method(num_returns=...)``). At run time these are ``RemoteFunction``
    # and ``ActorMethod`` objects.

    class ListOfRefs(Generic[P_]):
        """A remote function or actor method with ``num_returns`` > 1: a list of refs."""

        @overload
        def remote(self, *args: P_.args, **kwargs: P_.kwargs) -> list[ObjectRef[Any]]: ...
        @overload
        def remote(self, *args: Any, **kwargs: Any) -> list[ObjectRef[Any]]: ...
        def remote(self, *args: Any, **kwargs: Any) -> Any: ...
        def options(self, **options: Any) -> Any: ...

    class NoRefs(Generic[P_]):
        """A remote function or actor method with ``num_returns=0``: ``None``."""

        @overload
        def remote(self, *args: P_.args, **kwargs: P_.kwargs) -> None: ...
        @overload
        def remote(self, *args: Any, **kwargs: Any) -> None: ...
        def remote(self, *args: Any, **kwargs: Any) -> Any: ...
        def options(self, **options: Any) -> Any: ...


def _positional_range(signature: inspect.Signature | None) -> tuple[int, float] | None:
    """How many positional arguments alone make a valid call, when the count is all that matters.

    None when a keyword-only parameter is required (positional arguments alone never fit).
    """
    if signature is None:
        return None
    least = 0
    most: float = 0
    for p in signature.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            most += 1
            if p.default is p.empty:
                least = int(most)
        elif p.kind is p.VAR_POSITIONAL:
            most = float("inf")
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            return None
    return least, most


class _Definition:
    """What all ``.options()`` variants of one function share: id, pickled blob, signature."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.name = getattr(function, "__qualname__", None) or getattr(
            function, "__name__", "remote_function"
        )
        self.func_id = os.urandom(16)
        self._blob: bytes | None = None
        self.is_generator = inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(
            function
        )
        try:
            self.signature: inspect.Signature | None = inspect.signature(function)
        except (TypeError, ValueError):
            self.signature = None
        self._positional_range = _positional_range(self.signature)
        # A required parameter: a call with no arguments must be checked too.
        bounds = self._positional_range
        self.has_required = self.signature is not None and (bounds is None or bounds[0] > 0)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` (Python's message) if the call does not fit the signature."""
        if self.signature is None:
            return
        bounds = self._positional_range
        if not kwargs and bounds is not None and bounds[0] <= len(args) <= bounds[1]:
            return  # fits: Signature.bind (about 1 us) would find nothing to say
        check_call(self.signature, args, kwargs, f"{self.name}.remote()")

    def blob(self) -> bytes:
        if self._blob is None:
            try:
                self._blob = ser.dumps_function(self.function)
            except Exception as e:
                name = getattr(self.function, "__qualname__", repr(self.function))
                raise TypeError(
                    f"Could not serialize the function {name}: {type(e).__name__}: {e}. "
                    "Make sure everything it references can be pickled."
                ) from e
        return self._blob
