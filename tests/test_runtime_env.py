"""runtime_env until it is applied: what cannot be done here is refused, the rest warns once.

Never silently ignored (#17): keys that install packages or pull images, and
remote URIs, raise at the call site naming the key; other keys warn once per
process that they have no effect yet.
"""

from __future__ import annotations

import warnings

import pytest

import asyncray
from asyncray import _options

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fresh_warning(monkeypatch):
    monkeypatch.setattr(_options, "_runtime_env_warned", False)


@pytest.mark.parametrize("key", ["pip", "uv", "conda", "container", "image_uri"])
def test_a_key_that_installs_packages_is_refused_naming_it(key):
    def f():
        return 1

    with pytest.raises(ValueError, match=rf"runtime_env\['{key}'\] needs a package install"):
        asyncray.remote(runtime_env={key: ["requests"]})(f)
    with pytest.raises(ValueError, match=rf"runtime_env\['{key}'\]"):
        asyncray.remote(f).options(runtime_env={key: "x"})


@pytest.mark.parametrize("key", ["working_dir", "py_modules"])
def test_a_remote_uri_is_refused(key):
    with pytest.raises(ValueError, match="remote URI"):

        @asyncray.remote(runtime_env={key: "s3://bucket/code.zip"})
        class A:
            pass


def test_init_refuses_an_install_key(shutdown_only):
    with pytest.raises(ValueError, match=r"runtime_env\['conda'\]"):
        asyncray.init(num_cpus=1, runtime_env={"conda": "myenv"})
    assert not asyncray.is_initialized()


def test_other_keys_warn_once_that_they_have_no_effect_yet(fresh_warning, shutdown_only):
    def f():
        return 1

    with pytest.warns(RuntimeWarning, match=r"runtime_env=.*has no effect in asyncray yet") as rec:
        remote = asyncray.remote(runtime_env={"env_vars": {"A": "1"}})(f)
    assert rec[0].filename == __file__  # the user's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        remote.options(runtime_env={"env_vars": {"B": "2"}})  # once per process
        asyncray.remote(runtime_env={})(f)  # empty: nothing to say


def test_not_a_dict_is_a_type_error():
    with pytest.raises(TypeError, match="runtime_env"):
        asyncray.remote(runtime_env=["env_vars"])(lambda: 1)
