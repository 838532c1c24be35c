"""``ObjectRef``: a name for a value that exists, or will, in the runtime.

A ref is hashable and compares by id. It is awaitable on any running event
loop (``await ref``), so it also works with ``asyncio.gather``,
``asyncio.wait``, ``asyncio.wait_for`` and ``asyncio.as_completed``;
``ref.future()`` gives a ``concurrent.futures.Future``.

Lifetime (reference counting): the runtime counts, per object, the units
held by live refs, by stored objects and pending task arguments that contain
refs to it. A ref made by ``put`` or ``.remote()`` owns one unit; a ref
rebuilt from a payload (an argument, a value, a result) owns the unit the
runtime granted when it sent that payload. Dropping a ref gives its unit
back; at zero the object is freed. A ref pickled outside asyncray (say by
``pickle.dumps``) cannot be followed, so its object stays pinned for the
session, as in Ray.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._clients import base as _client
from ._wire import refs as _refs

if TYPE_CHECKING:
    import concurrent.futures

_new_ref = object.__new__
_rebuilt = _refs.rebuilt

# Covariant: a ref to an ``int`` is a ref to an ``int | None`` (a ref never changes).
T = TypeVar("T", covariant=True)

_ID_SIZE = 28


def _rebuild(binary: bytes) -> ObjectRef[Any]:
    """Unpickle a ref from a payload: it owns the unit the runtime granted for it.

    The hottest line of a get of many refs: no ``__init__`` call.
    """
    _rebuilt.n += 1
    ref = _new_ref(ObjectRef)
    ref._id = binary
    ref._owned = True
    ref._fut = None
    return ref


class ObjectRef(Generic[T]):
    """A reference to a remote object; ``get`` or ``await`` it for the value."""

    __slots__ = ("__weakref__", "_fut", "_id", "_owned")

    def __init__(self, binary: bytes, _owned: bool = False) -> None:
        if not isinstance(binary, bytes):
            raise TypeError(f"ObjectRef expects the id as bytes, got {type(binary).__name__}")
        self._id = binary
        self._owned = _owned
        self._fut: Any = None

    # ------------------------------------------------------------ identity

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self) -> bytes:
        return self._id[:24]

    def job_id(self) -> str:
        from . import _api

        return _api.job_id()

    def is_nil(self) -> bool:
        return self._id == bytes(len(self._id))

    @classmethod
    def nil(cls) -> ObjectRef[Any]:
        return cls(bytes(_ID_SIZE))

    @classmethod
    def from_random(cls) -> ObjectRef[Any]:
        return cls(os.urandom(_ID_SIZE))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._id == self._id

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    # ------------------------------------------------------------ lifetime

    def __reduce__(self) -> Any:
        collecting = _refs.state.collecting
        if collecting is None:
            # Pickled outside asyncray (out-of-band, e.g. by ``pickle.dumps``):
            # nobody can count where the copy goes, so pin the object for
            # the session, as Ray does.
            self._owned = False
            return (ObjectRef, (self._id,))
        # Inside a payload: the runtime counts the payload's refs and grants
        # each receiving process one unit per ref, owned by the rebuilt ref.
        collecting.append(self._id)
        return (_rebuild, (self._id,))

    def __copy__(self) -> ObjectRef[T]:
        return self  # immutable: a copy is the same reference

    def __deepcopy__(self, memo: Any) -> ObjectRef[T]:
        return self

    def __del__(self) -> None:
        if self._owned:
            client = _client._current
            if client is not None:
                # ``ClientBase.release``, inlined: this runs once per dropped ref.
                released = client._released
                released.append(self._id)
                if len(released) >= _client.RELEASE_BATCH:
                    try:
                        client.flush_releases()
                    except Exception:
                        pass  # interpreter shutdown, closed loop: nothing left to free

    # ------------------------------------------------------------ async

    def __await__(self) -> Generator[Any, None, T]:
        from . import _api

        return _api.get_async(self).__await__()

    # The asyncio future protocol, so ``asyncio.wait(refs)`` works on Python
    # 3.11+, which no longer wraps awaitables (Ray issue #31606). Backed by one
    # task per ref on the loop that first asks.

    def _loop_future(self) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        fut = self._fut
        if fut is None or fut.get_loop() is not loop:
            from . import _api

            fut = self._fut = loop.create_task(_api.get_async(self))
        return fut

    def add_done_callback(self, fn: Callable[[Any], None], *, context: Any = None) -> None:
        self._loop_future().add_done_callback(fn, context=context)

    def remove_done_callback(self, fn: Callable[[Any], None]) -> int:
        return 0 if self._fut is None else self._fut.remove_done_callback(fn)

    def done(self) -> bool:
        return self._fut is not None and self._fut.done()

    def cancelled(self) -> bool:
        return self._fut is not None and self._fut.cancelled()

    def result(self) -> T:
        return self._loop_future().result()

    def exception(self) -> BaseException | None:
        return self._loop_future().exception()

    def get_loop(self) -> Any:
        return self._loop_future().get_loop()

    def future(self) -> concurrent.futures.Future[T]:
        """A ``concurrent.futures.Future`` completed with the value or the error.

        Cancelling the future does not cancel the task.
        """
        from . import _api

        return _api.future_of(self)

    def as_future(self) -> Any:
        """Deprecated (as in Ray): use ``asyncio.wrap_future(ref.future())``."""
        import asyncio

        warnings.warn(
            "ref.as_future() is deprecated in favor of asyncio.wrap_future(ref.future()).",
            DeprecationWarning,
            stacklevel=2,
        )
        return asyncio.wrap_future(self.future())

    def _on_completed(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(value_or_exception)`` when the object is ready (private in Ray too)."""

        def done(fut: concurrent.futures.Future[Any]) -> None:
            error = fut.exception()
            callback(error if error is not None else fut.result())

        self.future().add_done_callback(done)
