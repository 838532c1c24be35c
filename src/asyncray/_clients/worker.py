"""The client inside a child (task worker or actor): messages go over its socket.

Any thread may send; whichever thread needs a reply reads the socket for
everyone (``_wire.channel.SocketChannel``). Views of shared-memory segments
opened and closed are reported around each message, so the runtime knows
which segments a child still reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._wire import protocol as P
from .._wire.channel import SocketChannel
from .._worker.interrupts import protocol_io
from .base import ClientBase, raise_if_error, reply_deadline, timed_out_reply

if TYPE_CHECKING:
    import asyncio

# asyncio, imported by the first ``request_async`` (see driver._asyncio).
_asyncio: Any = None


def _load_asyncio() -> Any:
    global _asyncio
    import asyncio

    _asyncio = asyncio
    return asyncio


class WorkerClient(ClientBase):
    """The client inside a task worker or actor process."""

    def __init__(self, channel: SocketChannel) -> None:
        super().__init__()
        self.channel = channel

    def post(self, msg: Any) -> None:
        msgs = self.with_reports(msg)
        if msgs is None:
            self.channel.send(msg)
        else:
            self.channel.send_many(msgs)

    def request(self, msg: Any) -> Any:
        patience = reply_deadline(msg)
        with protocol_io():
            self.post(msg)
            reply = self.channel.wait_reply(msg.req_id, patience)
            if reply is None:  # the kernel never answered: answer it here
                self.post(P.CancelWaiter(msg.req_id))
                return timed_out_reply(msg)
            return raise_if_error(reply)

    async def request_async(self, msg: Any) -> Any:
        aio = _asyncio or _load_asyncio()
        loop: asyncio.AbstractEventLoop = aio.get_running_loop()
        channel = self.channel
        if loop is channel.reader_loop:
            future = loop.create_future()
            channel.register_async(msg.req_id, future)
            self.post(msg)
            patience = reply_deadline(msg)
            if patience is None:
                return raise_if_error(await future)
            try:
                return raise_if_error(await aio.wait_for(future, patience))
            except aio.TimeoutError:  # the kernel never answered: answer it here
                channel.abandon(msg.req_id)
                self.post(P.CancelWaiter(msg.req_id))
                return timed_out_reply(msg)
        # A task running its own event loop: read the reply on a helper
        # thread so this loop keeps running meanwhile.
        return await loop.run_in_executor(None, self.request, msg)

    def request_callback(self, msg: Any, callback: Callable[[Any], None]) -> None:
        def run() -> None:
            with protocol_io():
                self.post(msg)
                reply = self.channel.wait_reply(msg.req_id)
            callback(reply)  # an ErrorReply too: the callback's decode raises it

        threading.Thread(target=run, daemon=True, name="asyncray-future").start()
