"""Jobs: one per driver, the unit a shared head releases when its driver goes.

An embedded session has one job (``01000000``), its driver in-process. A
shared head (``asyncray start``) opens a job for each driver admitted
(``ClientConn``) and numbers them as Ray does. Tasks, actors and placement
groups carry the job of the code that made them; a task worker is told
which job its next task belongs to when that changes (``SetJob``), so its
namespace, its output and the driver's code directories on its ``sys.path``
follow the job. When a driver disconnects — by
``shutdown()``, by exiting, or killed — its job ends: its tasks are
cancelled, its non-detached actors killed, its placement groups and queues
removed, and every reference it held given back. Detached actors live on.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .._wire import protocol as P

# Ended jobs remembered for ``asyncray status`` and the state API (bounded).
ENDED_JOBS_KEPT = 1_000


def job_id_of(number: int) -> str:
    """Ray's job id for the ``number``-th job: 4 bytes, little-endian, in hex (1 → 01000000)."""
    return number.to_bytes(4, "little").hex()


class JobRecord:
    """One driver's job."""

    __slots__ = (
        "code_paths",
        "conn",
        "ended",
        "entrypoint",
        "job_id",
        "log_to_driver",
        "namespace",
        "output",
        "pid",
        "started",
    )

    def __init__(
        self,
        job_id: str,
        conn: Any,
        namespace: str,
        *,
        pid: int,
        log_to_driver: bool,
        output: Callable[[Any], None],
        entrypoint: str = "",
        code_paths: list[str] | None = None,
    ) -> None:
        self.job_id = job_id
        self.conn = conn
        self.namespace = namespace
        self.pid = pid
        self.log_to_driver = log_to_driver
        # Where output of this job's tasks and actors goes (a ``Log``).
        self.output = output
        self.entrypoint = entrypoint
        # Where the driver's code is: its workers import from there (``SetJob``).
        self.code_paths = code_paths or []
        self.started = time.time()
        self.ended = 0.0

    def row(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "namespace": self.namespace,
            "driver_pid": self.pid,
            "entrypoint": self.entrypoint,
            "status": "RUNNING" if not self.ended else "SUCCEEDED",
            "start_time": self.started,
            "end_time": self.ended or None,
        }


class JobTable:
    """Live jobs by id, and the last ``ENDED_JOBS_KEPT`` that ended."""

    def __init__(self) -> None:
        self.live: dict[str, JobRecord] = {}
        self.ended: OrderedDict[str, JobRecord] = OrderedDict()
        self._count = 0

    def open(
        self,
        conn: Any,
        namespace: str,
        *,
        pid: int,
        log_to_driver: bool,
        output: Callable[[Any], None],
        entrypoint: str = "",
        job_id: str = "",
        code_paths: list[str] | None = None,
    ) -> JobRecord:
        self._count += 1
        job = JobRecord(
            job_id or job_id_of(self._count),
            conn,
            namespace,
            pid=pid,
            log_to_driver=log_to_driver,
            output=output,
            entrypoint=entrypoint,
            code_paths=code_paths,
        )
        self.live[job.job_id] = job
        return job

    def close(self, job_id: str) -> JobRecord | None:
        job = self.live.pop(job_id, None)
        if job is None:
            return None
        job.ended = time.time()
        job.conn = None
        self.ended[job_id] = job
        while len(self.ended) > ENDED_JOBS_KEPT:
            self.ended.popitem(last=False)
        return job

    def namespace(self, job_id: str) -> str:
        job = self.live.get(job_id) or self.ended.get(job_id)
        return "" if job is None else job.namespace

    def set_job(self, job_id: str) -> P.SetJob:
        """What tells a worker its next task (or its actor) is ``job_id``'s."""
        job = self.live.get(job_id) or self.ended.get(job_id)
        if job is None:
            return P.SetJob(job_id, "")
        return P.SetJob(job_id, job.namespace, job.code_paths)
