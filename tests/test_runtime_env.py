"""runtime_env on tasks, actors and init: applied in workers kept apart, or refused by name.

What a Ray user relies on (#17): ``env_vars`` are set in the worker that runs
the task or actor, ``working_dir`` is its working directory and importable,
``py_modules`` are importable; the job's env (``init``) applies to every task
and actor, a task's own env merges over it (``env_vars`` by variable), and
nested tasks inherit their parent's. A worker set up for one env never runs
another env's task. What cannot be done on one host raises at the call site.
"""

from __future__ import annotations

import os
import sys

import pytest

import asyncray
import asyncray.util.queue
from asyncray.exceptions import RuntimeEnvSetupError

pytestmark = pytest.mark.timeout(60)

NUM_CPUS = 2


@asyncray.remote
def environ(*names):
    return [os.environ.get(n) for n in names]


@asyncray.remote
def cwd_and_env():
    return os.getcwd(), asyncray.get_runtime_context().runtime_env


@asyncray.remote
def nested_environ(*names):
    return asyncray.get(environ.remote(*names))


@asyncray.remote
class EnvReader:
    def environ(self, *names):
        return [os.environ.get(n) for n in names]

    def nested(self, *names):
        return asyncray.get(environ.remote(*names))

    def cwd(self):
        return os.getcwd()


@pytest.fixture
def code_dirs(tmp_path):
    """A working directory with a module, a package directory and a single-file module."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "wd_helper.py").write_text("VALUE = 'from working_dir'\n")
    (work / "data.txt").write_text("hello\n")
    libs = tmp_path / "libs"
    (libs / "rt_pkg").mkdir(parents=True)
    (libs / "rt_pkg" / "__init__.py").write_text("NAME = 'rt_pkg'\n")
    single = tmp_path / "single"
    single.mkdir()
    (single / "rt_single.py").write_text("NAME = 'rt_single'\n")
    return work, libs / "rt_pkg", single / "rt_single.py"


# ------------------------------------------------------------ refused at the call site


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
    value = "s3://bucket/code.zip" if key == "working_dir" else ["s3://bucket/code.zip"]
    with pytest.raises(ValueError, match="remote URI"):

        @asyncray.remote(runtime_env={key: value})
        class A:
            pass


def test_init_refuses_an_install_key(shutdown_only):
    with pytest.raises(ValueError, match=r"runtime_env\['conda'\]"):
        asyncray.init(num_cpus=1, runtime_env={"conda": "myenv"})
    assert not asyncray.is_initialized()


def test_not_a_dict_is_a_type_error():
    with pytest.raises(TypeError, match="runtime_env"):
        asyncray.remote(runtime_env=["env_vars"])(lambda: 1)


@pytest.mark.parametrize(
    ("env_vars", "message"),
    [
        ({"A": 1}, r"the value 1 is of type <class 'int'>"),
        ({1: "a"}, r"the key 1 is of type <class 'int'>"),
        (["A=1"], r"must be of type Dict\[str, str\], got <class 'list'>"),
    ],
)
def test_env_vars_must_be_strings_as_in_ray(env_vars, message):
    with pytest.raises(TypeError, match=message):
        environ.options(runtime_env={"env_vars": env_vars})


def test_paths_that_do_not_exist_and_package_files_are_refused(shutdown_only, tmp_path):
    with pytest.raises(ValueError, match=r"runtime_env\['working_dir'\] = .* is not an existing"):
        asyncray.init(num_cpus=1, runtime_env={"working_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match=r"runtime_env\['py_modules'\] = .* is not an existing"):
        asyncray.init(num_cpus=1, runtime_env={"py_modules": [str(tmp_path / "missing")]})
    wheel = tmp_path / "x-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"package file.*install the wheel"):
        asyncray.init(num_cpus=1, runtime_env={"py_modules": [str(wheel)]})
    with pytest.raises(TypeError, match="`py_modules` must be a list"):
        asyncray.init(num_cpus=1, runtime_env={"py_modules": str(tmp_path)})
    assert not asyncray.is_initialized()


@pytest.mark.parametrize("key", ["working_dir", "py_modules"])
def test_a_local_directory_is_for_the_job_only_as_in_ray(tmp_path, key):
    value = str(tmp_path) if key == "working_dir" else [str(tmp_path)]
    message = f"{tmp_path} is not a valid URI.*only supported at the job level"
    with pytest.raises(ValueError, match=message):
        environ.options(runtime_env={key: value})
    with pytest.raises(ValueError, match=message):
        asyncray.remote(runtime_env={key: value})(lambda: 1)
    with pytest.raises(ValueError, match=message):
        EnvReader.options(runtime_env={key: value})


@pytest.mark.parametrize(
    ("runtime_env", "error", "message"),
    [
        ({"worker_process_setup_hook": print}, ValueError, "worker_process_setup_hook"),
        ({"py_executable": "python3.12"}, ValueError, "py_executable"),
        ({"my_plugin": {"x": 1}}, ValueError, "unknown field 'my_plugin'"),
        ({"excludes": "*.log"}, TypeError, r"excludes'\] must be of type List\[str\]"),
        ({"config": {"setup_timeout": 5}}, ValueError, "unknown fields"),
    ],
)
def test_fields_asyncray_cannot_apply_are_refused_by_name(runtime_env, error, message):
    with pytest.raises(error, match=message):
        environ.options(runtime_env=runtime_env)


# ------------------------------------------------------------ applied


def test_env_vars_are_set_for_the_task_and_never_leak_to_other_tasks(shutdown_only):
    asyncray.init(num_cpus=NUM_CPUS)
    assert "RT_ENV_X" not in os.environ
    with_x = environ.options(runtime_env={"env_vars": {"RT_ENV_X": "1"}})
    with_y = environ.options(runtime_env={"env_vars": {"RT_ENV_X": "2"}})
    for _ in range(3):  # interleaved: each runs only on workers set up for its env
        refs = [with_x.remote("RT_ENV_X"), environ.remote("RT_ENV_X"), with_y.remote("RT_ENV_X")]
        assert asyncray.get(refs) == [["1"], [None], ["2"]]
    assert "RT_ENV_X" not in os.environ  # the driver's environment is untouched


def test_an_actor_runs_under_its_runtime_env_and_its_nested_tasks_inherit_it(shutdown_only):
    asyncray.init(num_cpus=NUM_CPUS)
    actor = EnvReader.options(runtime_env={"env_vars": {"RT_ENV_A": "actor"}}).remote()
    assert asyncray.get(actor.environ.remote("RT_ENV_A")) == ["actor"]
    assert asyncray.get(actor.nested.remote("RT_ENV_A")) == ["actor"]
    plain = EnvReader.remote()
    assert asyncray.get(plain.environ.remote("RT_ENV_A")) == [None]


def test_working_dir_is_the_cwd_and_importable_for_tasks_and_actors(shutdown_only, code_dirs):
    work, _, _ = code_dirs

    @asyncray.remote
    def read():
        import wd_helper

        with open("data.txt") as f:
            return os.getcwd(), wd_helper.VALUE, f.read()

    asyncray.init(num_cpus=NUM_CPUS, runtime_env={"working_dir": str(work)})
    assert asyncray.get(read.remote()) == (str(work), "from working_dir", "hello\n")
    assert asyncray.get(EnvReader.remote().cwd.remote()) == str(work)
    assert os.getcwd() != str(work)  # the driver stays where it is


def test_a_relative_working_dir_is_read_from_the_current_directory(
    shutdown_only, code_dirs, monkeypatch
):
    work, _, _ = code_dirs
    monkeypatch.chdir(work.parent)
    asyncray.init(num_cpus=NUM_CPUS, runtime_env={"working_dir": "work"})
    cwd, env = asyncray.get(cwd_and_env.remote())
    assert cwd == str(work)
    assert env == {"working_dir": str(work)}


def test_py_modules_directories_files_and_module_objects_are_importable(shutdown_only, code_dirs):
    _, package, single = code_dirs

    @asyncray.remote
    def names():
        import rt_pkg
        import rt_single

        return rt_pkg.NAME, rt_single.NAME, os.path.dirname(rt_pkg.__file__)

    sys.path.insert(0, str(single.parent))
    try:
        import rt_single  # a module object: the worker imports it from its file

        env = {"py_modules": [str(package), rt_single]}
        asyncray.init(num_cpus=NUM_CPUS, runtime_env=env)
        assert asyncray.get(names.remote()) == ("rt_pkg", "rt_single", str(package))
    finally:
        sys.path.remove(str(single.parent))
        sys.modules.pop("rt_single", None)


def test_the_jobs_env_applies_to_every_task_and_actor_and_task_envs_merge_over_it(
    shutdown_only, code_dirs
):
    work, _, _ = code_dirs
    job_env = {
        "env_vars": {"RT_JOB": "job", "RT_BOTH": "job"},
        "working_dir": str(work),
        "config": {"setup_timeout_seconds": 60},
    }
    asyncray.init(num_cpus=NUM_CPUS, runtime_env=job_env)
    assert asyncray.get(environ.remote("RT_JOB", "RT_BOTH")) == ["job", "job"]
    merged = environ.options(runtime_env={"env_vars": {"RT_BOTH": "task", "RT_TASK": "t"}})
    assert asyncray.get(merged.remote("RT_JOB", "RT_BOTH", "RT_TASK")) == ["job", "task", "t"]
    assert asyncray.get(EnvReader.remote().environ.remote("RT_JOB")) == ["job"]
    # A field other than env_vars replaces the job's; the job's other fields stay.
    task = cwd_and_env.options(runtime_env={"config": {"eager_install": False}})
    cwd, env = asyncray.get(task.remote())
    assert cwd == str(work)
    assert env == {
        "config": {"eager_install": False},
        "env_vars": {"RT_BOTH": "job", "RT_JOB": "job"},
        "working_dir": str(work),
    }
    ctx = asyncray.get_runtime_context()
    assert ctx.runtime_env == {
        "config": {"setup_timeout_seconds": 60},
        "env_vars": {"RT_BOTH": "job", "RT_JOB": "job"},
        "working_dir": str(work),
    }
    assert ctx.get_runtime_env_string().startswith('{"config": {"setup_timeout_seconds": 60}')


def test_nested_tasks_inherit_their_parents_env_and_merge_their_own(shutdown_only):
    asyncray.init(num_cpus=NUM_CPUS)
    parent = nested_environ.options(runtime_env={"env_vars": {"RT_P": "parent"}})
    assert asyncray.get(parent.remote("RT_P")) == ["parent"]

    @asyncray.remote
    def child_with_its_own():
        f = environ.options(runtime_env={"env_vars": {"RT_C": "child"}})
        return asyncray.get(f.remote("RT_P", "RT_C"))

    outer = child_with_its_own.options(runtime_env={"env_vars": {"RT_P": "parent"}})
    assert asyncray.get(outer.remote()) == ["parent", "child"]


def test_the_default_env_is_empty_and_the_next_session_starts_without_the_jobs(shutdown_only):
    asyncray.init(num_cpus=NUM_CPUS, runtime_env={"env_vars": {"RT_JOB": "1"}})
    assert asyncray.get(environ.remote("RT_JOB")) == ["1"]
    asyncray.shutdown()
    asyncray.init(num_cpus=NUM_CPUS)
    assert asyncray.get_runtime_context().runtime_env == {}
    assert asyncray.get(environ.remote("RT_JOB")) == [None]
    assert asyncray.get(cwd_and_env.remote())[1] == {}


def test_an_env_that_cannot_be_set_up_fails_its_task_with_runtime_env_setup_error(
    shutdown_only, tmp_path
):
    gone = tmp_path / "gone"
    gone.mkdir()
    asyncray.init(num_cpus=NUM_CPUS, runtime_env={"working_dir": str(gone)})  # checked: exists
    gone.rmdir()
    with pytest.raises(RuntimeEnvSetupError, match="Failed to set up runtime_env"):
        asyncray.get(environ.remote("X"))
    with pytest.raises(asyncray.exceptions.ActorDiedError, match="Failed to set up runtime_env"):
        asyncray.get(EnvReader.remote().cwd.remote())
    # A variable with a NUL byte cannot be set: that task fails, the runtime goes on.
    bad = environ.options(runtime_env={"env_vars": {"A": "x\x00y"}})
    with pytest.raises(RuntimeEnvSetupError, match="embedded null byte"):
        asyncray.get(bad.remote("A"))


@asyncray.remote(num_cpus=1)
def _hold_a_cpu(release):
    release.get(timeout=30)


def test_excludes_and_config_are_accepted_and_shown(shutdown_only, code_dirs):
    work, _, _ = code_dirs
    env = {
        "working_dir": str(work),
        "excludes": ["*.txt"],
        "config": {"setup_timeout_seconds": 60},
    }
    asyncray.init(num_cpus=NUM_CPUS, runtime_env=env)
    _, seen = asyncray.get(cwd_and_env.remote())
    assert seen == env


@pytest.mark.timeout(120)
def test_drivers_of_one_head_each_run_under_their_own_jobs_env(head, code_dirs):
    work, package, _ = code_dirs
    code = """
import os, sys
import asyncray as ray
ray.init(
    address="auto",
    runtime_env={
        "env_vars": {"RT_JOB": sys.argv[-1]},
        "working_dir": WORK,
        "py_modules": [PACKAGE],
    },
)

@ray.remote
def env():
    return os.environ.get("RT_JOB"), os.environ.get("RT_TASK")

@ray.remote
def in_dirs():
    import rt_pkg
    return os.getcwd(), rt_pkg.NAME, os.environ.get("RT_JOB")

@ray.remote
class A:
    def env(self):
        return os.environ.get("RT_JOB")

task_env = {"env_vars": {"RT_TASK": "t"}}
print(ray.get([env.remote(), env.options(runtime_env=task_env).remote(), env.remote()]))
print(ray.get(in_dirs.remote()))
print(ray.get(A.remote().env.remote()))
""".replace("WORK", repr(str(work))).replace("PACKAGE", repr(str(package)))
    first = head.spawn_driver(code.replace("sys.argv[-1]", "'one'"))
    second = head.run_driver(code.replace("sys.argv[-1]", "'two'"))
    out_first, err_first = first.communicate(timeout=60)
    assert first.returncode == 0, err_first
    for out, job in ((out_first, "one"), (second.stdout, "two")):
        assert out.splitlines() == [
            f"[('{job}', None), ('{job}', 't'), ('{job}', None)]",
            f"('{work}', 'rt_pkg', '{job}')",
            job,
        ]
