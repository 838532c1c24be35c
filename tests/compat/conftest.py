"""Fixtures of the compatibility suite: one runtime for the tests, on either backend.

Every test gets an initialized runtime (autouse ``runtime``) made with the
keywords of the ``init_kwargs`` fixture, which a module may override (the
runtime_env tests give a job-level ``runtime_env``).

- asyncray: ``init()`` takes milliseconds, so each test gets its own runtime
  and shuts it down; the leak checks of ``tests/conftest.py`` (children, shm
  segments, fds) then judge every test as in the rest of the suite.
- Ray: ``init()`` takes seconds, so one runtime is kept for as long as the
  keywords stay the same and shut down at the end of the session. Ray's
  processes belong to its session, so the per-test leak check (which would
  also shut the runtime down after every test) is replaced by a no-op.
"""

from __future__ import annotations

import copy

import pytest
from _compat import NUM_CPUS, ON_RAY

import asyncray as ray

_current: dict = {}


def _start(kwargs: dict) -> None:
    if ray.is_initialized():
        if ON_RAY and _current.get("kwargs") == kwargs:
            return
        ray.shutdown()
    _current["kwargs"] = copy.deepcopy(kwargs)  # Ray rewrites runtime_env in place
    ray.init(**copy.deepcopy(kwargs))


def _own_init(item: pytest.Item) -> bool:
    """Whether the test asks for other init keywords (a parametrized or overridden
    ``init_kwargs``)."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "init_kwargs" in callspec.params:
        return True
    cls = getattr(item, "cls", None)
    return cls is not None and "init_kwargs" in vars(cls)


def pytest_collection_modifyitems(config, items):
    if ON_RAY:
        # Tests with init keywords of their own run last, grouped, so Ray's
        # runtime (seconds to start) is restarted as few times as possible.
        items.sort(key=_own_init)


@pytest.fixture
def init_kwargs():
    """The keywords of the tests' ``init``; a module overrides this fixture to change them."""
    return {"num_cpus": NUM_CPUS}


@pytest.fixture(scope="session")
def _ray_session():
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(autouse=True)
def runtime(_ray_session, init_kwargs):
    _start(dict(init_kwargs))
    yield ray
    if not ON_RAY:
        ray.shutdown()
        _current.clear()


if ON_RAY:

    @pytest.fixture(autouse=True)
    def no_leaks():
        """Replaces the leak check of tests/conftest.py: Ray's workers outlive a test by design."""
        yield
