"""``Conn``: the kernel's view of one connection — a child's socket, or the embedded driver.

Every message reaches ``Runtime.handle`` with the connection it came on, and
every reply goes back through that connection's ``send``. The kernel only
knows this protocol: ``worker_pool.ChildConn`` implements it over a socket,
and the driver's client implements it in-process (the driver's replies
complete its waiters directly). The same kernel can therefore serve a
driver in another process: that driver gets a socket connection too
(``client_conn.ClientConn``, on a shared head).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .worker_pool import WorkerRecord


class Conn(Protocol):
    """One peer of the kernel, as the kernel sees it."""

    # Read-only here (properties), so a peer whose values are never None
    # (a child's worker and units) still satisfies the protocol.

    @property
    def worker(self) -> WorkerRecord | None:
        """The child process behind this connection; None for a driver."""

    @property
    def requests(self) -> dict[int, Any]:
        """Requests of this peer parked in the kernel (blocked gets, waits, queue calls)."""

    @property
    def units(self) -> dict[bytes, int] | None:
        """Units of objects this peer's process holds, by id (freed if it dies); None: not
        tracked (the embedded driver outlives the kernel)."""

    @property
    def job(self) -> str:
        """The job of what this peer runs (a driver: its own; a child: its task's or actor's)."""

    @property
    def keeps_values(self) -> bool:
        """Whether small results of tasks this peer owns go to its in-process store
        (``deliver``) before anyone asks for them."""

    def send(self, msg: Any) -> None:
        """Send one message to the peer (a reply, or a call to run)."""

    def deliver(self, object_id: bytes, data: bytes) -> None:
        """A small value this peer owns, for its in-process store (if ``keeps_values``)."""

    def forget(self, object_ids: list[bytes]) -> None:
        """Released or never-taken objects: drop any copy delivered to the peer's store."""
