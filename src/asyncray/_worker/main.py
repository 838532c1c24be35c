"""The task-worker loop, run in every child the zygote forks.

Flat and paranoid, as a worker loop should be: reset what the fork
inherited, route stdout/stderr into ``Log`` messages (never onto the
protocol socket's fd), say hello, then receive → run → reply forever,
catching ``BaseException`` and always replying. If a result cannot be
pickled the reply says so. ``SystemExit`` in a task ends the worker, and the
runtime treats it as a crash (retried per ``max_retries``), as Ray does.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import faulthandler
import io
import os
import signal
import socket
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, Protocol

from .. import _task_context
from .. import exceptions as exc
from .._wire import protocol as P
from .._wire import serialization as ser
from .._wire.channel import SocketChannel
from .._wire.serialization import DepSlot
from . import interrupts

_GENERATOR = types.GeneratorType


class Client(Protocol):
    """What the child side needs of this process's client (``_clients.worker.WorkerClient``)."""

    def post(self, msg: Any) -> None:
        """Send ``msg``, with the releases and view reports queued meanwhile."""


def child_main(
    sock: socket.socket,
    kind: str,
    env: dict[str, str],
    *,
    attach: Callable[[SocketChannel], Client],
) -> None:
    """Entry point of a forked child (called by the zygote).

    ``attach`` is the session's hook: it makes this process's client for
    ``channel`` (the child side never imports the session or the clients).
    """
    _reset_inherited_state()
    _task_context.in_worker = True
    # breakpoint() waits for `asyncray debug` (this process's stdin is not a terminal).
    sys.breakpointhook = _breakpoint
    channel = SocketChannel(sock)
    interrupts.install(channel.interrupt_requested)
    client = attach(channel)
    _forward_output(channel)
    channel.send(P.WorkerHello(os.getpid()))
    try:
        if kind == "task":
            channel.spin = True
            TaskWorker(channel, client).run()
        else:
            from .actor_host import run_actor

            run_actor(channel, client, kind, env)
    finally:
        # A frame another thread left to a writer that exits with us.
        channel.drain_outbox()


def _breakpoint(*args: Any, **kwargs: Any) -> None:
    from .debugger import breakpoint_hook  # pdb is loaded only by a worker that stops

    breakpoint_hook(*args, frame=sys._getframe(1), **kwargs)


def _reset_inherited_state() -> None:
    # The driver's exit handlers (asyncray's shutdown among them) belong to
    # the driver: an actor's exit must run only its own.
    atexit._clear()
    # The driver may have called init() inside a running event loop; this
    # process must not believe it is inside that loop.
    asyncio.events._set_running_loop(None)
    with contextlib.suppress(Exception):
        asyncio.set_event_loop(None)
    interrupts.install()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(Exception):
        faulthandler.enable()


# ==================================================================== output


class _ForwardedStream(io.TextIOBase):
    """A text stream that sends whole lines to the driver, tagged ``(name pid=N)``."""

    def __init__(self, channel: SocketChannel, stream: int) -> None:
        self._channel = channel
        self._stream = stream
        self._pending = ""
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.tags = os.environ.get("ASYNCRAY_LOG_TAGS", "1") not in ("0", "false", "False")

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            data = self._pending + text
            cut = data.rfind("\n")
            if cut < 0:
                self._pending = data
                return len(text)
            self._pending = data[cut + 1 :]
            self._emit(data[: cut + 1])
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                data, self._pending = self._pending, ""
                self._emit(data + "\n")

    def _emit(self, block: str) -> None:
        if self.tags:
            name = _task_context.current_task().name
            tag = f"({name} pid={self._pid}) " if name else f"(pid={self._pid}) "
            block = "".join(tag + line for line in block.splitlines(keepends=True))
        job = _task_context.current_job
        try:
            self._channel.send(P.Log(self._stream, block, "" if job is None else job[0]))
        except OSError:
            pass


def _forward_output(channel: SocketChannel) -> None:
    sys.stdout = _ForwardedStream(channel, 1)
    sys.stderr = _ForwardedStream(channel, 2)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


# ==================================================================== tasks


class TaskWorker:
    """Runs one task at a time, in order, for as long as the runtime sends them."""

    def __init__(self, channel: SocketChannel, client: Client) -> None:
        self.channel = channel
        self.client = client
        self.functions: dict[bytes, Any] = {}
        # Definitions received but not loaded yet. The runtime sends a
        # function once per worker; a cancel whose interrupt lands before the
        # first task loads it must not lose it for the tasks that follow.
        self.blobs: dict[bytes, bytes] = {}
        # Why this worker's runtime_env could not be set up: its tasks fail with it.
        self.env_error: BaseException | None = None

    def run(self) -> None:
        channel = self.channel
        while True:
            try:
                msg = channel.next_inbound()
            except (ConnectionError, OSError):
                return
            if type(msg) is P.ExecuteTask:
                # post(), not send(): it also flushes refs dropped meanwhile.
                self.client.post(self.execute(msg) if self.env_error is None else self.unset(msg))
            elif type(msg) is P.SetJob:  # a shared head: the next tasks are another job's
                _flush_output()  # what the last job's tasks printed goes to its driver
                _task_context.set_job(msg.job_id, msg.namespace, msg.code_paths)
            elif type(msg) is P.SetEnv:  # a fresh worker: the env of its tasks, for life
                from . import runtime_env

                self.env_error = runtime_env.apply(msg.env)
            elif type(msg) is P.Shutdown:
                _flush_output()
                return

    def unset(self, msg: P.ExecuteTask) -> P.TaskDone:
        """``msg`` cannot run: its runtime_env could not be set up here (Ray's error, unwrapped)."""
        ser.discard_arguments(msg)
        return P.TaskDone(msg.task_id, [ser.dumps_function(self.env_error)], True)

    def _function(self, msg: P.ExecuteTask) -> Any:
        fn = self.functions.get(msg.func_id)
        if fn is None:
            blob = msg.func_blob or self.blobs[msg.func_id]
            fn = self.functions[msg.func_id] = ser.loads(blob)
            self.blobs.pop(msg.func_id, None)
        return fn

    def execute(self, msg: P.ExecuteTask) -> P.TaskDone:
        ctx = _task_context.TaskContext(msg.task_id, msg.name, msg.resources, msg.gpu_ids)
        if msg.pg:
            ctx.placement_group = ser.loads(msg.pg)
            ctx.pg_capture = msg.pg_capture
        if msg.func_blob and msg.func_id not in self.functions:
            self.blobs[msg.func_id] = msg.func_blob
        token = _task_context.set_current_task(ctx)
        _set_visible_gpus(msg.gpu_ids)
        loaded = False
        try:
            interrupts.enter_user_code(msg.task_id)
            loaded = True  # from here on, the refs in the arguments are rebuilt or given back
            args, kwargs = resolve_arguments(msg.args, msg.dep_values)
            fn = self._function(msg)
            result = fn(*args, **kwargs)
            if msg.streaming:
                return self._stream(msg, result)
            if type(result) is _GENERATOR:
                # Run the generator here, inside the task (its context, cancel).
                # Ray does not retry a generator with a fixed num_returns.
                try:
                    result = collect_generator(result, msg.num_returns, msg.name)
                except Exception as e:
                    return error_reply(msg.task_id, e, msg.name, P.RETRY_NONE)
        except SystemExit:
            _flush_output()
            raise
        except KeyboardInterrupt as e:
            if not loaded:  # interrupted before its arguments were touched
                ser.discard_arguments(msg)
            # cancel(): the runtime seals TaskCancelledError whatever we send. A
            # KeyboardInterrupt the task raised itself is, as in Ray 2.60 [obs],
            # RayTaskError(TaskCancelledError) "Task: <id> was cancelled.".
            cancelled = exc.TaskCancelledError(msg.task_id.hex()).with_traceback(e.__traceback__)
            return P.TaskDone(
                msg.task_id,
                [ser.dumps_task_error(cancelled, msg.name, wrap_ray_error=True)],
                True,
                cancelled=True,
            )
        except BaseException as e:  # every failure becomes the task's error
            return error_reply(msg.task_id, e, msg.name, msg.retry_exc)
        finally:
            interrupts.leave_user_code()
            _task_context.reset_current_task(token)
        try:
            return P.TaskDone(
                msg.task_id, serialize_returns(result, msg.num_returns, msg.name), False
            )
        except BaseException as e:
            return error_reply(msg.task_id, e, msg.name, P.RETRY_NONE)
        finally:
            _flush_output()

    def _stream(self, msg: P.ExecuteTask, gen: Any) -> P.TaskDone:
        from .streams import StreamWriter, produce_sync

        retry_exc = msg.retry_exc
        writer = StreamWriter(
            self.channel,
            msg.task_id,
            msg.backpressure,
            lambda e: ser.dumps_task_error(e, msg.name),
            None if retry_exc == P.RETRY_NONE else lambda e: _retryable(e, retry_exc),
        )
        try:
            count = produce_sync(writer, gen)
        finally:
            _flush_output()
        if writer.retry is not None:
            # The runtime runs the generator again, or ends the stream with this error.
            reply = error_reply(msg.task_id, writer.retry, msg.name, retry_exc)
            reply.stream_count = count
            return reply
        return P.TaskDone(msg.task_id, [], False, stream_count=count)


def resolve_arguments(
    payload: bytes, dep_values: list[bytes]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Unpickle call arguments and put resolved dependency values into their slots."""
    try:
        args, kwargs = ser.loads(payload)
    except BaseException:
        for v in dep_values:
            ser.discard(v)
        raise
    if dep_values:
        values = []
        try:
            for v in dep_values:
                values.append(ser.loads(v))
        except BaseException:
            for v in dep_values[len(values) + 1 :]:
                ser.discard(v)
            raise
        args = tuple(values[a.index] if type(a) is DepSlot else a for a in args)
        if kwargs:
            kwargs = {k: values[v.index] if type(v) is DepSlot else v for k, v in kwargs.items()}
    return args, kwargs


def collect_generator(gen: Any, num_returns: int, name: str) -> Any:
    """The return value of a generator called with a fixed ``num_returns``, as Ray stores it.

    The ``num_returns`` yielded values, as one value (1), a list (more) or
    None (0). Fewer raise Ray's ``ValueError``; more are dropped after the
    first ``num_returns``, with Ray's message on stderr (Ray logs it too).
    An error raised by the generator propagates.
    """
    values: list[Any] = []
    for value in gen:
        if len(values) == num_returns:
            gen.close()
            print(
                f"Task {name} returned more than num_returns={num_returns} objects; "
                f"only the first {num_returns} are kept.",
                file=sys.stderr,
            )
            break
        values.append(value)
    if len(values) < num_returns:
        raise ValueError(f"Task returned {len(values)} objects, but num_returns={num_returns}.")
    if num_returns == 1:
        return values[0]
    return values if num_returns else None


def serialize_returns(result: Any, num_returns: int, name: str) -> list[bytes]:
    """One payload per declared return value; a bad shape or an unpicklable value raises.

    A generator (an actor method's) is run here for its ``num_returns`` values.
    """
    t = type(result)
    if t is _GENERATOR:
        result = collect_generator(result, num_returns, name)
    elif t is types.AsyncGeneratorType:
        raise TypeError(
            f"'async_generator' object is not iterable: {name} is an async generator, which "
            f"cannot have num_returns={num_returns} (as in Ray); use a plain generator, or "
            "num_returns='streaming' (the default for generators)."
        )
    if num_returns == 1:
        values = [result]
    elif num_returns == 0:
        return []
    else:
        try:
            n = len(result)
        except TypeError as e:
            raise TypeError(
                f"Task {name} declared num_returns={num_returns} but returned "
                f"{type(result).__name__}: {e}"
            ) from None
        if n != num_returns:
            raise ValueError(
                f"Task {name} declared num_returns={num_returns} but returned {n} values."
            )
        values = list(result)
    out: list[bytes] = []
    for value in values:
        try:
            out.append(ser.dumps(value))
        except Exception as e:
            for done in out:  # the values already written will never be stored
                ser.abandon(done)
            if isinstance(e, exc.ObjectStoreFullError):
                raise
            raise TypeError(
                f"Could not serialize the return value of {name} ({type(value).__name__}): "
                f"{type(e).__name__}: {e}"
            ) from None
    return out


def error_reply(task_id: bytes, error: BaseException, name: str, retry_exc: bytes) -> P.TaskDone:
    return P.TaskDone(
        task_id=task_id,
        results=[ser.dumps_task_error(error, name)],
        is_error=True,
        retryable=_retryable(error, retry_exc),
    )


def _retryable(error: BaseException, retry_exc: bytes) -> bool:
    if retry_exc == P.RETRY_NONE or not isinstance(error, Exception):
        return False
    if retry_exc == P.RETRY_ALL:
        return True
    try:
        allowed = ser.loads(retry_exc)
    except Exception:
        return False
    return isinstance(error, allowed)


def _set_visible_gpus(gpu_ids: list[int]) -> None:
    """The devices of these GPU slots, or init()'s CUDA_VISIBLE_DEVICES for a task with none."""
    original = _task_context.cuda_at_init()
    if gpu_ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(_task_context.gpu_device_ids(gpu_ids))
    elif original is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = original
