"""Programs that hung on a one-CPU runtime (issue #15), each with a deadline.

Every test runs ``init(num_cpus=1)``, where a task blocked in ``get`` must
lend its CPU for the work it waits on to run. Each ``get`` carries a timeout
well under the test's own, so a regression fails with ``GetTimeoutError``
naming the hang instead of stopping the suite.
"""

from __future__ import annotations

import os

import pytest

import asyncray
from asyncray.exceptions import GetTimeoutError, WorkerCrashedError

# How long a program that should take milliseconds may take before it counts
# as hung: generous for a loaded 2-core machine, far under the test timeout.
HANG_S = 10.0


@asyncray.remote(max_retries=0)
def crash() -> None:
    os._exit(1)


@asyncray.remote
class Counter:
    def value(self) -> int:
        return 1


@asyncray.remote
def call_and_get(actor: asyncray.actor.ActorHandle) -> int:
    return asyncray.get(actor.value.remote())


@pytest.mark.timeout(30)
def test_tasks_blocked_on_an_unstarted_actor_after_a_worker_crash(shutdown_only):
    """The crash leaves no task worker; the actor's starting process is not one, so the
    queued tasks must get a worker forked for them (before: nothing ever ran them)."""
    asyncray.init(num_cpus=1)
    with pytest.raises(WorkerCrashedError):
        asyncray.get(crash.remote(), timeout=HANG_S)
    actor = Counter.remote()
    refs = [call_and_get.remote(actor), call_and_get.remote(actor)]
    try:
        assert asyncray.get(refs, timeout=HANG_S) == [1, 1]
    except GetTimeoutError:
        pytest.fail(f"two tasks blocked on actor calls did not finish within {HANG_S} s")
