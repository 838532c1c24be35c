"""Debug mode's client: every task and actor call runs here, in the calling thread.

``init(debug=True)`` (or ``ASYNCRAY_DEBUG=1``) starts no runtime thread, no
zygote and no worker: the session's client is a ``DebugClient``, which
answers the same protocol messages the kernel would, synchronously, in the
thread that sends them. A ``SubmitTask`` runs the function at once (so tasks
run in submission order), a ``CallActor`` runs the method on the instance
kept here; a ``GetObjects`` or ``WaitObjects`` reads the object table, where
everything submitted is already ready. So ``breakpoint()``, pdb, coverage
and profilers see task code as the driver's own.

What stays as in a normal session: arguments and results still go through
serialization (a task gets a copy of its arguments; the caller gets a copy of
the result), errors are built as a worker builds them (``RayTaskError``
wrapping the user's exception, ``ActorDiedError`` for a failed ``__init__``),
and refs, ``get``, ``wait``, generators, named actors and ``kill`` behave as
documented. What differs (README, "Debugging"): functions and classes are
the driver's own objects (module globals a task changes are the driver's),
streaming generators run lazily, one item per ``next`` (an item is produced
when the consumer asks for it), async code runs to completion on a private
event loop (calls of one actor never overlap), resources, retries,
``timeout_s``, restarts and cancellation of a running task are not emulated,
objects are kept until ``shutdown()``; a ``util.queue.Queue`` call that would
wait for ever (no other thread can end the wait) raises. The state API raises
a ``RaySystemError`` naming debug mode.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from .. import _task_context
from .. import exceptions as exc
from .._wire import protocol as P
from .._wire import serialization as ser
from .._worker.actor_host import method_of
from .._worker.main import resolve_arguments, serialize_returns
from .base import ClientBase

# The id suffix of a stream's completion object (``ObjectRefGenerator.completed()``).
STREAM_COMPLETION = b"\xff\xff\xff\xff"

_NONE = ser.dumps(None)


def not_available(what: str) -> exc.RaySystemError:
    """The error for a feature debug mode does not offer."""
    return exc.RaySystemError(
        f"{what} is not available in debug mode (asyncray.init(debug=True) or "
        "ASYNCRAY_DEBUG=1): tasks run in the driver process. Run without debug mode to use it."
    )


def _lost(oid: bytes) -> bytes:
    return ser.dumps_function(
        exc.ObjectLostError(oid.hex(), "", "The object was never created in this session.")
    )


class _Actor:
    """An actor living in the driver (what ``exit_actor`` and ``current_actor`` read)."""

    def __init__(self, msg: P.CreateActor) -> None:
        self.actor_binary_id = msg.actor_id
        self.actor_id = msg.actor_id.hex()
        self.class_name = msg.class_name
        self.config: dict[str, Any] = ser.loads(msg.config)
        self.name = msg.name
        self.namespace = msg.namespace
        self.meta = msg.meta
        self.resources = dict(msg.hold)
        self.instance: Any = None
        # The payload every call gets once the actor is dead (None while alive).
        self.death: bytes | None = None

    def context(self, task_id: bytes | None) -> _task_context.TaskContext:
        ctx = _task_context.TaskContext(
            task_id, self.class_name, self.resources, [], self.actor_id, self.name
        )
        ctx.is_async_actor = self.config.get("kind") == "async"
        return ctx

    def died(self, reason: str) -> bytes:
        name_line = f"\tname: {self.name}\n" if self.name else ""
        text = (
            "The actor died unexpectedly before finishing this task.\n"
            f"\tclass_name: {self.class_name}\n"
            f"\tactor_id: {self.actor_id}\n"
            f"{name_line}"
            f"\tnamespace: {self.namespace}\n"
            f"{reason}"
        )
        self.death = ser.dumps_function(exc.ActorDiedError(self.actor_id, text))
        return self.death

    def method(self, name: str) -> Any:
        return method_of(self.instance, name)

    def error(self, error: BaseException, method: str) -> bytes:
        try:
            actor_repr = repr(self.instance)
        except Exception:
            actor_repr = f"<{self.class_name} object>"
        return ser.dumps_task_error(
            error, f"{self.class_name}.{method}", actor_repr=actor_repr, actor_id=self.actor_id
        )


def _exited(error: BaseException) -> bytes:
    """``sys.exit()`` in a task: its worker would have died (no process ends here)."""
    code = error.code if isinstance(error, SystemExit) else None
    return ser.dumps_function(
        exc.WorkerCrashedError(
            f"The task called sys.exit({code!r}), which ends a worker process (debug mode: "
            "the driver goes on)."
        )
    )


class _Stream:
    """A streaming generator, advanced one item each time its consumer asks for one."""

    def __init__(
        self,
        client: DebugClient,
        task_id: bytes,
        gen: Any,
        ctx: _task_context.TaskContext,
        name: str,
        error: Callable[[BaseException], bytes],
        actor: _Actor | None = None,
    ) -> None:
        self.client = client
        self.task_id = task_id
        self.gen = gen
        self.ctx = ctx
        self.name = name
        self.error = error
        self.actor = actor
        self.produced = 0
        self.done = False

    def fail_now(self, payload: bytes) -> None:
        """The task failed before its generator existed: one error item, then the end."""
        self._seal(payload, True)
        self._finish()

    def _seal(self, data: bytes, is_error: bool) -> None:
        self.produced += 1
        self.client.objects[self.task_id + self.produced.to_bytes(4, "little")] = (data, is_error)

    def _finish(self) -> None:
        self.done = True
        objects = self.client.objects
        objects[self.task_id + (self.produced + 1).to_bytes(4, "little")] = (P.STREAM_END, False)
        objects[self.task_id + STREAM_COMPLETION] = (_NONE, False)
        self.client.streams.pop(self.task_id, None)

    def produce_up_to(self, index: int) -> None:
        """Run the generator until item ``index`` exists (or it has ended)."""
        while not self.done and self.produced < index:
            self._step()

    def _step(self) -> None:
        client = self.client
        token = _task_context.set_current_task(self.ctx)
        hosted = client.host(self.actor)
        try:
            if inspect.isasyncgen(self.gen):
                item = client.run_coroutine(self.gen.__anext__())
            else:
                item = next(self.gen)
        except (StopIteration, StopAsyncIteration):
            self._finish()
            return
        except KeyboardInterrupt:
            raise
        except _EXITS as e:
            if self.actor is None:
                self._seal(_exited(e), True)
            else:
                self._seal(client.actor_exited(self.actor, e), True)
            self._finish()
            return
        except BaseException as e:
            self._seal(self.error(e), True)
            self._finish()
            return
        finally:
            client.unhost(hosted)
            _task_context.reset_current_task(token)
        try:
            data = serialize_returns(item, 1, self.name)[0]
        except Exception as e:
            self._seal(self.error(e), True)
            self._finish()
            return
        self._seal(data, False)

    def cancel(self) -> None:
        if self.done:
            return
        with contextlib.suppress(BaseException):
            if inspect.isasyncgen(self.gen):
                self.client.run_coroutine(self.gen.aclose())
            else:
                self.gen.close()
        cancelled = exc.TaskCancelledError(self.task_id.hex())
        self._seal(ser.dumps_task_error(cancelled, self.name, wrap_ray_error=True), True)
        self._finish()


# What ends an actor when a method raises it: exit_actor() (sync and async) and sys.exit().
_EXITS = (SystemExit, exc.AsyncioActorExit)


class DebugClient(ClientBase):
    """Runs every task and actor call in the thread that submits it (see module docstring)."""

    is_driver = True

    def __init__(self, totals: dict[str, float]) -> None:
        super().__init__()
        self.totals = totals
        # Every object of the session: id -> (payload, is_error).
        self.objects: dict[bytes, tuple[bytes, bool]] = {}
        self.functions: dict[bytes, Any] = {}
        self.actors: dict[bytes, _Actor] = {}
        self.names: dict[tuple[str, str], _Actor] = {}
        self.streams: dict[bytes, _Stream] = {}
        # Placement groups: every one is created at once (resources are not enforced).
        self.groups: dict[bytes, P.CreatePlacementGroup] = {}
        self.removed_groups: set[bytes] = set()
        # util.queue.Queue: items by queue id (maxsize, items); one condition for all
        # of them, outside ``lock`` (a thread blocked on a queue holds no task).
        self.queue_items: dict[bytes, tuple[int, deque[bytes]]] = {}
        self.queue_changed = threading.Condition(threading.Lock())
        # One task runs at a time, whichever thread submits it (re-entrant: nested tasks).
        self.lock = threading.RLock()
        # Private event loops for async code, by nesting depth (see ``run_coroutine``).
        self._loops: list[Any] = []
        self._depth = 0
        self.closed = False

    # ------------------------------------------------------------ sending

    def ensure_function(self, func_id: bytes, blob: Callable[[], bytes]) -> None:
        """Keep the function (or class) itself: pdb and coverage see the driver's own code.

        ``blob()`` still runs, so an unpicklable function fails as in a normal session.
        """
        if func_id in self._registered:
            return
        data = blob()
        owner = getattr(blob, "__self__", None)
        original = getattr(owner, "function", None)
        if original is None:
            original = getattr(owner, "cls", None)
        with self.lock:
            self.functions[func_id] = ser.loads(data) if original is None else original
        self._registered.add(func_id)

    def post(self, msg: Any) -> None:
        self._check_open()
        kind = type(msg)
        handler = _POSTED.get(kind)
        if handler is None:
            if kind in _IGNORED:
                return
            if kind is P.CreateQueue:
                with self.queue_changed:
                    self.queue_items[msg.queue_id] = (max(msg.maxsize, 0), deque())
                return
            if kind is P.QueueOp:
                self._queue_op(msg)  # a close, a dropped batch: no reply wanted
                return
            raise not_available(f"The message {kind.__name__}")
        with self.lock:
            handler(self, msg)

    def flush_releases(self) -> None:
        self._take_releases()  # objects are kept until shutdown: nothing to tell

    # ------------------------------------------------------------ requests

    def request(self, msg: Any) -> Any:
        self._check_open()
        if type(msg) is P.QueueOp:
            return self._queue_op(msg)  # not under ``lock``: it may wait for another thread
        handler = _REQUESTS.get(type(msg))
        if handler is None:
            raise not_available(f"The request {type(msg).__name__}")
        with self.lock:
            return handler(self, msg)

    async def request_async(self, msg: Any) -> Any:
        return self.request(msg)

    def request_callback(self, msg: Any, callback: Callable[[Any], None]) -> None:
        callback(self.request(msg))

    def _reserve_segment(self, size: int) -> tuple[str, bool]:
        raise not_available("Shared memory")

    def _check_open(self) -> None:
        if self.closed:
            raise exc.RaySystemError("asyncray has been shut down; call asyncray.init() again.")

    def close(self) -> None:
        """At shutdown: close the private event loop; the objects go with the client."""
        self.closed = True
        loops, self._loops = self._loops, []
        for loop in loops:
            with contextlib.suppress(Exception):
                self.run_coroutine(loop.shutdown_asyncgens(), loop)
            loop.close()
        self.objects.clear()
        self.streams.clear()
        self.actors.clear()
        self.names.clear()
        with self.queue_changed:
            self.queue_items.clear()
            self.queue_changed.notify_all()

    # ------------------------------------------------------------ async code

    def run_coroutine(self, coro: Any, loop: Any = None) -> Any:
        """Run ``coro`` to completion on a private event loop, in this thread.

        Called from async code (a loop already runs in this thread: the
        caller's, or the private loop when an async method calls an async
        actor), that loop is set aside meanwhile, as asyncio runs one loop per
        thread at a time, and the nested call gets a private loop of its own
        depth (kept for the next call at that depth).
        """
        import asyncio

        if loop is None:
            loops = self._loops
            depth = self._depth
            if depth == len(loops):
                loops.append(asyncio.new_event_loop())
            loop = loops[depth]
        outer = asyncio.events._get_running_loop()
        if outer is not None:
            asyncio.events._set_running_loop(None)
        self._depth += 1
        try:
            return loop.run_until_complete(coro)
        finally:
            self._depth -= 1
            if outer is not None:
                asyncio.events._set_running_loop(outer)

    # ------------------------------------------------------------ objects

    def _entry(self, oid: bytes) -> tuple[bytes, bool] | None:
        """The object ``oid``, produced now if it is a stream's item not yet made."""
        entry = self.objects.get(oid)
        if entry is None and len(oid) == 28:
            stream = self.streams.get(oid[:24])
            if stream is not None:
                suffix = oid[24:]
                if suffix == STREAM_COMPLETION:
                    stream.produce_up_to(sys.maxsize)
                else:
                    stream.produce_up_to(int.from_bytes(suffix, "little"))
                entry = self.objects.get(oid)
        return entry

    def _dependencies(self, dep_ids: list[bytes]) -> tuple[list[bytes], bytes | None]:
        """The values of a call's top-level refs, or the first error among them."""
        values = []
        for oid in dep_ids:
            entry = self._entry(oid)
            if entry is None:
                return [], _lost(oid)
            data, is_error = entry
            if is_error:
                return [], data
            values.append(data)
        return values, None

    def _seal_all(self, ids: list[bytes], data: bytes, is_error: bool) -> None:
        for oid in ids:
            self.objects[oid] = (data, is_error)

    # ------------------------------------------------------------ tasks

    def _on_register(self, msg: P.RegisterFunction) -> None:
        self.functions.setdefault(msg.func_id, ser.loads(msg.blob))

    def _on_put(self, msg: P.PutObject) -> None:
        self.objects[msg.object_id] = (msg.data, msg.is_error)

    def _on_submit(self, msg: P.SubmitTask) -> None:
        ctx = _task_context.TaskContext(msg.task_id, msg.name, msg.resources, [])
        if msg.pg_id:
            entry = self.objects.get(P.pg_ready_object_id(msg.pg_id))
            if entry is not None:
                ctx.placement_group = ser.loads(entry[0])
                ctx.pg_capture = msg.pg_capture

        def error(e: BaseException) -> bytes:
            return ser.dumps_task_error(e, msg.name)

        self._run(
            msg.task_id,
            self.functions[msg.func_id],
            msg,
            ctx,
            msg.name,
            error,
            None,
        )

    def _run(
        self,
        task_id: bytes,
        fn: Any,
        msg: P.SubmitTask | P.CallActor,
        ctx: _task_context.TaskContext,
        name: str,
        error: Callable[[BaseException], bytes],
        actor: _Actor | None,
    ) -> None:
        """Run one task or actor call now and seal its results (or its error)."""
        stream = _Stream(self, task_id, None, ctx, name, error, actor) if msg.streaming else None
        if stream is not None:
            self.streams[task_id] = stream
        values, failed = self._dependencies(msg.dep_ids)
        if failed is not None:
            failed = ser.dependency_failure(name, failed)  # names this task, as the kernel's
            if stream is not None:
                stream.fail_now(failed)
            else:
                self._seal_all(msg.return_ids, failed, True)
            return
        token = _task_context.set_current_task(ctx)
        hosted = self.host(actor)
        try:
            args, kwargs = resolve_arguments(msg.args, values)
            if actor is not None:
                fn = actor.method(fn)
            result = fn(*args, **kwargs)
            if stream is not None:
                # Any iterable streams, as the worker's ``for value in gen``.
                stream.gen = result if inspect.isasyncgen(result) else iter(result)
                return
            if inspect.iscoroutine(result):
                result = self.run_coroutine(result)
            payloads = serialize_returns(result, len(msg.return_ids), name)
        except KeyboardInterrupt:
            raise  # Ctrl-C while debugging stops the driver, not just the task
        except _EXITS as e:
            payload = _exited(e) if actor is None else self.actor_exited(actor, e)
            if stream is not None:
                stream.fail_now(payload)
            else:
                self._seal_all(msg.return_ids, payload, True)
            return
        except BaseException as e:
            if stream is not None:
                stream.fail_now(error(e))
            else:
                self._seal_all(msg.return_ids, error(e), True)
            return
        finally:
            self.unhost(hosted)
            _task_context.reset_current_task(token)
        for oid, data in zip(msg.return_ids, payloads):
            self.objects[oid] = (data, False)

    def _on_cancel(self, msg: P.CancelTask) -> None:
        # A task has run by the time cancel() can name it: only a stream is still unfinished.
        stream = self.streams.get(msg.task_id)
        if stream is not None:
            stream.cancel()

    # ------------------------------------------------------------ actors

    def host(self, actor: _Actor | None) -> Any:
        """Make ``actor`` the hosted one (``exit_actor``) while its code runs; the previous one."""
        previous = _task_context.hosted_actor()
        if actor is not None:
            _task_context.set_hosted_actor(actor)
        return previous

    def unhost(self, previous: Any) -> None:
        _task_context.set_hosted_actor(previous)

    def actor_exited(self, actor: _Actor, error: BaseException) -> bytes:
        """``exit_actor()`` or ``sys.exit()`` in a method: the actor ends, that call fails."""
        code = error.code if isinstance(error, SystemExit) else 0
        self._forget_name(actor)
        return actor.died(
            "The actor is dead because its worker process has died. Worker exit type: "
            f"INTENDED_USER_EXIT Worker exit detail: exit_actor() was called (exit code {code})."
        )

    def _forget_name(self, actor: _Actor) -> None:
        if actor.name and self.names.get((actor.namespace, actor.name)) is actor:
            del self.names[(actor.namespace, actor.name)]

    def _create_actor(self, msg: P.CreateActor) -> _Actor:
        actor = _Actor(msg)
        self.actors[msg.actor_id] = actor
        if msg.name:
            self.names[(msg.namespace, msg.name)] = actor
        values, failed = self._dependencies(msg.dep_ids)
        token = _task_context.set_current_task(actor.context(None))
        try:
            if failed is not None:
                raise ser.loads_error(failed)
            cls = self.functions[msg.class_id]
            args, kwargs = resolve_arguments(msg.args, values)
            instance = cls.__new__(cls)
            instance.__init__(*args, **kwargs)
            actor.instance = instance
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            task_error = ser.task_error(e, f"{actor.class_name}.__init__", actor_id=actor.actor_id)
            print(f"Exception raised in creation task: {task_error}", file=sys.stderr)
            actor.death = ser.dumps_function(
                exc.ActorDiedError(
                    actor.actor_id,
                    f"The actor died because of an error raised in its creation task, {task_error}",
                    actor_init_failed=True,
                )
            )
            self._forget_name(actor)
        finally:
            _task_context.reset_current_task(token)
        return actor

    def _on_create_actor(self, msg: P.CreateActor) -> None:
        self._create_actor(msg)

    def _request_create_actor(self, msg: P.CreateActor) -> P.ActorReply:
        existing = self.names.get((msg.namespace, msg.name))
        if existing is not None:
            if msg.get_if_exists:
                return P.ActorReply(msg.req_id, existing.actor_binary_id, existing.meta, "")
            return P.ActorReply(msg.req_id, b"", b"", "exists")
        actor = self._create_actor(msg)
        return P.ActorReply(msg.req_id, actor.actor_binary_id, actor.meta, "")

    def _on_call_actor(self, msg: P.CallActor) -> None:
        actor = self.actors.get(msg.actor_id)
        death = (
            ser.dumps_function(
                exc.ActorDiedError(
                    msg.actor_id.hex(),
                    f"The actor {msg.actor_id.hex()} is unknown in this debug session.",
                )
            )
            if actor is None
            else actor.death
        )
        if death is not None or actor is None:
            assert death is not None
            if msg.streaming:
                stream = _Stream(
                    self, msg.task_id, None, _task_context.DRIVER_CONTEXT, "", ser.dumps
                )
                self.streams[msg.task_id] = stream
                stream.fail_now(death)
            else:
                self._seal_all(msg.return_ids, death, True)
            return
        name = f"{actor.class_name}.{msg.method}"
        method = msg.method

        def error(e: BaseException) -> bytes:
            return actor.error(e, method)

        self._run(msg.task_id, method, msg, actor.context(msg.task_id), name, error, actor)

    def _on_kill(self, msg: P.KillActor) -> None:
        actor = self.actors.get(msg.actor_id)
        if actor is None or actor.death is not None:
            return
        actor.died("The actor is dead because it was killed by `ray.kill`.")
        self._forget_name(actor)

    def _on_release_actor(self, msg: P.ReleaseActor) -> None:
        actor = self.actors.get(msg.actor_id)
        if actor is not None and actor.death is None and not actor.name:
            actor.died("The actor is dead because all references to the actor were removed.")

    def _get_actor(self, msg: P.GetActor) -> P.ActorReply:
        actor = self.names.get((msg.namespace, msg.name))
        if actor is None:
            return P.ActorReply(msg.req_id, b"", b"", "not found")
        return P.ActorReply(msg.req_id, actor.actor_binary_id, actor.meta, "")

    def _list_named(self, msg: P.ListNamedActors) -> P.StateReply:
        if msg.all_namespaces:
            rows: list[Any] = [{"name": n, "namespace": ns} for ns, n in self.names]
        else:
            rows = [n for ns, n in self.names if ns == msg.namespace]
        return P.StateReply(msg.req_id, msgspec.msgpack.encode(rows))

    # ------------------------------------------------------------ queues

    def _queue_op(self, msg: P.QueueOp) -> P.QueueReply:
        """One ``util.queue.Queue`` call; one that must wait waits for another thread.

        Nothing else runs while this thread waits, so a wait with no other
        thread alive to end it (a task's ``get`` on an empty queue its
        producer fills later) raises instead of hanging.
        """
        import time

        cond = self.queue_changed
        deadline = None if msg.timeout < 0 else time.monotonic() + msg.timeout
        with cond:
            while True:
                reply = self._queue_try(msg)
                if reply.status != P.QUEUE_WOULD_BLOCK or msg.op not in (P.QUEUE_PUT, P.QUEUE_GET):
                    return reply
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return reply
                if threading.active_count() == 1:
                    if remaining is None:
                        what = "put into a full" if msg.op == P.QUEUE_PUT else "get from an empty"
                        raise exc.RaySystemError(
                            f"A blocking {what} util.queue.Queue would wait for ever in debug "
                            "mode: tasks and actor calls run one at a time in this thread, so "
                            "no other one can run meanwhile. Pass a timeout, use "
                            "block=False, or run without debug mode."
                        )
                    time.sleep(remaining)  # nothing can change the queue meanwhile
                    continue
                cond.wait(1.0 if remaining is None else min(remaining, 1.0))

    def _queue_try(self, msg: P.QueueOp) -> P.QueueReply:
        """``msg`` without waiting (under ``queue_changed``)."""
        op = msg.op
        entry = self.queue_items.get(msg.queue_id)
        if op == P.QUEUE_CLOSE:
            self.queue_items.pop(msg.queue_id, None)
            self.queue_changed.notify_all()
            return P.QueueReply(msg.req_id, P.QUEUE_OK, [], 0)
        if entry is None:
            return P.QueueReply(msg.req_id, P.QUEUE_CLOSED, [], 0)
        maxsize, items = entry
        size = len(items)
        if op == P.QUEUE_SIZE:
            return P.QueueReply(msg.req_id, P.QUEUE_OK, [], size)
        if op in (P.QUEUE_PUT, P.QUEUE_PUT_BATCH):
            if maxsize and size + len(msg.items) > maxsize:
                return P.QueueReply(msg.req_id, P.QUEUE_WOULD_BLOCK, [], size)
            items.extend(msg.items)
            self.queue_changed.notify_all()
            return P.QueueReply(msg.req_id, P.QUEUE_OK, [], size)
        count = 1 if op == P.QUEUE_GET else msg.count
        if count > size:
            return P.QueueReply(msg.req_id, P.QUEUE_WOULD_BLOCK, [], size)
        taken = [items.popleft() for _ in range(count)]
        if count:
            self.queue_changed.notify_all()
        return P.QueueReply(msg.req_id, P.QUEUE_OK, taken, size)

    # ------------------------------------------------------------ placement groups

    def _on_create_pg(self, msg: P.CreatePlacementGroup) -> None:
        # Resources are not enforced in debug mode: every group is ready at once.
        self.objects[P.pg_ready_object_id(msg.pg_id)] = (msg.handle, False)
        self.groups[msg.pg_id] = msg

    def _on_remove_pg(self, msg: P.RemovePlacementGroup) -> None:
        if msg.pg_id in self.groups:
            self.removed_groups.add(msg.pg_id)
            self.objects[P.pg_ready_object_id(msg.pg_id)] = (
                ser.dumps_function(exc.TaskPlacementGroupRemoved()),
                True,
            )

    def _pg_row(self, group: P.CreatePlacementGroup) -> dict[str, Any]:
        """The kernel's row of ``group`` (``placement_group_table``)."""
        created = group.pg_id not in self.removed_groups
        return {
            "placement_group_id": group.pg_id.hex(),
            "name": group.name,
            "bundles": {i: dict(b) for i, b in enumerate(group.bundles)},
            "bundles_to_node_id": {i: "local" for i in range(len(group.bundles))}
            if created
            else {},
            "strategy": group.strategy,
            "state": "CREATED" if created else "REMOVED",
            "creator_job_id": "01000000",
            "is_detached": group.detached,
            "stats": {"scheduling_state": "FINISHED" if created else "PENDING"},
        }

    def _pg_by_name(self, arg: str) -> bytes | None:
        namespace, _, name = arg.partition("\x00")
        for group in self.groups.values():
            if (
                group.name == name
                and group.namespace == namespace
                and group.pg_id not in self.removed_groups
            ):
                return group.handle
        return None

    # ------------------------------------------------------------ get / wait / streams

    def _get(self, msg: P.GetObjects) -> P.ObjectsReply:
        values: list[bytes | None] = []
        errors: list[bool] = []
        for oid in msg.object_ids:
            entry = self._entry(oid)
            data, is_error = (_lost(oid), True) if entry is None else entry
            values.append(data)
            errors.append(is_error)
        return P.ObjectsReply(msg.req_id, values, errors, False)

    def _wait(self, msg: P.WaitObjects) -> P.WaitReply:
        # Everything submitted has run: every object is ready (a lost one is, as an error).
        for oid in msg.object_ids[: msg.num_returns]:
            self._entry(oid)
        return P.WaitReply(msg.req_id, list(range(msg.num_returns)))

    def _stream_next(self, msg: P.StreamNext) -> P.ObjectsReply:
        oid = msg.task_id + msg.index.to_bytes(4, "little")
        entry = self._entry(oid)
        data, is_error = (_lost(oid), True) if entry is None else entry
        return P.ObjectsReply(msg.req_id, [data], [is_error], False)

    def _query(self, msg: P.QueryState) -> P.StateReply:
        if msg.what in ("available", "cluster"):
            value: Any = dict(self.totals)
        elif msg.what == "pg_table" and msg.arg:
            group = self.groups.get(bytes.fromhex(msg.arg))
            value = None if group is None else self._pg_row(group)
        elif msg.what == "pg_table":
            value = {g.pg_id.hex(): self._pg_row(g) for g in self.groups.values()}
        elif msg.what == "pg_by_name":
            value = self._pg_by_name(msg.arg)
        else:
            raise not_available(f"The state API ({msg.what!r})")
        return P.StateReply(msg.req_id, msgspec.msgpack.encode(value))


_POSTED: dict[type, Callable[[DebugClient, Any], None]] = {
    P.RegisterFunction: DebugClient._on_register,
    P.SubmitTask: DebugClient._on_submit,
    P.PutObject: DebugClient._on_put,
    P.CancelTask: DebugClient._on_cancel,
    P.CreateActor: DebugClient._on_create_actor,
    P.CallActor: DebugClient._on_call_actor,
    P.KillActor: DebugClient._on_kill,
    P.ReleaseActor: DebugClient._on_release_actor,
    P.CreatePlacementGroup: DebugClient._on_create_pg,
    P.RemovePlacementGroup: DebugClient._on_remove_pg,
}

# Messages about lifetimes and shared memory: nothing to do when every object
# stays until shutdown and none is in shared memory.
_IGNORED = frozenset(
    (
        P.ReleaseObjects,
        P.HoldObjects,
        P.SegmentMaps,
        P.DropReservation,
        P.CancelWaiter,
        P.ReleaseStream,
        P.StreamNext,  # req_id 0: the consumer took an item it had (backpressure only)
    )
)

_REQUESTS: dict[type, Callable[[DebugClient, Any], Any]] = {
    P.GetObjects: DebugClient._get,
    P.WaitObjects: DebugClient._wait,
    P.StreamNext: DebugClient._stream_next,
    P.CreateActor: DebugClient._request_create_actor,
    P.GetActor: DebugClient._get_actor,
    P.ListNamedActors: DebugClient._list_named,
    P.QueryState: DebugClient._query,
}
