"""init / shutdown / is_initialized, auto-init, and the state API before init."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import asyncray
from asyncray.exceptions import RaySystemError


@asyncray.remote
def add_one(x):
    return x + 1


def test_is_initialized_follows_init_and_shutdown(shutdown_only):
    assert not asyncray.is_initialized()
    asyncray.init(num_cpus=2)
    assert asyncray.is_initialized()
    asyncray.shutdown()
    assert not asyncray.is_initialized()


def test_init_reports_the_requested_cpus(shutdown_only):
    asyncray.init(num_cpus=2)
    assert asyncray.cluster_resources()["CPU"] == 2


def test_second_init_raises_and_names_ignore_reinit_error(ray_start):
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        asyncray.init(num_cpus=2)
    assert asyncray.is_initialized()
    assert asyncray.get(add_one.remote(1)) == 2


def test_ignore_reinit_error_keeps_the_running_instance(ray_start):
    asyncray.init(num_cpus=1, ignore_reinit_error=True)
    assert asyncray.is_initialized()
    assert asyncray.cluster_resources()["CPU"] == 2
    assert asyncray.get(add_one.remote(1)) == 2


def test_shutdown_is_idempotent(shutdown_only):
    asyncray.shutdown()  # never initialized: a no-op
    asyncray.init(num_cpus=2)
    asyncray.shutdown()
    asyncray.shutdown()
    assert not asyncray.is_initialized()


def test_reinit_after_shutdown_runs_functions_defined_before(shutdown_only):
    asyncray.init(num_cpus=2)
    assert asyncray.get(add_one.remote(1)) == 2
    asyncray.shutdown()
    asyncray.init(num_cpus=2)
    assert asyncray.get(add_one.remote(41)) == 42
    assert asyncray.get(asyncray.put("again")) == "again"


def test_unknown_init_keyword_raises_runtime_error(shutdown_only):
    with pytest.raises(RuntimeError, match=r"Unknown keyword argument\(s\): foo"):
        asyncray.init(num_cpus=2, foo=1)
    assert not asyncray.is_initialized()


def test_namespace_of_wrong_type_raises_type_error(shutdown_only):
    with pytest.raises(TypeError, match="namespace must be None or a string"):
        asyncray.init(num_cpus=2, namespace=1)
    assert not asyncray.is_initialized()


def test_empty_namespace_raises_value_error(shutdown_only):
    with pytest.raises(ValueError, match="not a valid namespace"):
        asyncray.init(num_cpus=2, namespace="")
    assert not asyncray.is_initialized()


@pytest.mark.parametrize("key", ["CPU", "GPU"])
def test_default_resource_as_custom_resource_is_rejected(shutdown_only, key):
    with pytest.raises((AssertionError, ValueError), match=key):
        asyncray.init(num_cpus=2, resources={key: 1})
    assert not asyncray.is_initialized()


def test_fractional_node_resource_is_rejected(shutdown_only):
    with pytest.raises(ValueError, match="widget"):
        asyncray.init(num_cpus=2, resources={"widget": 2.5})
    assert not asyncray.is_initialized()


def test_local_mode_is_no_longer_supported(shutdown_only):
    with pytest.raises(RuntimeError, match="local_mode"):
        asyncray.init(num_cpus=2, local_mode=True)
    assert not asyncray.is_initialized()


@pytest.mark.parametrize("state_api", ["available_resources", "cluster_resources"])
def test_state_api_before_init_raises_ray_system_error(shutdown_only, state_api):
    with pytest.raises(RaySystemError, match=r"init\(\)"):
        getattr(asyncray, state_api)()
    assert not asyncray.is_initialized()


def test_put_auto_initializes(shutdown_only):
    ref = asyncray.put(5)
    assert asyncray.is_initialized()
    assert asyncray.get(ref) == 5


def test_get_auto_initializes(shutdown_only):
    assert asyncray.get([]) == []
    assert asyncray.is_initialized()


def test_wait_auto_initializes(shutdown_only):
    assert asyncray.wait([]) == ([], [])
    assert asyncray.is_initialized()


def test_remote_call_auto_initializes(shutdown_only):
    ref = add_one.remote(2)
    assert asyncray.is_initialized()
    assert asyncray.get(ref) == 3


def test_get_runtime_context_auto_initializes(shutdown_only):
    ctx = asyncray.get_runtime_context()
    assert asyncray.is_initialized()
    assert ctx.get_job_id()


def test_remote_decorator_does_not_initialize(shutdown_only):
    @asyncray.remote
    def f():
        return 1

    assert not asyncray.is_initialized()


def test_init_returns_rays_context_object(shutdown_only):
    ctx = asyncray.init(num_cpus=2, namespace="ctx-test")
    assert type(ctx).__name__ == "RayContext"
    assert ctx.address_info["address"] == "local"
    assert ctx.address_info["namespace"] == "ctx-test"
    assert ctx.address_info["node_id"] == asyncray.get_runtime_context().get_node_id()
    assert ctx.dashboard_url is None  # no dashboard: None, as Ray says when it has none
    assert ctx.ray_version == asyncray.__version__
    assert ctx.python_version == "{}.{}.{}".format(*sys.version_info[:3])
    # Reading it as a mapping still works, with Ray's DeprecationWarning.
    with pytest.warns(DeprecationWarning, match=r'ctx.address_info\["address"\]'):
        assert ctx["address"] == "local"


def test_the_package_version_is_the_projects():
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == asyncray.__version__
