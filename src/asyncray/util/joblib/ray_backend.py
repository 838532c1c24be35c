"""joblib's ``"ray"`` backend: batches of joblib calls run on a
``ray.util.multiprocessing.Pool`` of asyncray actors.

Unlike Ray's backend, it does not patch joblib's ``PicklingPool`` (Ray's
rebinds that class's base for the whole process, which also changes joblib's
own ``"multiprocessing"`` backend); it drives the pool through joblib's
``PoolManagerMixin`` directly. ``n_jobs=-1`` means every CPU of the session.
"""

from __future__ import annotations

from typing import Any, Optional

from joblib._parallel_backends import (
    AutoBatchingMixin,
    ParallelBackendBase,
    PoolManagerMixin,
)

import asyncray

from ..multiprocessing.pool import Pool

# What joblib passes to every backend's ``configure``, at its defaults. Large
# arrays travel through asyncray's object store (shared memory), not joblib's
# memmapping, so these mean nothing here: the defaults (or memmapping off) are
# accepted, anything else is refused by name.
_MEMMAP_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "max_nbytes": (1024 * 1024, "1M", None),
    "mmap_mode": ("r", None),
    "temp_folder": (None,),
}
# Also always passed: joblib's own progress level and multiprocessing context
# (the pool's actors are asyncray's processes, whatever the context).
_IGNORED = {"verbose", "context"}


def _check_pool_args(pool_args: dict[str, Any]) -> None:
    for name, value in pool_args.items():
        if name in _IGNORED:
            continue
        if name in _MEMMAP_DEFAULTS:
            if value not in _MEMMAP_DEFAULTS[name]:
                raise ValueError(
                    f"the ray joblib backend does not support {name}={value!r}: asyncray "
                    "passes large arguments through its shared-memory object store, not "
                    f"joblib's memmapping; leave {name} at its default"
                )
            continue
        raise ValueError(f"the ray joblib backend does not support the option {name!r}")


class RayBackend(PoolManagerMixin, AutoBatchingMixin, ParallelBackendBase):
    """joblib backend on asyncray actors; ``ray_remote_args`` configure them."""

    supports_retrieve_callback = True
    supports_return_generator = False
    supports_timeout = True
    default_n_jobs = -1

    def __init__(
        self,
        nesting_level: Optional[int] = None,
        inner_max_num_threads: Optional[int] = None,
        ray_remote_args: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        self.ray_remote_args = ray_remote_args
        super().__init__(
            nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **kwargs
        )

    def effective_n_jobs(self, n_jobs: Optional[int]) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            if not asyncray.is_initialized():
                asyncray.init()
            cpus = int(asyncray.cluster_resources().get("CPU", 1))
            return max(cpus + 1 + n_jobs, 1)
        return n_jobs

    def configure(
        self,
        n_jobs: int = 1,
        parallel: Any = None,
        prefer: Optional[str] = None,
        require: Optional[str] = None,
        ray_remote_args: Optional[dict[str, Any]] = None,
        **pool_args: Any,
    ) -> int:
        _check_pool_args(pool_args)
        n_jobs = self.effective_n_jobs(n_jobs)
        self.parallel = parallel
        remote_args = ray_remote_args if ray_remote_args is not None else self.ray_remote_args
        self._pool = Pool(n_jobs, ray_remote_args=remote_args)
        return n_jobs
