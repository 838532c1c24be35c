"""``ObjectRefGenerator``: the refs of a streaming generator's items, as they are yielded.

``for ref in gen`` / ``next(gen)`` block until the next item exists;
``async for ref in gen`` / ``await gen.__anext__()`` await it on any running
loop. An error raised inside the generator arrives as one more item: ``get``
of that ref raises it, and iteration stops after it. In ``wait`` a generator
is ready when its next item is available or it has finished.

Each ``next`` tells the runtime how far the consumer got, which is what
backpressure (``_generator_backpressure_num_objects``) counts. Dropping the
generator frees the items it still held and releases the producer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from . import _api, _task_context
from ._clients import base as _client
from ._wire import protocol as P
from ._wire import refs
from ._wire import serialization as ser
from .object_ref import ObjectRef

# The id suffix of a stream's completion object (``completed()``).
COMPLETION_INDEX = b"\xff\xff\xff\xff"

T = TypeVar("T", covariant=True)


class ObjectRefGenerator(Iterator[ObjectRef[T]], AsyncIterator[ObjectRef[T]]):
    """Iterate (sync or async) over the refs of a streaming task's items (of type ``T``)."""

    def __init__(self, task_id: bytes, _owned: bool = True) -> None:
        self._task_id = task_id
        self._next_index = 1
        self._finished = False
        self._owned = _owned
        # After cancel(), items already delivered here are not taken locally:
        # the runtime answers the next one (with the cancellation, if it came first).
        self._cancelled = False

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id.hex()})"

    def _item_id(self, index: int) -> bytes:
        return self._task_id + index.to_bytes(4, "little")

    def _wait_id(self) -> bytes:
        """The id ``wait`` watches: the next item (or the end marker after the last)."""
        return self._item_id(self._next_index)

    # ------------------------------------------------------------ sync

    def __iter__(self) -> ObjectRefGenerator[T]:
        return self

    def __next__(self) -> ObjectRef[T]:
        return self._next_sync(None)

    def _next_sync(self, timeout_s: float | None = None) -> ObjectRef[T]:
        """The next item's ref; ``ObjectRef.nil()`` if ``timeout_s`` passed first (as Ray)."""
        if self._finished:
            raise StopIteration
        client = _api.client()
        index = self._next_index
        local = self._take_local(client, index)
        if local is not None:
            return local
        reply = client.request(
            P.StreamNext(
                req_id=client.next_req_id(),
                task_id=self._task_id,
                index=index,
                timeout=_api._timeout_value(timeout_s),
            )
        )
        return self._take(client, index, reply)

    # ------------------------------------------------------------ async

    def __aiter__(self) -> ObjectRefGenerator[T]:
        return self

    async def __anext__(self) -> ObjectRef[T]:
        return await self._next_async(None)

    async def _next_async(self, timeout_s: float | None = None) -> ObjectRef[T]:
        if self._finished:
            raise StopAsyncIteration
        client = _api.client()
        index = self._next_index
        local = self._take_local(client, index)
        if local is not None:
            return local
        reply = await client.request_async(
            P.StreamNext(
                req_id=client.next_req_id(),
                task_id=self._task_id,
                index=index,
                timeout=_api._timeout_value(timeout_s),
            )
        )
        try:
            return self._take(client, index, reply)
        except StopIteration:
            raise StopAsyncIteration from None

    # ------------------------------------------------------------ shared

    def _take_local(self, client: _client.ClientBase, index: int) -> ObjectRef[Any] | None:
        """The next item, if the runtime already delivered it to this process's store.

        No round trip: the runtime only hears that it was taken (backpressure).
        """
        oid = self._item_id(index)
        if oid not in client.local_values or self._cancelled:
            return None
        client.post(P.StreamNext(req_id=0, task_id=self._task_id, index=index, timeout=0.0))
        self._next_index = index + 1
        return ObjectRef(oid, True)

    def _take(
        self, client: _client.ClientBase, index: int, reply: P.ObjectsReply
    ) -> ObjectRef[Any]:
        data = reply.values[0]
        if reply.timed_out or data is None:
            return ObjectRef.nil()
        if data == P.STREAM_END:
            self._finished = True
            raise StopIteration
        oid = self._item_id(index)
        self._next_index = index + 1
        if refs.has_refs(data):
            ser.discard(data)  # not loaded here: the get that follows fetches it again
        elif not reply.errors[0] and len(data) <= _client.LOCAL_VALUE_LIMIT:
            client.local_values[oid] = data  # the get that follows is local
        return ObjectRef(oid, True)

    def completed(self) -> ObjectRef[Any]:
        """A ref that is ready once the generator task has finished.

        Its value is ``None``; it raises if the task failed as a whole
        (cancelled, crashed), not for an error raised at an item.
        """
        return ObjectRef(self._task_id + COMPLETION_INDEX)

    def is_finished(self) -> bool:
        """True once the generator has ended and every item has been taken."""
        if self._finished:
            return True
        client = _api.client()
        # A plain get (not StreamNext): peeking must not count as consuming.
        reply = client.request(
            P.GetObjects(client.next_req_id(), [self._item_id(self._next_index)], 0.0)
        )
        if not reply.timed_out and reply.values[0] == P.STREAM_END:
            self._finished = True
        return self._finished

    def next_ready(self) -> bool:
        """Whether ``next()`` would return without blocking."""
        ready, _ = _api.wait([self], timeout=0)
        return bool(ready)

    def __reduce__(self) -> Any:
        # As in Ray 2.60: a generator is consumed where it was created (its
        # items are taken, counted and freed by that process alone).
        raise TypeError(
            "You cannot return or pass a generator to other task. Serializing a "
            "ObjectRefGenerator is not allowed. Pass the refs it yields instead "
            "(each one, or list(gen)), or consume it where it was created."
        )

    def __del__(self) -> None:
        if self._owned:
            client = _client._current
            if client is not None:
                try:
                    client.post(P.ReleaseStream(self._task_id))
                except Exception:
                    pass


def start_actor_stream(
    client: _client.ClientBase,
    handle: Any,
    name: str,
    payload: bytes,
    dep_ids: list[bytes],
    group: str,
    retries: int,
    task_id: bytes,
    call_opts: dict[str, Any],
    backpressure: int,
    timeout_s: float,
    retry_exc: bytes = P.RETRY_NONE,
) -> ObjectRefGenerator[Any]:
    client.post(
        P.CallActor(
            task_id=task_id,
            actor_id=handle._actor_id,
            method=name,
            args=payload,
            dep_ids=dep_ids,
            return_ids=[],
            group=group,
            max_task_retries=retries,
            streaming=True,
            backpressure=backpressure,
            timeout_s=timeout_s,
            parent=_task_context.current_task().task_id or b"",
            retry_exc=retry_exc,
        )
    )
    return ObjectRefGenerator(task_id)


def cancel(ref: Any, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task (or actor call, or generator) that produces ``ref``.

    A queued task never runs; a running one gets ``KeyboardInterrupt`` (which
    also interrupts ``time.sleep`` and blocking I/O); ``force=True`` kills its
    worker instead. ``get`` then raises ``TaskCancelledError``. Cancelling a
    finished task does nothing.

    Raises:
        TypeError: ``ref`` is neither an ``ObjectRef`` nor an ``ObjectRefGenerator``.
        ValueError: ``force=True`` for an actor call (as in Ray).
    """
    if isinstance(ref, ObjectRefGenerator):
        task_id = ref._task_id
        ref._cancelled = True
    elif isinstance(ref, ObjectRef):
        task_id = ref.task_id()
    else:
        raise TypeError(
            "ray.cancel() only supported for object refs and generators. "
            f"For actors, try ray.kill(). Got: {type(ref)}."
        )
    client = _api.client()
    if force and task_id in _actor_task_ids:
        raise ValueError("force=True is not supported for actor tasks.")
    client.post(P.CancelTask(task_id, bool(force), bool(recursive)))


async def cancel_async(ref: Any, *, force: bool = False, recursive: bool = True) -> None:
    """``cancel`` for async code (it never blocks; this is for symmetry)."""
    cancel(ref, force=force, recursive=recursive)


# Task ids of actor calls made from this process, so cancel(force=True) can
# refuse them at the call site as Ray does. Bounded: only recent ids matter.
_actor_task_ids: dict[bytes, None] = {}
_ACTOR_IDS_KEPT = 100_000


def remember_actor_task(task_id: bytes) -> None:
    _actor_task_ids[task_id] = None
    if len(_actor_task_ids) > _ACTOR_IDS_KEPT:
        for key in list(_actor_task_ids)[: _ACTOR_IDS_KEPT // 2]:
            del _actor_task_ids[key]
