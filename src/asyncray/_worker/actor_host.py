"""The actor process: one instance, its calls, and its concurrency.

The kind is chosen exactly as Ray chooses it:

* **plain** — a sync class with ``max_concurrency == 1``: the main thread runs
  calls one at a time, in the order they arrive (the runtime sends them in
  each caller's submission order).
* **threaded** — a sync class with ``max_concurrency > 1`` or concurrency
  groups: each group has its own thread pool of its size; the main thread
  only reads the socket and hands calls out.
* **async** — any ``async def`` method: calls run as coroutines, the default
  group on the main thread's event loop and each concurrency group, as in
  Ray, on its own loop in its own thread; each group is bounded by its own
  semaphore (default 1000). A reader thread feeds the main loop, so a
  blocking ``get`` in a method stalls only its group's loop (and warns),
  never the socket nor the other groups.

``exit_actor()`` raises ``ActorExitRequest``: the host reports the exit,
lets calls that are already running finish, runs ``atexit`` handlers and
exits with code 0. ``sys.exit(0)`` does the same; ``sys.exit()`` with any
other code (``None`` included, as in Ray) ends the process at once, a crash
to the runtime.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

from .. import _task_context
from .. import exceptions as exc
from .._wire import protocol as P
from .._wire import serialization as ser
from .._wire.channel import SocketChannel
from . import interrupts
from .main import (
    Client,
    _flush_output,
    _retryable,
    _set_visible_gpus,
    resolve_arguments,
    serialize_returns,
)


class _ActorState:
    """What every host needs: the instance and how to run one call on it."""

    def __init__(self, channel: SocketChannel, client: Client, start: P.StartActor) -> None:
        self.client = client
        self.channel = channel
        self.start = start
        self.config: dict[str, Any] = ser.loads(start.config)
        self.class_name: str = self.config["class_name"]
        self.actor_id = start.actor_id.hex()
        self.actor_binary_id = start.actor_id
        self.instance: Any = None
        self.exiting = False
        self._group: Any = None
        # Bound methods by name, looked up once (the class is fixed for the actor's life).
        self._methods: dict[str, Any] = {}
        # Why its runtime_env could not be set up: its creation fails with it.
        self.env_error: BaseException | None = None
        _set_visible_gpus(start.gpu_ids)

    def context(self, task_id: bytes | None) -> _task_context.TaskContext:
        ctx = _task_context.TaskContext(
            task_id,
            self.class_name,
            self.start.resources,
            self.start.gpu_ids,
            self.actor_id,
            self.start.name,
        )
        ctx.is_async_actor = self.config["kind"] == "async"
        ctx.actor_restarted = self.start.num_restarts > 0
        if self.start.pg:
            if self._group is None:
                self._group = ser.loads(self.start.pg)
            ctx.placement_group = self._group
            ctx.pg_capture = self.start.pg_capture
        return ctx

    def construct(self) -> bool:
        """Run ``__init__``; report the outcome to the runtime. False if it raised."""
        start = self.start
        token = _task_context.set_current_task(self.context(None))
        try:
            if self.env_error is not None:
                raise self.env_error
            cls = ser.loads(start.class_blob)
            args, kwargs = resolve_arguments(start.args, start.dep_values)
            instance = cls.__new__(cls)
            instance.__init__(*args, **kwargs)
            self.instance = instance
        except BaseException as e:
            self.channel.send(P.ActorStarted(False, self._init_failure(e)))
            return False
        finally:
            _task_context.reset_current_task(token)
            _flush_output()
        _task_context.set_hosted_actor(self)
        self.channel.send(P.ActorStarted(True, b""))
        return True

    def _init_failure(self, error: BaseException) -> bytes:
        # The text needs no round trip through pickle (which an exception class
        # with its own __init__ signature would not survive).
        task_error = ser.task_error(error, f"{self.class_name}.__init__", actor_id=self.actor_id)
        print(f"Exception raised in creation task: {task_error}", file=sys.stderr)
        return ser.dumps_function(
            exc.ActorDiedError(
                self.actor_id,
                f"The actor died because of an error raised in its creation task, {task_error}",
                actor_init_failed=True,
            )
        )

    def method(self, name: str) -> Any:
        method = self._methods.get(name)
        if method is None:
            method = self._methods[name] = method_of(self.instance, name)
        return method

    def reply_for(self, msg: P.ExecuteActorCall, result: Any) -> P.TaskDone:
        name = f"{self.class_name}.{msg.method}"
        try:
            return P.TaskDone(msg.task_id, serialize_returns(result, msg.num_returns, name), False)
        except BaseException as e:
            # A result that cannot be stored is not the method's error: never retried.
            return self.error_for(msg, e, retry=False)

    def error_for(
        self, msg: P.ExecuteActorCall, error: BaseException, *, retry: bool = True
    ) -> P.TaskDone:
        """The call failed with ``error``; ``retryable`` per its ``retry_exceptions``."""
        try:
            actor_repr = repr(self.instance)
        except Exception:
            actor_repr = f"<{self.class_name} object>"
        raised = error
        if isinstance(error, KeyboardInterrupt):
            # As Ray 2.60 [obs]: RayTaskError(TaskCancelledError) "Task: <id> was cancelled."
            raised = exc.TaskCancelledError(msg.task_id.hex()).with_traceback(error.__traceback__)
        payload = ser.dumps_task_error(
            raised,
            f"{self.class_name}.{msg.method}",
            actor_repr=actor_repr,
            actor_id=self.actor_id,
            wrap_ray_error=raised is not error,
        )
        retryable = retry and msg.retry_exc != P.RETRY_NONE and _retryable(error, msg.retry_exc)
        return P.TaskDone(msg.task_id, [payload], True, retryable=retryable)

    def writer(self, msg: P.ExecuteActorCall) -> Any:
        from .streams import StreamWriter

        writer = StreamWriter(
            self.channel, msg.task_id, msg.backpressure, lambda e: self.error_for(msg, e).results[0]
        )
        writer.count = msg.skip  # a retry goes on after the items already produced
        return writer

    def guard_stream(self, msg: P.ExecuteActorCall, gen: Any) -> tuple[Any, _StreamRetry | None]:
        """Wrap a stream so a retry skips what was produced and a retryable error is kept.

        A retryable error must not become the stream's last item (the call runs
        again); the runtime appends it itself once no retry is left.
        """
        if msg.retry_exc == P.RETRY_NONE and not msg.skip:
            return gen, None
        guard = _StreamRetry(msg.retry_exc, msg.skip)
        return guard.wrap(gen), guard

    def stream_done(
        self, msg: P.ExecuteActorCall, count: int, guard: _StreamRetry | None
    ) -> P.TaskDone:
        if guard is not None and guard.error is not None:
            return self.error_for(msg, guard.error)
        return P.TaskDone(msg.task_id, [], False, stream_count=count)

    def run_sync(self, msg: P.ExecuteActorCall) -> P.TaskDone:
        """Run one call of a plain or threaded actor (a generator is streamed)."""
        if msg.task_id in self.channel.cancelled:
            ser.discard_arguments(msg)
            return P.TaskDone(msg.task_id, [], True, cancelled=True)
        args, kwargs = resolve_arguments(msg.args, msg.dep_values)
        fn = self.method(msg.method)
        result = fn(*args, **kwargs)
        if msg.streaming:
            from .streams import produce_sync

            result, guard = self.guard_stream(msg, result)
            return self.stream_done(msg, produce_sync(self.writer(msg), result), guard)
        return self.reply_for(msg, result)

    def exit_process(self, error: SystemExit) -> NoReturn:
        """``sys.exit()`` with a code other than 0 ends the process here, as a crash.

        Ray treats it as the death of the actor's process (``SYSTEM_ERROR``):
        ``max_restarts`` and ``max_task_retries`` apply, as after ``os._exit``.
        Only ``exit_actor()`` and ``sys.exit(0)`` are intended exits.
        """
        code = error.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)  # what Python does with sys.exit("message")
        _flush_output()
        self.channel.drain_outbox()  # replies of calls that ended before it
        os._exit(1 if code is not None and not isinstance(code, int) else code or 0)

    def report_exit(self, msg: P.ExecuteActorCall) -> None:
        self.exiting = True
        _flush_output()
        self.channel.send(P.ActorExiting(msg.task_id))

    def send_reply(self, reply: P.TaskDone) -> None:
        """Send a call's reply with the releases of refs dropped meanwhile (after it)."""
        self.client.post(reply)


def method_of(instance: Any, name: str) -> Any:
    """What a call of ``name`` on an actor hosting ``instance`` runs: Ray's built-in
    ``__ray_ready__``/``__ray_call__``/``__ray_terminate__``, else the method."""
    if name == "__ray_ready__":
        return lambda: True
    if name == "__ray_call__":
        return lambda fn, *a, **k: fn(instance, *a, **k)
    if name == "__ray_terminate__":
        return _terminate
    return _method_of(instance, name)


def _method_of(instance: Any, name: str) -> Any:
    """Method ``name`` of ``instance``, looked up on its class as Ray does.

    An instance attribute of the same name (``self.ready = True`` beside a
    ``ready()`` method) does not shadow the method a caller asked for.
    """
    cls = type(instance)
    for klass in cls.__mro__:
        if name in klass.__dict__:
            raw = klass.__dict__[name]
            bind = getattr(type(raw), "__get__", None)
            return raw if bind is None else bind(raw, instance, cls)
    return getattr(instance, name)  # not on the class: e.g. a __getattr__ of the class


class _StreamRetry:
    """One attempt of a retried or retryable stream (see ``guard_stream``)."""

    def __init__(self, retry_exc: bytes, skip: int) -> None:
        self.retry_exc = retry_exc
        self.skip = skip
        self.error: BaseException | None = None

    def wrap(self, gen: Any) -> Any:
        return self._async(gen) if inspect.isasyncgen(gen) else self._sync(gen)

    def _sync(self, gen: Any) -> Any:
        seen = 0
        try:
            for value in gen:
                seen += 1
                if seen > self.skip:
                    yield value
        except Exception as e:
            if not self._keep(e):
                raise

    async def _async(self, gen: Any) -> Any:
        seen = 0
        try:
            async for value in gen:
                seen += 1
                if seen > self.skip:
                    yield value
        except Exception as e:
            if not self._keep(e):
                raise

    def _keep(self, error: Exception) -> bool:
        if self.retry_exc != P.RETRY_NONE and _retryable(error, self.retry_exc):
            self.error = error
            return True
        return False


def exits_as_crash(error: SystemExit) -> bool:
    """Whether ``error`` ends the actor as a crash (see ``exit_process``)."""
    return error.code != 0 and not isinstance(error, _task_context.ActorExitRequest)


def _terminate() -> None:
    raise _task_context.ActorExitRequest(0)


def run_actor(channel: SocketChannel, client: Client, kind: str, env: dict[str, str]) -> None:
    """Entry point of an actor process, after its hello."""
    try:
        start = channel.next_inbound()
        env_error: BaseException | None = None
        while type(start) in (P.SetJob, P.SetEnv):
            if type(start) is P.SetJob:  # a shared head's actor: the job that created it
                _task_context.set_job(start.job_id, start.namespace, start.code_paths)
            else:  # its runtime_env, set up before its class is loaded
                from . import runtime_env

                env_error = runtime_env.apply(start.env)
            start = channel.next_inbound()
    except (ConnectionError, OSError):
        return
    if type(start) is not P.StartActor:
        return
    state = _ActorState(channel, client, start)
    state.env_error = env_error
    kind = state.config["kind"]
    if kind == "async":
        _AsyncHost(state).run()
    elif kind == "threaded":
        _ThreadedHost(state).run()
    else:
        channel.spin = True
        _PlainHost(state).run()
    _flush_output()
    if state.exiting:  # exit_actor() / __ray_terminate__: a graceful exit runs atexit
        atexit._run_exitfuncs()


def _wait_for_shutdown(channel: SocketChannel) -> None:
    while True:
        try:
            msg = channel.next_inbound()
        except (ConnectionError, OSError):
            return
        if type(msg) is P.Shutdown:
            return


# ==================================================================== plain


class _PlainHost:
    def __init__(self, state: _ActorState) -> None:
        self.state = state

    def run(self) -> None:
        state = self.state
        if not state.construct():
            _wait_for_shutdown(state.channel)
            return
        channel = state.channel
        while True:
            try:
                msg = channel.next_inbound()
            except (ConnectionError, OSError):
                return
            if type(msg) is P.ExecuteActorCall:
                if self.call(msg):
                    return
            elif type(msg) is P.Shutdown:
                return

    def call(self, msg: P.ExecuteActorCall) -> bool:
        """Run one call; True if the actor should exit."""
        state = self.state
        token = _task_context.set_current_task(state.context(msg.task_id))
        # A plain actor's call past its timeout_s is interrupted by SIGINT;
        # it may land only while the method itself runs.
        try:
            interrupts.enter_user_code(msg.task_id)
            reply = state.run_sync(msg)
        except _task_context.ActorExitRequest:
            state.report_exit(msg)
            return True
        except SystemExit as e:
            if exits_as_crash(e):
                state.exit_process(e)
            # sys.exit(0) in an actor method ends the actor (Ray: INTENDED_USER_EXIT).
            state.report_exit(msg)
            return True
        except BaseException as e:
            reply = state.error_for(msg, e)
        finally:
            interrupts.leave_user_code()
            _task_context.reset_current_task(token)
            _flush_output()
        state.send_reply(reply)
        return False


# ==================================================================== threaded


class _ThreadedHost:
    def __init__(self, state: _ActorState) -> None:
        self.state = state
        config = state.config
        self.executors = {
            "": ThreadPoolExecutor(config["max_concurrency"], thread_name_prefix="actor"),
        }
        for group, size in config["groups"].items():
            self.executors[group] = ThreadPoolExecutor(size, thread_name_prefix=f"actor-{group}")
        self.done = threading.Event()
        self._active = 0
        self._active_lock = threading.Condition()

    def run(self) -> None:
        state = self.state
        if not state.construct():
            _wait_for_shutdown(state.channel)
            return
        channel = state.channel
        try:
            while not self.done.is_set():
                try:
                    msg = channel.next_inbound()
                except (ConnectionError, OSError):
                    return
                if type(msg) is P.ExecuteActorCall:
                    if state.exiting:
                        continue  # the runtime fails it when this process is gone
                    executor = self.executors.get(msg.group) or self.executors[""]
                    executor.submit(self.call, msg)
                elif type(msg) is P.Shutdown:
                    return
        finally:
            for executor in self.executors.values():
                executor.shutdown(wait=state.exiting, cancel_futures=True)

    def call(self, msg: P.ExecuteActorCall) -> None:
        state = self.state
        if state.exiting:
            return
        with self._active_lock:
            self._active += 1
        token = _task_context.set_current_task(state.context(msg.task_id))
        try:
            reply = state.run_sync(msg)
        except SystemExit as e:
            if exits_as_crash(e):
                state.exit_process(e)
            state.report_exit(msg)
            threading.Thread(target=self._exit_when_idle, daemon=True).start()
            return
        except BaseException as e:
            reply = state.error_for(msg, e)
        finally:
            _task_context.reset_current_task(token)
            _flush_output()
            with self._active_lock:
                self._active -= 1
                self._active_lock.notify_all()
        state.send_reply(reply)

    def _exit_when_idle(self) -> None:
        """exit_actor(): calls already running finish; then run atexit handlers and exit."""
        with self._active_lock:
            while self._active:
                self._active_lock.wait()
        _flush_output()
        atexit._run_exitfuncs()
        self.state.channel.drain_outbox()
        os._exit(0)


# ==================================================================== async


# The thread of a concurrency group's loop is named as Ray names it.
_GROUP_THREAD_PREFIX = "AsyncIO Thread: "
# How long the host waits for a group's thread to stop at the end (a method
# blocked in a sync call there cannot be stopped: the process exits anyway).
_GROUP_JOIN_S = 0.5


class _Lane:
    """One concurrency group of an async actor: its loop, its bound, its calls.

    ``running`` and ``by_id`` are touched only on ``loop``'s own thread, so no
    lock is needed (the default group's lane is the main loop, the hot path).
    """

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.name = name
        self.loop = loop
        # Binds to the loop that first waits on it: only ever this lane's loop.
        self.limit = asyncio.Semaphore(size)
        self.running: set[asyncio.Task[Any]] = set()
        self.by_id: dict[bytes, asyncio.Task[Any]] = {}
        self.thread: threading.Thread | None = None

    def cancel(self, task_id: bytes) -> None:
        """On this lane's loop: cancel the call ``task_id`` if it runs here."""
        running = self.by_id.get(task_id)
        if running is not None:
            running.cancel()

    async def idle(self, exclude: asyncio.Task[Any] | None) -> None:
        """On this lane's loop: wait until every call but ``exclude`` has ended."""
        others = [t for t in self.running if t is not exclude and not t.done()]
        if others:
            await asyncio.wait(others)


def _set_if_pending(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


class _AsyncHost:
    """An async actor: the default group on the main loop, each other group on its own.

    As in Ray, every declared concurrency group runs on its own event loop in
    its own thread, so a coroutine that blocks (a sync sleep or ``get``) in
    one group stalls neither the default group nor the others. The reader
    delivers every message to the main loop, which hands a group's calls to
    that group's loop.
    """

    def __init__(self, state: _ActorState) -> None:
        import uvloop

        self.state = state
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        config = state.config
        self.default = _Lane("", self.loop, config["max_concurrency"])
        self.lanes: dict[str, _Lane] = {"": self.default}
        for group, size in config["groups"].items():
            self.lanes[group] = _Lane(group, uvloop.new_event_loop(), size)
        self.others = [lane for lane in self.lanes.values() if lane is not self.default]
        # Stream producers waiting for credit, on any lane's loop: a lock, as
        # the main loop resolves them (streams only, never the plain call path).
        self.credit_waiters: dict[bytes, list[tuple[int, asyncio.Future[Any]]]] = {}
        self.credit_lock = threading.Lock()

    def run(self) -> None:
        state = self.state
        if not state.construct():
            _wait_for_shutdown(state.channel)
            return
        for lane in self.others:
            lane.thread = threading.Thread(
                target=_run_loop,
                args=(lane.loop,),
                name=_GROUP_THREAD_PREFIX + lane.name,
                daemon=True,
            )
            lane.thread.start()
        state.channel.spin = True  # the loop polls between back-to-back calls
        state.channel.start_loop_reader(self._from_reader, self.loop)
        try:
            self.loop.run_forever()
        finally:
            self._stop_groups()
            self.loop.close()

    def _stop_groups(self) -> None:
        for lane in self.others:
            lane.loop.call_soon_threadsafe(lane.loop.stop)
        for lane in self.others:
            assert lane.thread is not None
            lane.thread.join(_GROUP_JOIN_S)
            if not lane.thread.is_alive():
                lane.loop.close()

    def _from_reader(self, msgs: list[Any]) -> None:
        """Runs on the main loop: messages the reader thread routed here."""
        for msg in msgs:
            kind = type(msg)
            if kind is P.ExecuteActorCall:
                if self.state.exiting:
                    continue
                lane = self.lanes.get(msg.group) or self.default
                if lane is self.default:
                    self._start(lane, msg)
                else:
                    lane.loop.call_soon_threadsafe(self._start, lane, msg)
            elif kind is P.StreamCredit:
                self._wake_producers(msg.task_id)
            elif kind is P.CancelActorCall:
                self.default.cancel(msg.task_id)
                # Queued behind the call's start on its loop, so it finds it there.
                for lane in self.others:
                    lane.loop.call_soon_threadsafe(lane.cancel, msg.task_id)
            elif kind is P.Shutdown or msg is None:
                self.loop.stop()

    def _start(self, lane: _Lane, msg: P.ExecuteActorCall) -> None:
        """On ``lane``'s loop: run one call there."""
        task = lane.loop.create_task(self.call(lane, msg))
        lane.running.add(task)
        lane.by_id[msg.task_id] = task
        task.add_done_callback(lane.running.discard)

    def _wake_producers(self, task_id: bytes) -> None:
        with self.credit_lock:
            waiters = self.credit_waiters.get(task_id)
            if not waiters:
                return
            have = self.state.channel.credits.get(task_id, 0)
            keep = []
            ready = []
            for need, future in waiters:
                if have >= need:
                    ready.append(future)
                else:
                    keep.append((need, future))
            if keep:
                self.credit_waiters[task_id] = keep
            else:  # nothing waits: no entry kept per stream ever produced
                del self.credit_waiters[task_id]
        for future in ready:
            loop = future.get_loop()
            if loop is self.loop:
                _set_if_pending(future)
            else:  # a future is resolved only on its own loop
                loop.call_soon_threadsafe(_set_if_pending, future)

    async def wait_credit(self, task_id: bytes, need: int) -> None:
        with self.credit_lock:  # a credit read after this check finds the waiter
            if self.state.channel.credits.get(task_id, 0) >= need:
                return
            future = asyncio.get_running_loop().create_future()
            self.credit_waiters.setdefault(task_id, []).append((need, future))
        await future

    async def call(self, lane: _Lane, msg: P.ExecuteActorCall) -> None:
        state = self.state
        loaded = [False]  # set once _run has loaded the arguments
        try:
            async with lane.limit:
                if state.exiting:
                    ser.discard_arguments(msg)
                    return
                reply = await self._run(msg, loaded)
        except asyncio.CancelledError:
            # cancel(): the method's CancelledError handlers have run.
            if not loaded[0]:
                ser.discard_arguments(msg)
            reply = P.TaskDone(msg.task_id, [], True, cancelled=True)
        except (SystemExit, exc.AsyncioActorExit) as e:
            if isinstance(e, SystemExit) and exits_as_crash(e):
                state.exit_process(e)
            state.report_exit(msg)
            current = asyncio.current_task()
            self.loop.call_soon_threadsafe(self._begin_exit, current)
            return
        finally:
            lane.by_id.pop(msg.task_id, None)
            if msg.streaming:
                with self.credit_lock:
                    self.credit_waiters.pop(msg.task_id, None)
        state.send_reply(reply)

    async def _run(self, msg: P.ExecuteActorCall, loaded: list[bool]) -> P.TaskDone:
        state = self.state
        token = _task_context.set_current_task(state.context(msg.task_id))
        try:
            loaded[0] = True  # from here on, the refs in them are rebuilt or given back
            args, kwargs = resolve_arguments(msg.args, msg.dep_values)
            fn = state.method(msg.method)
            result = fn(*args, **kwargs)
            if msg.streaming:
                from .streams import produce_async

                result, guard = state.guard_stream(msg, result)
                count = await produce_async(state.writer(msg), result, self.wait_credit)
                return state.stream_done(msg, count, guard)
            # Python 3.11's asyncio.iscoroutine also says True for a plain
            # generator (a method with a fixed num_returns): that one is run
            # by reply_for, not awaited.
            if asyncio.iscoroutine(result) and type(result) is not types.GeneratorType:
                result = await result
            return state.reply_for(msg, result)
        except (SystemExit, exc.AsyncioActorExit, asyncio.CancelledError):
            raise
        except BaseException as e:  # the method's error goes to its caller
            return state.error_for(msg, e)
        finally:
            _task_context.reset_current_task(token)
            _flush_output()

    def _begin_exit(self, exiting: asyncio.Task[Any] | None) -> None:
        """On the main loop: exit once the calls running on every loop have ended."""
        self.loop.create_task(self._exit_when_idle(exiting))

    async def _exit_when_idle(self, exiting: asyncio.Task[Any] | None) -> None:
        await self.default.idle(exiting)
        for lane in self.others:
            done = asyncio.run_coroutine_threadsafe(lane.idle(exiting), lane.loop)
            await asyncio.wrap_future(done)
        self.loop.stop()  # run() then stops every group's loop


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The thread of one concurrency group: run its loop until the host stops it."""
    asyncio.set_event_loop(loop)
    loop.run_forever()
