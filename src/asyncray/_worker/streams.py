"""Producing a streaming generator's items, in a task worker or an actor.

Each yielded value is pickled and sent as a ``StreamItem`` at once, so the
consumer sees item 0 while the producer is still working on item 1. An
exception ends the stream as one more item holding the error, unless the
task may be retried for it (``retry_exceptions``): then it is kept in
``StreamWriter.retry`` for the task's reply, and the runtime runs the
generator again or ends the stream with it. With
backpressure ``N`` the producer pauses after an item while ``N`` items are
unconsumed, waiting for the runtime's ``StreamCredit`` — the same for sync
and async producers.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from .._wire import protocol as P
from .._wire import serialization as ser
from .._wire.channel import SocketChannel


class StreamWriter:
    """Sends the items of one stream and applies its backpressure."""

    def __init__(
        self,
        channel: SocketChannel,
        task_id: bytes,
        backpressure: int,
        error_payload: Callable[[BaseException], bytes],
        retryable: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self.channel = channel
        self.task_id = task_id
        self.backpressure = backpressure
        self.error_payload = error_payload
        self.retryable = retryable
        # The error the generator raised, if the task may be retried for it.
        self.retry: BaseException | None = None
        self.count = 0
        channel.open_credits(task_id)

    def close(self) -> None:
        """The stream ended: forget its credits (a process produces many streams)."""
        self.channel.close_credits(self.task_id)

    def emit(self, value: Any) -> None:
        try:
            data = ser.dumps(value)
        except Exception as e:
            raise TypeError(
                f"Could not serialize item {self.count} of the generator: {type(e).__name__}: {e}"
            ) from None
        self.count += 1
        self.channel.send(
            P.StreamItem(task_id=self.task_id, index=self.count, data=data, is_error=False)
        )

    def must_wait(self) -> int:
        """The consumed count to wait for before producing more (0: go on)."""
        if self.backpressure <= 0:
            return 0
        need = self.count - self.backpressure + 1
        return need if self.channel.credits.get(self.task_id, 0) < need else 0

    def fail(self, error: BaseException) -> None:
        if self.retryable is not None and self.retryable(error):
            self.retry = error
            return
        self.count += 1
        self.channel.send(
            P.StreamItem(
                task_id=self.task_id,
                index=self.count,
                data=self.error_payload(error),
                is_error=True,
            )
        )


def produce_sync(writer: StreamWriter, gen: Any) -> int:
    """Drive a generator (or an async generator, on a private loop); returns the item count."""
    try:
        if inspect.isasyncgen(gen):
            loop = asyncio.new_event_loop()
            try:
                while True:
                    try:
                        value = loop.run_until_complete(gen.__anext__())
                    except StopAsyncIteration:
                        break
                    _emit_and_wait(writer, value)
            finally:
                loop.close()
        else:
            for value in gen:
                _emit_and_wait(writer, value)
    except (SystemExit, KeyboardInterrupt):
        raise  # exit, or cancel(): the runtime ends the stream itself
    except BaseException as e:  # the error becomes the last item
        writer.fail(e)
    finally:
        writer.close()
    return writer.count


def _emit_and_wait(writer: StreamWriter, value: Any) -> None:
    writer.emit(value)
    need = writer.must_wait()
    if need:
        from .interrupts import protocol_io

        with protocol_io():
            writer.channel.wait_credit(writer.task_id, need)


async def produce_async(
    writer: StreamWriter, gen: Any, wait_credit: Callable[[bytes, int], Any]
) -> int:
    """Drive a generator on a running loop (async actors)."""
    try:
        if inspect.isasyncgen(gen):
            async for value in gen:
                writer.emit(value)
                need = writer.must_wait()
                if need:
                    await wait_credit(writer.task_id, need)
        else:
            for value in gen:
                writer.emit(value)
                need = writer.must_wait()
                if need:
                    await wait_credit(writer.task_id, need)
    except (SystemExit, asyncio.CancelledError):
        raise
    except BaseException as e:
        writer.fail(e)
    finally:
        writer.close()
    return writer.count
