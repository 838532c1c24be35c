"""asyncray: Ray Core's programming model on one machine, with no cluster to start.

``import asyncray as ray`` runs programs written for Ray's API. Every blocking
call has an awaitable twin (``get_async``, ``wait_async``, ``await ref``).
"""

import os as _os

# ASYNCRAY_BACKEND=ray hands the program to real Ray (``_ray_backend``:
# docs/ray-compatibility.md, "The way out"). Read here, before anything else is
# imported: the default path costs one dict lookup.
__backend__ = "asyncray"
if _os.environ.get("ASYNCRAY_BACKEND", "") not in ("", "asyncray"):
    from ._ray_backend import install as _install

    _install(__name__, _os.environ["ASYNCRAY_BACKEND"])
else:
    from . import actor, exceptions, util
    from ._api import (
        available_resources,
        cluster_resources,
        get,
        get_async,
        get_gpu_ids,
        init,
        is_initialized,
        nodes,
        put,
        put_async,
        shutdown,
        wait,
        wait_async,
    )
    from ._remote import method, remote
    from .actor import ActorClass, ActorHandle, get_actor, get_actor_async, kill
    from .object_ref import ObjectRef
    from .object_ref_generator import ObjectRefGenerator, cancel, cancel_async
    from .remote_function import RemoteFunction
    from .runtime_context import RuntimeContext, get_runtime_context

    def timeline(filename: str | None = None) -> list[dict[str, object]] | None:
        """Ray's ``timeline``: this session's tasks and actor calls as Chrome trace events.

        With ``filename``, writes them there as JSON (open it in chrome://tracing
        or https://ui.perfetto.dev) and returns None; else returns the list.
        """
        from .util.state.timeline import timeline as _timeline

        return _timeline(filename)

    # Ray's old name for ObjectRef, still exported by Ray 2.60 (the same class).
    ObjectID = ObjectRef

    from ._version import __version__ as __version__

    def __getattr__(name: str) -> object:
        # ``ray.data``, ``ray.serve``, ...: the clear message of the library's import
        # error, as an AttributeError, so ``hasattr(asyncray, "data")`` stays False
        # (importing it, ``from asyncray import data`` included, raises the
        # ImportError ``UnsupportedLibraryError``: see the stub modules).
        from .exceptions import RAY_LIBRARIES, UnsupportedLibraryError

        if name in RAY_LIBRARIES:
            raise AttributeError(str(UnsupportedLibraryError(name)))
        raise AttributeError(f"module 'asyncray' has no attribute {name!r}")

    __all__ = [
        "ActorClass",
        "ActorHandle",
        "ObjectID",
        "ObjectRef",
        "ObjectRefGenerator",
        "RemoteFunction",
        "RuntimeContext",
        "actor",
        "available_resources",
        "cancel",
        "cancel_async",
        "cluster_resources",
        "exceptions",
        "get",
        "get_actor",
        "get_actor_async",
        "get_async",
        "get_gpu_ids",
        "get_runtime_context",
        "init",
        "is_initialized",
        "kill",
        "method",
        "nodes",
        "put",
        "put_async",
        "remote",
        "shutdown",
        "timeline",
        "util",
        "wait",
        "wait_async",
    ]
