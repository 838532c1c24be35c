"""``ASYNCRAY_BACKEND=ray``: the way out to real Ray.

With the variable set, ``import asyncray`` hands the program to Ray (installed
by the user; asyncray never depends on it):

- the package's namespace is Ray's (``asyncray.get is ray.get``), plus
  asyncray's extras built on Ray's public API: ``get_async``, ``wait_async``,
  ``put_async``, ``cancel_async``, ``get_actor_async`` and the ``timeout_s``
  option (tasks: ``_Deadlines``; async actor methods: ``_with_deadline``);
- ``import asyncray.X`` gives Ray's ``ray.X`` (a meta-path finder): the very
  same module, or, where asyncray adds names to it (``exceptions``, ``util``,
  ``util.multiprocessing``), a thin module that adds them and reads every
  other name from Ray's, so ``asyncray.exceptions.RayTaskError is
  ray.exceptions.RayTaskError`` and ``except`` clauses work either way;
- asyncray-only features Ray cannot honour raise an error naming the feature
  and what to do on Ray (never silently ignored).

docs/ray-compatibility.md ("The way out") lists what is forwarded, emulated
and refused. Nothing here is imported unless the variable asks for Ray, so
the default ``import asyncray`` pays nothing for it.
"""

from __future__ import annotations

import functools
import heapq
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import itertools
import math
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    import asyncio

ENV = "ASYNCRAY_BACKEND"
# The values ``ASYNCRAY_BACKEND`` accepts ("" is the same as unset).
BACKENDS = ("asyncray", "ray")
# The Ray release asyncray follows and this layer is tested against.
RAY_VERSION = "2.60.0"

# asyncray's own modules that stay asyncray's under the switch (everything
# else ``asyncray.X`` is Ray's ``ray.X``): this layer, the version, and
# ``python -m asyncray`` (whose ``scripts`` is the stand-in below).
# asyncray's modules that are its own under the switch too: the switch itself,
# the version, the CLI (which says to use Ray's), and the tools a test run or a
# type check loads by name (the pytest plugin runs its fixtures on Ray's API).
_OWN_MODULES = frozenset(
    {
        "asyncray._ray_backend",
        "asyncray._version",
        "asyncray.__main__",
        "asyncray.pytest_plugin",
        "asyncray.mypy_plugin",
    }
)

_UNSET: Any = object()


def check_backend(value: str) -> str:
    """The backend ``value`` (``ASYNCRAY_BACKEND``'s) selects: "asyncray" or "ray".

    Raises:
        ImportError: any other value, naming the variable and the allowed values
            (an ImportError: ``import asyncray`` is what fails).
    """
    if value in ("", "asyncray"):
        return "asyncray"
    if value == "ray":
        return "ray"
    raise ImportError(
        f"{ENV}={value!r} is not a backend asyncray knows: use {ENV}=ray to run the program "
        f'on real Ray, or leave {ENV} unset (or "asyncray") to run it on asyncray.'
    )


def install(package_name: str, value: str) -> None:
    """Make the ``asyncray`` package (``package_name``) forward to Ray.

    Called by ``asyncray/__init__.py`` when ``ASYNCRAY_BACKEND`` is set to
    anything but asyncray; ``value`` is the variable's value.

    Raises:
        ImportError: ``value`` is not a backend, or Ray cannot be imported.
    """
    check_backend(value)
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            f"{ENV}=ray hands the program to Ray, but Ray cannot be imported ({e}). Install "
            f'it with `pip install "ray=={RAY_VERSION}"`, or unset {ENV} to run on asyncray.'
        ) from e
    _Backend(ray).install(sys.modules[package_name])


# ==================================================================== checks


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_timeout(name: str, value: Any) -> float | None:
    """A timeout in seconds (None: for ever), checked as asyncray checks it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"The '{name}' argument must be a number of seconds or None, got {_shown(value)} "
            f"(type {type(value).__name__})."
        )
    if math.isnan(value):
        raise ValueError(
            f"The '{name}' argument must be a number of seconds >= 0 or None (wait for ever), "
            "got nan."
        )
    if value < 0:
        raise ValueError(f"The '{name}' argument must be nonnegative. Received {_shown(value)}")
    return None if math.isinf(value) else float(value)


def _check_timeout_s(value: Any) -> float | None:
    """The ``timeout_s`` option (positive and finite, or None), as asyncray checks it."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"timeout_s must be a positive, finite number of seconds or None, got {_shown(value)}"
        )
    return float(value)


def _method_timeout_error(name: str) -> ValueError:
    return ValueError(
        f"timeout_s on the sync actor method {name!r}: {ENV}=ray can bound only `async def` "
        "methods (Ray has no per-call timeout, and a sync call cannot be interrupted without "
        "disturbing the actor). Make the method async, or drop the option and bound the wait "
        "with ray.get(ref, timeout=...)."
    )


def _with_deadline(f: Callable[..., Any], timeout_s: float) -> Callable[..., Any]:
    """The async actor method ``f``, cancelled ``timeout_s`` after its call starts.

    Raises Ray's ``TaskCancelledError`` (``asyncray.exceptions.TaskTimeoutError``
    under the switch), which reaches the caller as ``RayTaskError(TaskCancelledError)``.
    """

    @functools.wraps(f)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        import asyncio

        import ray

        try:
            return await asyncio.wait_for(f(*args, **kwargs), timeout_s)
        except asyncio.TimeoutError:
            raise ray.exceptions.TaskCancelledError(
                error_message=f"{f.__qualname__} ran longer than its timeout_s={timeout_s:g} s "
                "and was cancelled."
            ) from None

    return timed


# ==================================================================== timeout_s for tasks


class _Deadlines:
    """``timeout_s`` on Ray: one daemon thread cancels the tasks still running at their deadline.

    Ray has no per-task timeout; ``ray.cancel`` at the deadline is what Ray
    documents instead. The deadline counts from submission (the driver cannot
    see when a task starts). A task that ignores the interrupt is cancelled
    with ``force=True`` one second later, as asyncray kills it. Finished tasks
    are dropped about once a second, so their refs are not kept longer.
    """

    def __init__(self, ray: Any) -> None:
        self._ray = ray
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any, bool]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, ref: Any, timeout_s: float) -> None:
        """Cancel the task of ``ref`` if it has not finished ``timeout_s`` seconds from now."""
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + timeout_s, next(self._seq), ref, False))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="asyncray timeout_s", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def clear(self) -> None:
        """Forget every deadline (``shutdown``: the tasks are gone)."""
        with self._cond:
            self._heap = []

    def _run(self) -> None:
        last_prune = time.monotonic()
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    now = time.monotonic()
                    until_due = self._heap[0][0] - now
                    until_prune = last_prune + 1.0 - now
                    if until_due <= 0 or until_prune <= 0:
                        break
                    self._cond.wait(min(until_due, until_prune))
                entries = list(self._heap)
            last_prune = time.monotonic()
            try:
                self._step(entries)
            except Exception:
                # ``ray.wait`` failed: Ray was shut down meanwhile, the tasks are gone.
                self._drop({id(e) for e in entries}, [])

    def _drop(self, gone: set[int], again: list[tuple[float, int, Any, bool]]) -> None:
        with self._cond:
            self._heap = [e for e in self._heap if id(e) not in gone]
            self._heap.extend(again)
            heapq.heapify(self._heap)

    def _step(self, entries: list[tuple[float, int, Any, bool]]) -> None:
        """Drop finished tasks; cancel the ones past their deadline."""
        ray = self._ray
        if not ray.is_initialized():
            # Ray's wait and cancel would start a new local Ray: after shutdown, nothing is left.
            self._drop({id(e) for e in entries}, [])
            return
        # A streaming generator is "ready" when its next item is: its task has
        # finished when ``completed()`` is ready.
        probes = [
            e[2].completed() if isinstance(e[2], ray.ObjectRefGenerator) else e[2] for e in entries
        ]
        ready, _ = ray.wait(probes, num_returns=len(probes), timeout=0, fetch_local=False)
        finished_probes = set(ready)
        finished = {id(e[2]) for e, p in zip(entries, probes) if p in finished_probes}
        now = time.monotonic()
        gone: set[int] = set()
        again: list[tuple[float, int, Any, bool]] = []
        for entry in entries:
            deadline, _seq, ref, forced = entry
            if id(ref) in finished:
                gone.add(id(entry))
            elif deadline <= now:
                gone.add(id(entry))
                try:
                    ray.cancel(ref, force=forced)
                except Exception:
                    # Ray refused this one (a force it does not allow, a ref it no
                    # longer knows): the other deadlines still stand.
                    continue
                if not forced:
                    again.append((now + 1.0, next(self._seq), ref, True))
        self._drop(gone, again)


# ==================================================================== the finder


class _ProxyModule(types.ModuleType):
    """``asyncray.X`` where asyncray adds names to Ray's ``ray.X``: the extras, then Ray's."""

    def __init__(self, name: str, real: types.ModuleType, extras: dict[str, Any]) -> None:
        super().__init__(name, real.__doc__)
        self.__dict__["_asyncray_real"] = real
        if hasattr(real, "__path__"):
            self.__path__: list[str] = []  # a package: its submodules go through the finder
        real_all = getattr(real, "__all__", None)
        if real_all is not None:
            self.__all__ = [*real_all, *(n for n in extras if n not in real_all)]
        self.__dict__.update(extras)

    def __getattr__(self, name: str) -> Any:
        real = self.__dict__["_asyncray_real"]
        try:
            value = getattr(real, name)
        except AttributeError:
            value = _UNSET
        if isinstance(value, types.ModuleType) and value.__name__ == f"{real.__name__}.{name}":
            # A submodule reached as an attribute: asyncray's (through the finder), so
            # ``asyncray.util.multiprocessing`` has asyncray's names however it is reached.
            return importlib.import_module(f"{self.__name__}.{name}")
        if value is _UNSET:
            raise AttributeError(
                f"module {self.__name__!r} has no attribute {name!r} (with {ENV}=ray it is "
                f"Ray's {real.__name__!r}, which has no such name either)"
            )
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self.__dict__["_asyncray_real"])) | set(self.__dict__))


class _AliasLoader(importlib.abc.Loader):
    """Loads ``asyncray.X`` as Ray's ``ray.X`` (or a proxy of it, or a stand-in module)."""

    def __init__(self, backend: _Backend, name: str) -> None:
        self._backend = backend
        self._name = name
        self._real_spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = self._backend.module_for(self._name)
        # The import system sets ``__spec__`` on what we return: keep Ray's own.
        self._real_spec = getattr(module, "__spec__", None)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        if not isinstance(module, _ProxyModule) and self._real_spec is not None:
            module.__spec__ = self._real_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    """``import asyncray.X`` under the switch: Ray's ``ray.X`` (see ``_Backend.module_for``)."""

    def __init__(self, backend: _Backend) -> None:
        self._backend = backend

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("asyncray.") or fullname in _OWN_MODULES:
            return None
        if fullname not in self._backend.stand_ins:
            ray_name = _ray_name(fullname)
            if importlib.util.find_spec(ray_name) is None:
                # Never fall through to asyncray's own file: it is not this backend.
                raise ModuleNotFoundError(
                    f"No module named {fullname!r}: with {ENV}=ray asyncray's modules are "
                    f"Ray's, and Ray has no {ray_name!r}.",
                    name=fullname,
                )
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(self._backend, fullname), is_package=True
        )


def _ray_name(name: str) -> str:
    """``asyncray.X.Y`` → ``ray.X.Y``."""
    return "ray" + name[len("asyncray") :]


# ==================================================================== the backend


class _Backend:
    """Everything the switch installs, bound to the imported ``ray`` module."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self.deadlines = _Deadlines(ray)
        global _DEADLINES
        _DEADLINES = self.deadlines
        # Modules Ray lacks (asyncray's own paths), built here.
        self.stand_ins: dict[str, Callable[[], dict[str, Any]]] = {
            "asyncray.object_ref": lambda: {"ObjectRef": ray.ObjectRef},
            "asyncray.object_ref_generator": lambda: {
                "ObjectRefGenerator": ray.ObjectRefGenerator,
                "cancel": ray.cancel,
                "cancel_async": cancel_async,
            },
            "asyncray.scripts": lambda: {"main": scripts_main},
        }
        # Ray modules to which asyncray adds names (``asyncray.X`` is then a proxy).
        self.extras: dict[str, Callable[[types.ModuleType], dict[str, Any]]] = {
            "asyncray.exceptions": lambda m: {
                # Ray reports a cancelled task as TaskCancelledError, whatever cancelled it:
                # ``except TaskTimeoutError`` catches what ``timeout_s`` raises on Ray.
                "TaskTimeoutError": m.TaskCancelledError,
                "UnsupportedLibraryError": UnsupportedLibraryError,
            },
            "asyncray.util": lambda m: {
                "PlacementGroup": importlib.import_module(
                    "ray.util.placement_group"
                ).PlacementGroup,
            },
            "asyncray.util.multiprocessing": lambda m: {
                "AsyncResult": importlib.import_module("ray.util.multiprocessing.pool").AsyncResult,
            },
        }

    def module_for(self, name: str) -> types.ModuleType:
        """The module ``import name`` (an ``asyncray.X``) gives under the switch."""
        if name in self.stand_ins:
            module = types.ModuleType(name, f"asyncray's {name} on Ray ({ENV}=ray).")
            module.__dict__.update(self.stand_ins[name]())
            return module
        real = importlib.import_module(_ray_name(name))
        self._alias_loaded_children(name, real)
        if name in self.extras:
            return _ProxyModule(name, real, self.extras[name](real))
        return real

    def _alias_loaded_children(self, name: str, real: types.ModuleType) -> None:
        """Register Ray's already-imported submodules of ``real`` under asyncray's names.

        As in Ray, importing a submodule that is already loaded must not set it
        as an attribute of its package again: ``import asyncray.util.placement_group``
        would otherwise replace the function ``util.placement_group`` with the module.
        """
        prefix = real.__name__ + "."
        for ray_child, module in list(sys.modules.items()):
            if not ray_child.startswith(prefix) or "." in ray_child[len(prefix) :]:
                continue
            child = name + "." + ray_child[len(prefix) :]
            if (
                module is not None
                and child not in self.extras
                and child not in self.stand_ins
                and child not in _OWN_MODULES
            ):
                sys.modules.setdefault(child, module)

    # ---------------------------------------------------------------- the package

    def install(self, package: types.ModuleType) -> None:
        """Fill ``package`` (asyncray) with Ray's names and the extras; add the finder."""
        ray = self.ray
        ns = package.__dict__
        self._alias_loaded_children(package.__name__, ray)
        sys.meta_path.insert(0, _AliasFinder(self))
        for name in dir(ray):
            if not name.startswith("_"):
                ns[name] = getattr(ray, name)
        # asyncray's modules that Ray also has at the top: through the finder, so
        # the ones with extras are the proxies (and ``sys.modules`` agrees).
        for sub in ("actor", "exceptions", "runtime_context", "remote_function", "util"):
            ns[sub] = importlib.import_module(f"asyncray.{sub}")
        extras: dict[str, Any] = {
            "init": self.make_init(),
            "shutdown": self.make_shutdown(),
            "remote": self.make_remote(),
            "method": self.make_method(),
            "get_async": self.make_get_async(),
            "wait_async": self.make_wait_async(),
            "put_async": self.make_put_async(),
            "cancel_async": cancel_async,
            "get_actor_async": self.make_get_actor_async(),
            "ActorClass": ray.actor.ActorClass,
            "ActorHandle": ray.actor.ActorHandle,
            "RemoteFunction": ray.remote_function.RemoteFunction,
            "RuntimeContext": ray.runtime_context.RuntimeContext,
        }
        ns.update(extras)
        ns.setdefault("ObjectID", ray.ObjectRef)  # Ray's old name, where a Ray lacks it
        ns["__version__"] = __version__
        ns["__backend__"] = "ray"
        ns["__getattr__"] = self.make_getattr()
        ray_all = list(getattr(ray, "__all__", []))
        ns["__all__"] = [*ray_all, *(n for n in extras if n not in ray_all)]
        # cancel_async needs the ray module; bound here once.
        global _RAY
        _RAY = ray

    def make_getattr(self) -> Callable[[str], Any]:
        ray = self.ray

        def __getattr__(name: str) -> Any:  # Ray's lazy names (``ray.data``, ...)
            try:
                return getattr(ray, name)
            except AttributeError:
                raise AttributeError(
                    f"module 'asyncray' has no attribute {name!r} (with {ENV}=ray it is Ray's "
                    "'ray', which has no such name either)"
                ) from None

        return __getattr__

    # ---------------------------------------------------------------- init

    def make_init(self) -> Callable[..., Any]:
        ray = self.ray

        @functools.wraps(ray.init)
        def init(address: str | None = None, **kwargs: Any) -> Any:
            """``ray.init``; the job's workers get ``ASYNCRAY_BACKEND=ray`` too.

            Workers import the driver's modules, which ``import asyncray``: on a
            cluster they must also forward to Ray, so the variable is added to the
            job's ``runtime_env`` ``env_vars`` (unless the program set it there).
            Not when this call starts a local Ray: its workers inherit the
            driver's environment, and a job ``runtime_env`` slows every worker's
            start (it goes through Ray's runtime-env agent).
            """
            if (
                address in (None, "auto")
                and os.environ.get("ASYNCRAY_ADDRESS")
                and not os.environ.get("RAY_ADDRESS")
            ):
                raise ValueError(
                    "ASYNCRAY_ADDRESS names an asyncray head, which Ray cannot join: with "
                    f"{ENV}=ray set RAY_ADDRESS (or pass init(address=...) as Ray expects) "
                    "and unset ASYNCRAY_ADDRESS."
                )
            if not _starts_local_ray(address, kwargs.get("_temp_dir")):
                kwargs["runtime_env"] = _with_backend_var(kwargs.get("runtime_env"))
            return ray.init(address, **kwargs)

        return init

    def make_shutdown(self) -> Callable[..., Any]:
        ray = self.ray
        deadlines = self.deadlines

        @functools.wraps(ray.shutdown)
        def shutdown(*args: Any, **kwargs: Any) -> Any:
            """``ray.shutdown``; pending ``timeout_s`` deadlines go with the session."""
            deadlines.clear()
            return ray.shutdown(*args, **kwargs)

        return shutdown

    # ---------------------------------------------------------------- remote, method

    def make_remote(self) -> Callable[..., Any]:
        ray = self.ray
        backend = self

        @functools.wraps(ray.remote)
        def remote(*args: Any, **kwargs: Any) -> Any:
            """``ray.remote``, plus asyncray's ``timeout_s`` task option (see ``_Deadlines``)."""
            timeout = _UNSET
            if "timeout_s" in kwargs:
                timeout = _check_timeout_s(kwargs.pop("timeout_s"))
            if args and (kwargs or len(args) != 1 or not callable(args[0])):
                return backend.adopt(ray.remote(*args, **kwargs), timeout)
            if args:  # bare @remote
                return backend.adopt(ray.remote(args[0]), timeout)
            decorate = ray.remote(**kwargs) if kwargs else ray.remote

            def decorator(target: Any) -> Any:
                return backend.adopt(decorate(target), timeout)

            return decorator

        return remote

    def adopt(self, made: Any, timeout: Any) -> Any:
        """Give a Ray remote function asyncray's ``timeout_s`` (on it and in ``.options``).

        Only instance attributes are added: the object stays Ray's
        ``RemoteFunction`` (``isinstance`` holds; it pickles as Ray's does).
        """
        ray = self.ray
        if isinstance(made, ray.actor.ActorClass):
            if timeout is not _UNSET:
                raise ValueError(
                    "timeout_s is an option of tasks and actor methods, not of actors: set "
                    "it on the methods (@method(timeout_s=...))."
                )
            return made
        if not isinstance(made, ray.remote_function.RemoteFunction):
            return made
        # Module-level callables, not closures: a remote function that calls itself
        # (or is passed to a task) is pickled with these attributes.
        base_timeout = None if timeout is _UNSET else timeout
        made.options = _Options(made.options, base_timeout)
        if base_timeout is not None:
            made.remote = _TimedRemote(made.remote, base_timeout)
        return made

    def make_method(self) -> Callable[..., Any]:
        ray = self.ray

        @functools.wraps(ray.method)
        def method(*args: Any, **kwargs: Any) -> Any:
            """``ray.method``, plus asyncray's ``timeout_s`` on ``async def`` methods.

            The deadline runs inside the actor, from the call's start
            (``asyncio.wait_for``); a sync method's call cannot be bounded on
            Ray without ending the actor's other work, so it raises.
            """
            if "timeout_s" not in kwargs:
                return ray.method(*args, **kwargs)
            if args:
                raise AssertionError("The @ray.method decorator only takes keyword arguments.")
            timeout = _check_timeout_s(kwargs.pop("timeout_s"))
            ray_decorate = ray.method(**kwargs) if kwargs else None

            def decorate(f: Any) -> Any:
                if timeout is not None:
                    if not inspect.iscoroutinefunction(f):
                        raise _method_timeout_error(getattr(f, "__name__", repr(f)))
                    f = _with_deadline(f, timeout)
                return f if ray_decorate is None else ray_decorate(f)

            return decorate

        return method

    # ---------------------------------------------------------------- the async twins

    def make_get_async(self) -> Callable[..., Any]:
        ray = self.ray

        async def get_async(object_refs: Any, *, timeout: float | None = None) -> Any:
            """Await the object(s) on the running loop: the awaitable twin of ``ray.get``.

            Built on ``ObjectRef.future()``: no thread is blocked while waiting.

            Raises:
                GetTimeoutError: not ready within ``timeout``.
                RayTaskError, ...: as ``ray.get`` raises.
            """
            import asyncio

            if isinstance(object_refs, ray.ObjectRefGenerator):
                return object_refs
            single = isinstance(object_refs, ray.ObjectRef)
            refs = [object_refs] if single else object_refs
            if not isinstance(refs, list):
                raise ValueError(
                    f"Invalid type of object refs, {type(object_refs)}, is given. 'object_refs' "
                    "must either be an ObjectRef or a list of ObjectRefs. "
                )
            for ref in refs:
                if not isinstance(ref, ray.ObjectRef):
                    raise TypeError(
                        f"Attempting to call `get` on the value {ref!r}, which is not an "
                        "ray.ObjectRef."
                    )
            t = _check_timeout("timeout", timeout)
            if not refs:
                return []
            futures = [asyncio.wrap_future(ref.future()) for ref in refs]
            _, pending = await asyncio.wait(futures, timeout=t)
            if pending:
                for f in pending:
                    f.cancel()
                _retrieve(futures)
                raise ray.exceptions.GetTimeoutError("Get timed out: some object(s) not ready.")
            _retrieve(futures)
            values = [f.result() for f in futures]  # the first error in input order
            return values[0] if single else values

        return get_async

    def make_wait_async(self) -> Callable[..., Any]:
        ray = self.ray

        async def wait_async(
            ray_waitables: Any,
            *,
            num_returns: int = 1,
            timeout: float | None = None,
            fetch_local: bool = True,
        ) -> tuple[list[Any], list[Any]]:
            """The awaitable twin of ``ray.wait``: same arguments, same ``(ready, not_ready)``.

            Waits on the refs' futures (no thread blocked); the answer is then
            ``ray.wait``'s own, with ``timeout=0``. A list holding an
            ``ObjectRefGenerator`` waits in a thread of the loop's executor.
            """
            import asyncio

            t = _check_timeout("timeout", timeout)
            # Ray's checks and the refs ready already, without blocking.
            ready, not_ready = ray.wait(
                ray_waitables, num_returns=num_returns, timeout=0, fetch_local=fetch_local
            )
            if len(ready) >= num_returns or t == 0:
                return ready, not_ready
            loop = asyncio.get_running_loop()
            if not all(isinstance(r, ray.ObjectRef) for r in not_ready):
                return await loop.run_in_executor(
                    None,
                    functools.partial(
                        ray.wait,
                        ray_waitables,
                        num_returns=num_returns,
                        timeout=t,
                        fetch_local=fetch_local,
                    ),
                )
            deadline = None if t is None else loop.time() + t
            needed = num_returns - len(ready)
            pending: set[asyncio.Future[Any]] = {asyncio.wrap_future(r.future()) for r in not_ready}
            everything = list(pending)
            try:
                while pending and needed > 0:
                    remaining = None if deadline is None else deadline - loop.time()
                    if remaining is not None and remaining <= 0:
                        break
                    done, pending = await asyncio.wait(
                        pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                    needed -= len(done)
            finally:
                for f in pending:
                    f.cancel()
                _retrieve(everything)
            return ray.wait(
                ray_waitables, num_returns=num_returns, timeout=0, fetch_local=fetch_local
            )

        return wait_async

    def make_put_async(self) -> Callable[..., Any]:
        ray = self.ray

        async def put_async(value: Any) -> Any:
            """``ray.put`` for async code (it copies the value in and returns; for symmetry)."""
            return ray.put(value)

        return put_async

    def make_get_actor_async(self) -> Callable[..., Any]:
        ray = self.ray

        async def get_actor_async(name: str, namespace: str | None = None) -> Any:
            """``ray.get_actor`` without blocking the loop (it asks the GCS: run in a thread)."""
            import asyncio

            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                None, functools.partial(ray.get_actor, name, namespace=namespace)
            )

        return get_actor_async


class _Options:
    """A remote function's ``options``: Ray's, plus asyncray's ``timeout_s``."""

    def __init__(self, ray_options: Callable[..., Any], timeout_s: float | None) -> None:
        self._ray_options = ray_options  # Ray's bound method
        self._timeout_s = timeout_s
        functools.update_wrapper(self, ray_options)

    def __call__(self, **task_options: Any) -> Any:
        t = self._timeout_s
        if "timeout_s" in task_options:
            t = _check_timeout_s(task_options.pop("timeout_s"))
        wrapper = self._ray_options(**task_options)
        return wrapper if t is None else _TimedCall(wrapper, t)


class _TimedRemote:
    """A remote function's ``remote`` with a ``timeout_s`` deadline."""

    def __init__(self, remote: Callable[..., Any], timeout_s: float) -> None:
        self._remote = remote
        self._timeout_s = timeout_s
        functools.update_wrapper(self, remote)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _track(self._remote(*args, **kwargs), self._timeout_s)


class _TimedCall:
    """``f.options(timeout_s=...)``: Ray's options wrapper whose tasks get the deadline."""

    def __init__(self, inner: Any, timeout_s: float) -> None:
        self._inner = inner
        self._timeout_s = timeout_s

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit the task; it is cancelled if still running ``timeout_s`` from now."""
        return _track(self._inner.remote(*args, **kwargs), self._timeout_s)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """Ray DAGs have no deadline to carry ``timeout_s``: refused, not dropped."""
        raise ValueError(
            f"timeout_s cannot be applied to a Ray DAG node (.bind()) with {ENV}=ray: "
            "drop the option for DAGs."
        )


# The process's deadlines (set by ``install``); reached through ``_track`` so that
# pickled remote functions never carry the thread and its lock.
_DEADLINES: _Deadlines | None = None


def _track(result: Any, timeout_s: float) -> Any:
    """Give the task behind ``result`` (what ``.remote()`` returned) its deadline."""
    # ``num_returns=k`` gives a list: cancelling any one ref cancels the task.
    if isinstance(result, list):
        if not result:
            return result
        first = result[0]
    else:
        first = result
    assert _DEADLINES is not None
    _DEADLINES.add(first, timeout_s)
    return result


def _starts_local_ray(address: Any, temp_dir: Any) -> bool:
    """Whether ``ray.init(address)`` will start a new local Ray (else it joins a cluster).

    Asks Ray's own address resolution (a private function: on any failure,
    the answer is "joins", which only costs the ``runtime_env``).
    """
    if isinstance(address, str) and "://" in address:
        return False  # Ray Client
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(address, temp_dir) is None
    except Exception:
        return False


def _with_backend_var(runtime_env: Any) -> Any:
    """``runtime_env`` with ``env_vars[ASYNCRAY_BACKEND] = "ray"`` unless the program set it."""
    env = dict(runtime_env or {})
    env_vars = dict(env.get("env_vars") or {})
    env_vars.setdefault(ENV, "ray")
    env["env_vars"] = env_vars
    if runtime_env is not None and type(runtime_env) is not dict:
        return type(runtime_env)(**env)  # Ray's RuntimeEnv (a dict subclass)
    return env


def _retrieve(futures: list[asyncio.Future[Any]]) -> None:
    """Mark the futures' exceptions retrieved (asyncio logs the ones nobody read)."""
    for f in futures:
        if f.done() and not f.cancelled():
            f.exception()


_RAY: Any = None


async def cancel_async(ray_waitable: Any, *, force: bool = False, recursive: bool = True) -> None:
    """``ray.cancel`` for async code (it only sends the request; for symmetry)."""
    _RAY.cancel(ray_waitable, force=force, recursive=recursive)


class UnsupportedLibraryError(ImportError):
    """(asyncray) A Ray library outside Core was imported from asyncray.

    Never raised with ``ASYNCRAY_BACKEND=ray``: Ray's libraries are Ray's. The
    class exists so that ``except`` clauses naming it keep working.
    """


def scripts_main(argv: list[str] | None = None) -> int:
    """The ``asyncray`` command under the switch: the cluster is Ray's, so is its command."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "start"
    print(
        f"asyncray {command}: {ENV}=ray hands programs to Ray, whose cluster asyncray does "
        f"not run: use `ray {command}` (e.g. `ray start --head`, `ray status`, `ray stop`) and "
        "connect with init(address=...) as Ray expects; or unset "
        f"{ENV} to use asyncray's own head.",
        file=sys.stderr,
    )
    return 2
