"""init's keywords Ray accepts: honoured, or one RuntimeWarning naming them; platform checks."""

from __future__ import annotations

import ctypes
import logging
import os
import warnings

import pytest

import asyncray
from asyncray._session import init_options, platform_checks
from asyncray._wire import shm


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Every test sees its one-time warnings afresh (they are once per process)."""
    monkeypatch.setattr(init_options, "_warned", set())
    logger = logging.getLogger("asyncray")
    level = logger.level
    yield
    logger.setLevel(level)
    init_options.configure_logger(False, None, None)  # removes a handler a test installed


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("labels", {"zone": "a"}),
        ("job_config", object()),
        ("logging_config", object()),
        ("enable_resource_isolation", True),
        ("cgroup_path", "/sys/fs/cgroup"),
        ("system_reserved_cpu", 1.0),
        ("system_reserved_memory", 1 << 30),
        ("proxy_server_url", "http://x:8080"),
        ("_node_ip_address", "10.0.0.1"),
        ("_redis_password", "secret"),
        ("_metrics_export_port", 9000),
        ("_plasma_directory", "/tmp"),
        ("_enable_object_reconstruction", True),
        ("_memory", 1 << 30),
        ("_node_name", "n1"),
    ],
)
def test_a_keyword_without_effect_warns_once_naming_it(shutdown_only, keyword, value):
    with pytest.warns(RuntimeWarning, match=rf"init\({keyword}=\.\.\.\) has no effect in asyncray"):
        asyncray.init(num_cpus=1, **{keyword: value})
    asyncray.shutdown()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncray.init(num_cpus=1, **{keyword: value})  # once per process


def test_the_warning_points_at_the_caller(shutdown_only):
    with pytest.warns(RuntimeWarning) as record:
        asyncray.init(num_cpus=1, labels={"zone": "a"})
    assert record[0].filename == __file__


def test_defaults_and_empty_values_do_not_warn(shutdown_only):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncray.init(
            num_cpus=1,
            include_dashboard=False,
            dashboard_host="127.0.0.1",
            labels={},
            runtime_env={},
            job_config=None,
            enable_resource_isolation=False,
            configure_logging=True,
            _enable_object_reconstruction=False,
        )


def test_unknown_system_config_key_warns_naming_it(shutdown_only):
    with pytest.warns(RuntimeWarning, match=r"_system_config\['made_up_key'\]"):
        asyncray.init(
            num_cpus=1, _system_config={"made_up_key": 1, "max_direct_call_object_size": 1}
        )


def test_keywords_ray_refuses_still_raise():
    with pytest.raises(RuntimeError, match="Unknown keyword argument"):
        asyncray.init(num_cpus=1, _not_a_ray_option=1)
    with pytest.raises(RuntimeError, match="allow_multiple"):
        asyncray.init(num_cpus=1, allow_multiple=True)
    with pytest.raises(RuntimeError, match="storage"):
        asyncray.init(num_cpus=1, storage="/tmp/x")
    assert not asyncray.is_initialized()


def test_logging_level_and_format_configure_the_asyncray_logger(shutdown_only, capsys):
    asyncray.init(num_cpus=1, logging_level="debug", logging_format="AR %(levelname)s %(message)s")
    logger = logging.getLogger("asyncray")
    assert logger.level == logging.DEBUG
    logger.debug("hello")
    assert "AR DEBUG hello" in capsys.readouterr().err


def test_configure_logging_false_leaves_the_logger_alone(shutdown_only):
    logger = logging.getLogger("asyncray")
    logger.setLevel(logging.ERROR)
    asyncray.init(num_cpus=1, configure_logging=False, logging_level=logging.DEBUG)
    assert logger.level == logging.ERROR


def test_temp_dir_is_where_objects_spill(shutdown_only, tmp_path):
    asyncray.init(num_cpus=1, _temp_dir=str(tmp_path))
    assert shm.spill_directory().startswith(str(tmp_path / "asyncray-spill"))


def test_temp_dir_must_be_absolute():
    with pytest.raises(ValueError, match="absolute"):
        asyncray.init(num_cpus=1, _temp_dir="relative/dir")
    assert not asyncray.is_initialized()


# ---------------------------------------------------------------- platform


def test_init_names_a_missing_fork(shutdown_only, monkeypatch):
    monkeypatch.delattr(os, "fork")
    with pytest.raises(RuntimeError, match=r"os\.fork.*supports Linux"):
        asyncray.init(num_cpus=1)
    assert not asyncray.is_initialized()


def test_init_names_a_missing_prctl(shutdown_only, monkeypatch):
    def no_libc(*args, **kwargs):
        raise OSError("no libc here")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    with pytest.raises(RuntimeError, match=r"prctl.*supports Linux"):
        asyncray.init(num_cpus=1)
    assert not asyncray.is_initialized()


def test_init_names_a_missing_fd_passing_and_platform(shutdown_only, monkeypatch):
    import socket
    import sys

    monkeypatch.delattr(socket, "send_fds")
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(RuntimeError, match=r"Linux \(this is darwin\).*send_fds"):
        asyncray.init(num_cpus=1)


def test_this_platform_has_everything():
    assert platform_checks.missing(embedded=True) == []


def test_a_driver_joining_a_head_gets_the_same_warnings(head, shutdown_only):
    with pytest.warns(RuntimeWarning) as record:
        asyncray.init(
            address=head.socket,
            _temp_dir="/tmp",
            _system_config={"made_up_key": 1, "max_direct_call_object_size": 1},
            object_spilling_directory="/tmp",
        )
    messages = [str(w.message) for w in record]
    assert any("init(_temp_dir=...) has no effect" in m for m in messages)
    assert any("_system_config['made_up_key']" in m for m in messages)
    assert any("_system_config['max_direct_call_object_size']" in m for m in messages)
    assert any("init(object_spilling_directory=...) has no effect" in m for m in messages)
    assert asyncray.cluster_resources()["CPU"] == 2


def test_a_driver_joining_a_head_checks_its_platform(head, shutdown_only, monkeypatch):
    import socket

    monkeypatch.delattr(socket, "SO_PEERCRED")
    with pytest.raises(RuntimeError, match=r"SO_PEERCRED.*supports Linux"):
        asyncray.init(address=head.socket)
    assert not asyncray.is_initialized()
