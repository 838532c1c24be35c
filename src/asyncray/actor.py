"""Actors: ``@remote`` on a class, handles, method calls, ``exit_actor``.

``Cls.remote(...)`` returns an ``ActorHandle`` at once; the actor starts in
its own process when its placement request fits. The kind follows Ray's
rules: any ``async def`` method makes an async actor (``max_concurrency``
1000 by default); a sync class with ``max_concurrency > 1`` or concurrency
groups is threaded; otherwise calls run one at a time in submission order.

Resources follow Ray's "1 to place, 0 to run" rule: an actor with no
resource options needs 1 CPU free to start and holds none while alive, so
more actors than CPUs can live at once.

Lifetime: handles are counted across processes, as in Ray. The handle
``.remote()`` returns, every copy unpickled from it (in a task, an actor, a
result, a stored object) and every payload carrying one hold the actor;
when the last is gone the actor ends after the calls already queued (as
``__ray_terminate__``). Handles from ``get_actor`` do not hold it.
``lifetime="detached"`` actors live until killed or ``shutdown()``; on a
shared head (``asyncray start --head``) they outlive the driver that made
them. In an embedded session nothing can outlive the process: a one-time
``RuntimeWarning`` says so.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Generic, Literal, NoReturn, ParamSpec, TypeVar, overload

from . import _api, _options, _scheduling, _task_context
from . import exceptions as exc
from ._clients import base as _client
from ._session.resources import check_namespace
from ._wire import protocol as P
from ._wire import runtime_env as _runtime_env
from ._wire import serialization as ser
from .object_ref import ObjectRef
from .object_ref_generator import remember_actor_task, start_actor_stream
from .remote_function import (
    _positional_range,
    check_call,
    pack_arguments,
    underscore_remote_arguments,
)

if TYPE_CHECKING:
    from .object_ref_generator import ObjectRefGenerator
    from .remote_function import ListOfRefs, NoRefs

T = TypeVar("T")
# An actor method's parameters and result (``ActorMethod[P, R]``).
P_ = ParamSpec("P_")
R = TypeVar("R", covariant=True)  # as in remote_function
_P = ParamSpec("_P")
_T = TypeVar("_T")

# Ray's default max_concurrency of async actors.
ASYNC_DEFAULT_MAX_CONCURRENCY = 1000
# The most concurrent calls an actor (or one of its groups) may run: a
# threaded actor starts up to this many threads, each with its own stack, so
# a typo like 10**9 must fail at the call site rather than in the actor.
# Far above any real use (Ray's async default is 1000).
MAX_CONCURRENCY = 1_000_000
# Distinct ``retry_exceptions`` lists whose pickles are kept, so a call with
# a list does not pickle its classes again; a program has a handful of them.
RETRY_TYPES_CACHED = 256

ACTOR_OPTIONS = frozenset(
    {
        "num_cpus",
        "num_gpus",
        "resources",
        "memory",
        "accelerator_type",
        "max_concurrency",
        "max_restarts",
        "max_task_retries",
        "max_pending_calls",
        "name",
        "namespace",
        "lifetime",
        "get_if_exists",
        "concurrency_groups",
        "allow_out_of_order_execution",
        "scheduling_strategy",
        "placement_group",
        "placement_group_bundle_index",
        "placement_group_capture_child_tasks",
        "runtime_env",
        "label_selector",
        "fallback_strategy",
        "enable_task_events",
        "_labels",
        "_metadata",
        "_actor_generator_backpressure_num_objects",
        "object_store_memory",
    }
)

METHOD_CALL_OPTIONS = frozenset(
    {
        "num_returns",
        "name",
        "concurrency_group",
        "max_task_retries",
        "retry_exceptions",
        "enable_task_events",
        "_generator_backpressure_num_objects",
        "timeout_s",
    }
)

_BUILTIN_METHODS = ("__ray_ready__", "__ray_call__", "__ray_terminate__")


class ActorClassInheritanceException(TypeError):
    """Subclassing an actor class is not supported (as in Ray)."""


def validate_actor_options(options: dict[str, Any], *, in_options_call: bool = False) -> None:
    """Raise ``ValueError``/``TypeError`` naming the first bad actor option."""
    for key, value in options.items():
        if key not in ACTOR_OPTIONS:
            raise ValueError(
                f"Invalid option keyword {key} for actors. Valid ones are {sorted(ACTOR_OPTIONS)}."
            )
        common = _options.COMMON_CHECKS.get(key)
        if common is not None:
            common(value)
        elif key == "max_concurrency":
            _options.check_counting(key, value, infinite=False, maximum=MAX_CONCURRENCY)
        elif key in ("max_restarts", "max_task_retries", "max_pending_calls"):
            _options.check_counting(key, value, infinite=True)
        elif key == "object_store_memory":
            _options.check_counting(key, value, infinite=False)
        elif key == "_actor_generator_backpressure_num_objects":
            _options._check_backpressure(value, key)
    if "object_store_memory" in options:
        _options.warn_object_store_memory("actors")
    name = options.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"name must be None or a string, got {type(name)}")
        if name == "":
            raise ValueError("Actor name cannot be an empty string.")
    if options.get("namespace") is not None:
        check_namespace(options["namespace"])
    lifetime = options.get("lifetime")
    if lifetime not in (None, "detached", "non_detached"):
        raise ValueError(
            "actor `lifetime` argument must be one of 'detached', 'non_detached' and 'None'."
        )
    if options.get("get_if_exists") and not options.get("name"):
        raise ValueError("The actor name must be specified to use `get_if_exists`.")
    if in_options_call and "concurrency_groups" in options:
        raise ValueError("Setting 'concurrency_groups' is not supported in '.options()'.")
    groups = options.get("concurrency_groups")
    if groups is not None:
        if isinstance(groups, (list, tuple)):
            groups = {g: 1 for g in groups}
        if not isinstance(groups, dict):
            raise TypeError("concurrency_groups must be a dict of {name: max_concurrency}.")
        for group, size in groups.items():
            if not isinstance(group, str):
                raise TypeError(f"concurrency group names must be strings, got {group!r}")
            _options.check_count(
                f"concurrency_groups[{group!r}]",
                size,
                minimum=1,
                maximum=MAX_CONCURRENCY,
                accepts=f"a positive integer up to {MAX_CONCURRENCY} (the group's max_concurrency)",
            )


def _actor_resources(options: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """Ray's rule: (resources needed to place the actor, resources it holds while alive)."""
    specified = any(
        options.get(k) is not None
        for k in ("num_cpus", "num_gpus", "resources", "accelerator_type")
    )
    if not specified:
        hold: dict[str, float] = {}
        if options.get("memory"):
            hold["memory"] = float(options["memory"])
        return {"CPU": 1.0, **hold}, hold
    hold = _options.resource_request(options, default_cpus=1)
    return dict(hold), hold


class _ActorDefinition:
    """What every ``.options()`` variant of one actor class shares."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.class_id = os.urandom(16)
        self._blob: bytes | None = None
        self.name = cls.__name__
        methods: dict[str, dict[str, Any]] = {}
        is_async = False
        for attr, member in inspect.getmembers(cls):
            if not callable(member) or (attr.startswith("__") and attr != "__call__"):
                continue
            opts = dict(getattr(member, "__ray_method_options__", {}))
            func = getattr(member, "__func__", member)
            if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
                is_async = True
            opts["generator"] = inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(
                func
            )
            opts["call"] = _call_spec(cls, attr, member)
            methods[attr] = opts
        for builtin in _BUILTIN_METHODS:
            methods[builtin] = {"generator": False}
        self.methods = methods
        self.is_async = is_async
        init = cls.__dict__.get("__init__") or getattr(cls, "__init__", None)
        try:
            sig = (
                inspect.signature(init)
                if init is not None and init is not object.__init__
                else None
            )
        except (TypeError, ValueError):
            sig = None
        self.init_signature = sig
        self.init_call_signature = (
            None if sig is None else sig.replace(parameters=list(sig.parameters.values())[1:])
        )

    def blob(self) -> bytes:
        if self._blob is None:
            try:
                self._blob = ser.dumps_function(self.cls)
            except Exception as e:
                raise TypeError(
                    f"Could not serialize the actor class {self.name}.__init__: "
                    f"{type(e).__name__}: {e}"
                ) from e
        return self._blob

    def bind_init(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.init_call_signature is not None:
            check_call(self.init_call_signature, args, kwargs, f"{self.name}.remote()")
        elif args or kwargs:
            raise TypeError(f"{self.name}.remote(): {self.name}() takes no arguments")


# How a method is called, as a handle in any process can check it: each
# parameter's (name, kind, has a default), and the signature as text.
CallSpec = tuple[tuple[tuple[str, int, bool], ...], str]
_KINDS = [
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.VAR_POSITIONAL,
    inspect.Parameter.KEYWORD_ONLY,
    inspect.Parameter.VAR_KEYWORD,
]


def _call_spec(cls: type, attr: str, member: Any) -> CallSpec | None:
    """The picklable call spec of method ``attr`` (without ``self``), or None if unknown."""
    try:
        sig = inspect.signature(member)
    except (TypeError, ValueError):
        return None
    raw = inspect.getattr_static(cls, attr, None)
    params = list(sig.parameters.values())
    if not isinstance(raw, (staticmethod, classmethod)) and (
        inspect.isfunction(raw) or inspect.ismethoddescriptor(raw)
    ):
        # Binds the instance when called on it: drop ``self``. Static and class
        # methods, and plain callables stored on the class, take what they show.
        params = params[1:]
    sig = sig.replace(parameters=params)
    spec = tuple((p.name, _KINDS.index(p.kind), p.default is not p.empty) for p in params)
    return spec, str(sig)


_signatures: dict[tuple[tuple[str, int, bool], ...], inspect.Signature] = {}


def _signature_of(spec: tuple[tuple[str, int, bool], ...]) -> inspect.Signature:
    sig = _signatures.get(spec)
    if sig is None:
        sig = _signatures[spec] = inspect.Signature(
            [
                inspect.Parameter(
                    name, _KINDS[kind], default=None if has_default else inspect.Parameter.empty
                )
                for name, kind, has_default in spec
            ]
        )
    return sig


def _arity(call: CallSpec | None) -> tuple[int, float] | None:
    """How many positional arguments alone fit, when that is all a check needs (else None)."""
    if call is None:
        return (0, float("inf"))  # unknown signature: nothing to check here
    return _positional_range(_signature_of(call[0]))


class ActorClass(Generic[T]):
    """A class decorated with ``@remote``: call ``.remote(...)`` to create an actor."""

    def __init__(self, definition: _ActorDefinition, options: dict[str, Any]) -> None:
        self._definition = definition
        self._default_options = options
        self.__name__ = definition.name
        self.__qualname__ = getattr(definition.cls, "__qualname__", definition.name)
        self.__doc__ = definition.cls.__doc__
        self.__module__ = definition.cls.__module__

    @classmethod
    def _from_class(cls, klass: type, options: dict[str, Any]) -> ActorClass[Any]:
        validate_actor_options(options)
        # An undeclared group is reported at creation (.remote()), as in Ray.
        return cls(_ActorDefinition(klass), options)

    # Hidden from type checkers, so they flag a direct call (README, "Types").
    if not TYPE_CHECKING:

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise TypeError(
                "Actors cannot be instantiated directly. Instead of "
                f"'{self.__name__}()', use '{self.__name__}.remote()'."
            )

    def __getattr__(self, name: str) -> Any:
        """Attributes of the user's class, as in Ray: ``Cls.ATTR``, static and class
        methods, and what the class inherits (looked up along its MRO)."""
        definition = self.__dict__.get("_definition")
        if definition is not None and not (name.startswith("__") and name.endswith("__")):
            try:
                return getattr(definition.cls, name)
            except AttributeError:
                pass
        shown = definition.name if definition is not None else "?"
        raise AttributeError(f"'ActorClass({shown})' object has no attribute '{name}'")

    def __mro_entries__(self, bases: Any) -> Any:
        raise ActorClassInheritanceException(
            "Inheriting from actor classes is not currently supported. You can instead inherit "
            "from a non-actor base class and make the derived class an actor class (with "
            "@ray.remote)."
        )

    def options(self, **options: Any) -> _ActorClassWithOptions[T]:
        """Override options for the next ``.remote()`` (validated now)."""
        validate_actor_options(options, in_options_call=True)
        return _ActorClassWithOptions(self, {**self._default_options, **options})

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle[T]:
        """Create the actor; returns its handle at once."""
        return _create_actor(self._definition, self._default_options, args, kwargs)

    def _remote(self, args: Any = None, kwargs: Any = None, **options: Any) -> ActorHandle[T]:
        """Ray's underscore API (used by libraries and benchmarks): create the actor.

        As in Ray, the options given here are the actor's only options: those of
        ``@remote`` and ``.options()`` do not apply unless passed again, except
        the class's ``concurrency_groups`` (part of the class; a value given here
        is ignored, as in Ray).
        """
        options = dict(options)
        options.pop("concurrency_groups", None)
        validate_actor_options(options)
        groups = self._default_options.get("concurrency_groups")
        if groups is not None:
            options["concurrency_groups"] = groups
        call_args, call_kwargs = underscore_remote_arguments(
            args, kwargs, f"{self.__name__}._remote()"
        )
        return _create_actor(self._definition, options, call_args, call_kwargs)


class _ActorClassWithOptions(Generic[T]):
    def __init__(self, actor_class: ActorClass[T], options: dict[str, Any]) -> None:
        self._actor_class = actor_class
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle[T]:
        return _create_actor(self._actor_class._definition, self._options, args, kwargs)


def _check_method_groups(definition: _ActorDefinition, options: dict[str, Any]) -> None:
    groups = options.get("concurrency_groups") or {}
    for name, opts in definition.methods.items():
        group = opts.get("concurrency_group")
        if group and group not in groups:
            raise AssertionError(
                f"Method {definition.name}.{name} is assigned to concurrency group {group!r}, "
                f"which the actor does not declare (declared: {sorted(groups)})."
            )


def _actor_config(definition: _ActorDefinition, options: dict[str, Any]) -> dict[str, Any]:
    groups = options.get("concurrency_groups") or {}
    if isinstance(groups, (list, tuple)):
        groups = {g: 1 for g in groups}
    max_concurrency = options.get("max_concurrency")
    if definition.is_async:
        kind = "async"
        if max_concurrency is None:
            max_concurrency = ASYNC_DEFAULT_MAX_CONCURRENCY
    else:
        if max_concurrency is None:
            max_concurrency = 1
        kind = "threaded" if max_concurrency > 1 or groups else "plain"
    if options.get("allow_out_of_order_execution") is False and kind != "plain":
        raise ValueError(
            "If you're using async actors or multi-threaded actors, Ray can't execute actor "
            "tasks in order. Set `allow_out_of_order_execution=True` to allow out-of-order "
            "execution."
        )
    return {
        "kind": kind,
        "max_pending_calls": int(options.get("max_pending_calls") or -1),
        "max_concurrency": max(1, int(max_concurrency)),
        "groups": {str(k): int(v) for k, v in groups.items()},
        "class_name": definition.name,
        # A plain actor may run a caller's ready call before its earlier one
        # that waits for an argument (the kernel's per-caller order, relaxed).
        "out_of_order": bool(options.get("allow_out_of_order_execution")),
    }


def _create_actor(
    definition: _ActorDefinition,
    options: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> ActorHandle[Any]:
    client, totals = _api.client_and_totals()
    session = _api._auto_init()
    definition.bind_init(args, kwargs)
    _check_method_groups(definition, options)
    place, hold = _actor_resources(options)
    pg_id, pg_bundle, pg_capture = _scheduling.resolve(options, place, definition.name)
    message = _options.infeasible_message(f"Actor {definition.name}", place, totals)
    if message is not None and not pg_id:
        raise exc.ActorUnschedulableError(message)
    config = _actor_config(definition, options)
    payload, dep_ids = pack_arguments(args, kwargs, f"{definition.name}.__init__")
    client.ensure_function(definition.class_id, definition.blob)
    meta = _HandleMeta(
        definition.name, definition.methods, config, options.get("max_task_retries") or 0
    )
    meta_blob = ser.dumps_function(meta)
    actor_id = os.urandom(16)
    name = options.get("name") or ""
    namespace = options.get("namespace") or session.namespace
    detached = options.get("lifetime") == "detached"
    if detached:
        _api.warn_detached_if_embedded("actor")
    max_restarts = options.get("max_restarts") or 0
    holders = None if detached else _new_holders(client)
    create = P.CreateActor(
        actor_id=actor_id,
        class_id=definition.class_id,
        req_id=0,
        name=name,
        namespace=namespace,
        get_if_exists=bool(options.get("get_if_exists")),
        detached=detached,
        args=payload,
        dep_ids=dep_ids,
        place=place,
        hold=hold,
        max_restarts=max_restarts,
        class_name=definition.name,
        config=ser.dumps(config),
        meta=meta_blob,
        pg_id=pg_id,
        pg_bundle=pg_bundle,
        pg_capture=pg_capture,
        holders_id=b"" if holders is None else holders._id,
        kind=config["kind"],
        out_of_order=config["out_of_order"],
        env=_runtime_env.for_submit(_runtime_env.own_env(options.get("runtime_env"))),
    )
    if not name:
        client.post(create)
        return ActorHandle(actor_id, meta, holders)
    create.req_id = client.next_req_id()
    reply = client.request(create)
    if reply.error == "exists":
        raise exc.ActorAlreadyExistsError(
            f"The name {name} (namespace={options.get('namespace')}) is already taken. Please use "
            "a different name or get the existing actor using "
            f"ray.get_actor('{name}', namespace='{options.get('namespace')}')"
        )
    if reply.actor_id != actor_id:  # get_if_exists found one
        return ActorHandle(reply.actor_id, ser.loads(reply.meta))
    return ActorHandle(actor_id, meta, holders)


def _new_holders(client: _client.ClientBase) -> ObjectRef[Any]:
    """The object whose units stand for an actor's handles (see ``_ActorCore``).

    A put of a tiny value: the runtime counts its units as for any object,
    in every process and in every payload a handle is pickled into.
    """
    object_id = client.new_object_id()
    client.post(P.PutObject(object_id, _HOLDERS_VALUE))
    return ObjectRef(object_id, True)


_HOLDERS_VALUE = ser.dumps(None)


def _rebuild_handle(
    actor_id: bytes, meta: _HandleMeta, holders: ObjectRef[Any] | None
) -> ActorHandle[Any]:
    """Unpickle a handle: the copy owns the unit of the holders ref it carries."""
    return ActorHandle(actor_id, meta, holders)


class _HandleMeta:
    """What a handle needs to call methods: names, per-method options, groups."""

    __slots__ = ("class_name", "config", "max_task_retries", "methods")

    def __init__(
        self,
        class_name: str,
        methods: dict[str, dict[str, Any]],
        config: dict[str, Any],
        retries: int,
    ) -> None:
        self.class_name = class_name
        self.methods = methods
        self.config = config
        self.max_task_retries = retries

    def __reduce__(self) -> Any:
        return (_HandleMeta, (self.class_name, self.methods, self.config, self.max_task_retries))


def _no_method_message(meta: _HandleMeta, name: str) -> str:
    """Ray's message for a missing method, plus the methods the actor has."""
    import difflib

    methods = sorted(m for m in meta.methods if not m.startswith("__"))
    close = difflib.get_close_matches(name, methods, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    listed = ", ".join(methods) if methods else "none"
    return (
        f"'ActorHandle' object has no attribute '{name}': actor class {meta.class_name} has no "
        f"method '{name}'.{hint} Its methods are: {listed}."
    )


class _ActorCore:
    """What a handle and its methods share: the actor's id, its call specs, its holders unit.

    ``ActorMethod`` s reference the core, never the handle, so a handle and its
    cached methods form no reference cycle: dropping the last handle (and the
    last method taken from it) frees the core at once, without waiting for
    the cyclic garbage collector. A method taken from a handle keeps the core
    alive while it is used, so ``get(Actor.remote().method.remote())``
    submits its call before the release (the client posts both in order).

    ``_holders`` (non-detached actors only) is a ref to the actor's *holders
    object*: each handle copy owns one unit of it, and a payload a handle is
    pickled into (task arguments, a stored object, a result) carries the ref,
    so the runtime counts those as for any ref. When the last unit is given
    back, in any process, the runtime ends the actor after its queued calls.
    """

    __slots__ = ("_actor_id", "_holders", "_meta", "_pending")

    def __init__(self, actor_id: bytes, meta: _HandleMeta, holders: ObjectRef[Any] | None) -> None:
        self._actor_id = actor_id
        self._meta = meta
        self._holders = holders
        # Refs of this handle's calls not yet known to be done (max_pending_calls).
        self._pending: list[ObjectRef[Any]] = []

    def __del__(self) -> None:
        holders = self._holders
        if holders is not None and holders._owned:
            holders._owned = False  # its unit is given back here
            client = _client._current
            if client is not None:
                try:
                    client.release(holders._id)
                    if client.is_driver:
                        # Now, not with the next batch: the actor's resources
                        # come back as soon as its last handle goes. The driver's
                        # inbox is ordered, so this follows any submission that
                        # pickled a copy. A child's release waits for its next
                        # message (a result carrying a copy must arrive first).
                        client.flush_releases()
                except Exception:
                    pass  # interpreter shutdown, closed loop: the session ends the actor

    def _call(
        self,
        name: str,
        method_opts: dict[str, Any],
        call_opts: dict[str, Any],
        args: Any,
        kwargs: Any,
    ) -> Any:
        client = _api.client()
        num_returns = call_opts.get("num_returns", method_opts.get("num_returns"))
        streaming = False
        if num_returns is None:
            num_returns = "streaming" if method_opts.get("generator") else 1
        if num_returns in ("streaming", "dynamic"):
            streaming = True
        group = call_opts.get("concurrency_group", method_opts.get("concurrency_group")) or ""
        if group and group not in self._meta.config["groups"]:
            raise ValueError(
                f"Concurrency group {group!r} is not declared by actor {self._meta.class_name} "
                f"(declared: {sorted(self._meta.config['groups'])})."
            )
        retries = call_opts.get("max_task_retries", method_opts.get("max_task_retries"))
        if retries is None:
            retries = self._meta.max_task_retries
        retry_exc = (
            _retry_exc_wire(
                call_opts.get("retry_exceptions", method_opts.get("retry_exceptions", False))
            )
            if retries
            else P.RETRY_NONE
        )
        limit = self._meta.config.get("max_pending_calls", -1)
        if limit > 0:
            self._check_pending(name, limit)
        payload, dep_ids = pack_arguments(args, kwargs, f"{self._meta.class_name}.{name}")
        task_id = client.new_task_id()
        remember_actor_task(task_id)
        timeout = call_opts.get("timeout_s", method_opts.get("timeout_s"))
        timeout_s = P.NO_TIMEOUT if timeout is None else float(timeout)
        if streaming:
            backpressure = call_opts.get(
                "_generator_backpressure_num_objects",
                method_opts.get("_generator_backpressure_num_objects"),
            )
            return start_actor_stream(
                client,
                self,
                name,
                payload,
                dep_ids,
                group,
                retries,
                task_id,
                call_opts,
                -1 if backpressure is None else backpressure,
                timeout_s,
                retry_exc,
            )
        # Not streaming: num_returns is an int.
        return_ids = [task_id + i.to_bytes(4, "little") for i in range(1, num_returns + 1)]  # type: ignore[operator]
        client.post(
            P.CallActor(
                task_id=task_id,
                actor_id=self._actor_id,
                method=name,
                args=payload,
                dep_ids=dep_ids,
                return_ids=return_ids,
                group=group,
                max_task_retries=retries,
                streaming=False,
                backpressure=-1,
                timeout_s=timeout_s,
                parent=_task_context.current_task().task_id or b"",
                retry_exc=retry_exc,
            )
        )
        refs: list[ObjectRef[Any]] = [ObjectRef(rid, True) for rid in return_ids]
        if limit > 0 and refs:
            self._pending.append(ObjectRef(return_ids[0]))
        if num_returns == 1:
            return refs[0]
        if num_returns == 0:
            return None
        return refs

    def _check_pending(self, name: str, limit: int) -> None:
        """Raise PendingCallsLimitExceeded when ``limit`` calls of this handle are unfinished."""
        if len(self._pending) >= limit:
            _, self._pending = _api.wait(self._pending, num_returns=len(self._pending), timeout=0)
        if len(self._pending) >= limit:
            raise exc.PendingCallsLimitExceeded(
                f"The task {name} could not be submitted to Actor({self._meta.class_name}, "
                f"{self._actor_id.hex()}) because more than {limit} tasks are queued on the "
                "actor. This limit can be adjusted with the `max_pending_calls` actor option."
            )


class ActorHandle(Generic[T]):
    """A handle to an actor: ``handle.method.remote(...)`` returns ``ObjectRef`` s."""

    def __init__(
        self, actor_id: bytes, meta: _HandleMeta, _holders: ObjectRef[Any] | None = None
    ) -> None:
        self._actor_id = actor_id
        self._meta = meta
        self._core = _ActorCore(actor_id, meta, _holders)
        # Methods reference ``_core``, not this handle: caching them makes no cycle.
        self._method_cache: dict[str, ActorMethod[..., Any]] = {}

    # Without asyncray's mypy plugin a method's type is not known here: its
    # ``.remote()`` takes anything and gives ``ObjectRef[Any]``. The plugin
    # gives ``ActorMethod[<the method's parameters>, <its result>]``.
    def __getattr__(self, name: str) -> ActorMethod[..., Any]:
        if name.startswith("_") and name not in self._meta.methods:
            raise AttributeError(f"'ActorHandle' object has no attribute '{name}'")
        cache = self.__dict__.get("_method_cache")
        if cache is None:
            raise AttributeError(name)
        method = cache.get(name)
        if method is None:
            if name not in self._meta.methods:
                raise AttributeError(_no_method_message(self._meta, name))
            method = cache[name] = ActorMethod(self._core, name, self._meta.methods[name], {})
        return method

    def __repr__(self) -> str:
        return f"Actor({self._meta.class_name}, {self._actor_id.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __reduce__(self) -> Any:
        # The holders ref travels with the copy: inside a payload the runtime
        # counts it (one unit per unpickled copy); pickled outside asyncray it
        # pins the object, so the actor is no longer ended by its handles.
        return (_rebuild_handle, (self._actor_id, self._meta, self._core._holders))

    @property
    def _ray_actor_id(self) -> Any:
        from ._placement_group import BinaryID

        return BinaryID(self._actor_id)


def _retry_exc_wire(value: Any) -> bytes:
    """``retry_exceptions`` as the wire carries it: none, all, or the pickled types."""
    if value is True:
        return P.RETRY_ALL
    if not value:
        return P.RETRY_NONE
    return _pickled_types(tuple(value))


@functools.lru_cache(maxsize=RETRY_TYPES_CACHED)
def _pickled_types(types: tuple[type, ...]) -> bytes:
    return ser.dumps_function(types)


def _check_method_options(options: dict[str, Any]) -> None:
    """Validate per-method options (``@method`` and ``.options()``) as for tasks."""
    if "num_returns" in options:
        _options._check_num_returns(options["num_returns"])
    if "_generator_backpressure_num_objects" in options:
        _options._check_backpressure(options["_generator_backpressure_num_objects"])
    if "timeout_s" in options:
        _options._check_timeout(options["timeout_s"])
    if "max_task_retries" in options:
        _options.check_counting("max_task_retries", options["max_task_retries"], infinite=True)
    if "retry_exceptions" in options:
        _options._check_retry_exceptions(options["retry_exceptions"])
    if options.get("concurrency_group") is not None and not isinstance(
        options["concurrency_group"], str
    ):
        raise TypeError(
            "The type of keyword 'concurrency_group' must be (<class 'str'>, None), but "
            f"received type {type(options['concurrency_group'])}"
        )


class ActorMethod(Generic[P_, R]):
    """``handle.method``: call ``.remote(...)``; ``.options(...)`` for per-call options.

    For type checkers, ``P_`` are the method's parameters (without ``self``)
    and ``R`` its result (an ``async def`` method's, awaited).
    """

    __slots__ = ("_arity", "_call_opts", "_core", "_method_opts", "_name")

    def __init__(
        self,
        core: _ActorCore,
        name: str,
        method_opts: dict[str, Any],
        call_opts: dict[str, Any],
    ) -> None:
        self._core = core  # not the handle: see _ActorCore
        self._name = name
        self._method_opts = method_opts
        self._call_opts = call_opts
        # (least, most) positional arguments that make a valid call: a call
        # within it needs no further check (a keyword call gets a full bind).
        self._arity = _arity(method_opts.get("call"))

    # Hidden from type checkers, so they flag a direct call (README, "Types").
    if not TYPE_CHECKING:

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise TypeError(
                "Actor methods cannot be called directly. Instead of running "
                f"'object.{self._name}()', try 'object.{self._name}.remote()'."
            )

    # As ``RemoteFunction.options``: ``num_returns`` decides what ``.remote()`` returns.
    @overload
    def options(
        self, *, num_returns: Literal[1, "streaming", "dynamic"] = ..., **options: Any
    ) -> ActorMethod[P_, R]: ...

    @overload
    def options(self, *, num_returns: Literal[0], **options: Any) -> NoRefs[P_]: ...

    @overload
    def options(self, *, num_returns: int, **options: Any) -> ListOfRefs[P_]: ...

    def options(self, **options: Any) -> Any:
        for key in options:
            if key not in METHOD_CALL_OPTIONS:
                raise ValueError(
                    f"Invalid option keyword {key} for actor methods. Valid ones are "
                    f"{sorted(METHOD_CALL_OPTIONS)}."
                )
        _check_method_options(options)
        return ActorMethod(
            self._core, self._name, self._method_opts, {**self._call_opts, **options}
        )

    # As ``RemoteFunction.remote``: exact overloads, then ``Any`` ones for
    # what a checker without the plugin cannot see (README, "Types").
    @overload
    def remote(  # type: ignore[overload-overlap]
        self: ActorMethod[_P, NoReturn], *args: _P.args, **kwargs: _P.kwargs
    ) -> ObjectRef[Any]: ...  # first, for an unannotated result (Any matches NoReturn)

    @overload
    def remote(  # type: ignore[overload-overlap]
        self: ActorMethod[_P, Iterator[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> ObjectRefGenerator[_T]: ...

    @overload
    def remote(  # type: ignore[overload-overlap]
        self: ActorMethod[_P, AsyncIterator[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> ObjectRefGenerator[_T]: ...

    @overload
    def remote(self, *args: P_.args, **kwargs: P_.kwargs) -> ObjectRef[R]: ...

    @overload
    def remote(
        self: ActorMethod[_P, Iterator[_T]], *args: Any, **kwargs: Any
    ) -> ObjectRefGenerator[_T]: ...

    @overload
    def remote(
        self: ActorMethod[_P, AsyncIterator[_T]], *args: Any, **kwargs: Any
    ) -> ObjectRefGenerator[_T]: ...

    @overload
    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef[R]: ...

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        arity = self._arity
        if kwargs or arity is None or not arity[0] <= len(args) <= arity[1]:
            self._check_arguments(args, kwargs)
        return self._core._call(self._name, self._method_opts, self._call_opts, args, kwargs)

    def _check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` naming the method if the call does not fit its signature."""
        call = self._method_opts.get("call")
        if call is None:
            return
        spec, text = call
        what = f"{self._core._meta.class_name}.{self._name}.remote()"
        try:
            _signature_of(spec).bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(
                f"{what}: {e}. The signature is {self._core._meta.class_name}.{self._name}{text}."
            ) from None


# ==================================================================== inside an actor


def exit_actor() -> None:
    """End the current actor from inside one of its methods.

    The caller of that method gets ``ActorDiedError``; calls not yet started
    fail the same way; calls already running (threaded and async actors)
    finish. ``atexit`` handlers run. The actor is not restarted.
    """
    host = _task_context.hosted_actor()
    if host is None:
        raise TypeError(
            "exit_actor API is called on a non-actor worker, which is not allowed. Call it "
            "inside an actor method."
        )
    if host.config["kind"] == "async":
        raise exc.AsyncioActorExit()
    raise _task_context.ActorExitRequest(0)


def _current_actor_handle() -> ActorHandle[Any]:
    host = _task_context.hosted_actor()
    if host is None:
        raise RuntimeError("This method is only available in an actor.")
    methods = _ActorDefinition(type(host.instance)).methods
    meta = _HandleMeta(host.class_name, methods, host.config, 0)
    return ActorHandle(host.actor_binary_id, meta)


# ==================================================================== lookup and kill


def get_actor(name: str, namespace: str | None = None) -> ActorHandle[Any]:
    """A handle to the named actor, or ``ValueError`` if there is none.

    The handle does not keep the actor alive (as in Ray).
    """
    if not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name)}")
    if namespace is not None:
        check_namespace(namespace)
    session = _api._auto_init()
    client = session.client
    ns = namespace or session.namespace
    reply = client.request(P.GetActor(client.next_req_id(), name, ns))
    if reply.error:
        raise ValueError(
            f"Failed to look up actor with name '{name}'. This could because 1. You are trying "
            "to look up a named actor you didn't create. 2. The named actor died. 3. You did not "
            "use a namespace matching the namespace of the actor."
        )
    return ActorHandle(reply.actor_id, ser.loads(reply.meta))


async def get_actor_async(name: str, namespace: str | None = None) -> ActorHandle[Any]:
    """The awaitable twin of ``get_actor``."""
    if not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name)}")
    if namespace is not None:
        check_namespace(namespace)
    session = _api._auto_init()
    client = session.client
    ns = namespace or session.namespace
    reply = await client.request_async(P.GetActor(client.next_req_id(), name, ns))
    if reply.error:
        raise ValueError(f"Failed to look up actor with name '{name}'.")
    return ActorHandle(reply.actor_id, ser.loads(reply.meta))


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Kill an actor at once: its running and queued calls fail with ``ActorDiedError``.

    Args:
        actor: the ``ActorHandle``.
        no_restart: if False, the actor restarts when ``max_restarts`` allows.
    """
    if not isinstance(actor, ActorHandle):
        raise ValueError(
            "ray.kill() only supported for actors. For tasks, try ray.cancel(). "
            f"Got: {type(actor)}."
        )
    client = _api.client()
    client.post(P.KillActor(actor._actor_id, bool(no_restart)))


def list_named_actors(all_namespaces: bool = False) -> list[Any]:
    """Names of live named actors in this namespace (or ``{name, namespace}`` dicts for all)."""
    session = _api._auto_init()
    client = session.client
    reply = client.request(
        P.ListNamedActors(client.next_req_id(), session.namespace, all_namespaces)
    )
    import msgspec

    return msgspec.msgpack.decode(reply.value)
