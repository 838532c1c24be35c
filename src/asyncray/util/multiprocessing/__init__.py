"""Ray's ``ray.util.multiprocessing``: a drop-in ``multiprocessing.Pool`` on actors."""

from multiprocessing import JoinableQueue, TimeoutError

from .pool import AsyncResult, Pool

__all__ = ["AsyncResult", "JoinableQueue", "Pool", "TimeoutError"]
