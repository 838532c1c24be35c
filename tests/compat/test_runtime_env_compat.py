"""runtime_env: env_vars, working_dir and py_modules on tasks, actors and the job.

Ray's semantics, which asyncray applies too (docs/ray-compatibility.md,
"runtime_env": directories are used in place rather than uploaded).
"""

from __future__ import annotations

import os

import pytest
from _compat import NUM_CPUS

import asyncray as ray


@ray.remote
def env(*names):
    return {name: os.environ.get(name) for name in names}


@ray.remote
def import_value(module):
    import importlib

    return importlib.import_module(module).VALUE


@ray.remote
def read(path):
    with open(path) as f:
        return f.read()


@ray.remote
class EnvActor:
    def env(self, *names):
        return {name: os.environ.get(name) for name in names}

    def import_value(self, module):
        import importlib

        return importlib.import_module(module).VALUE


def _write_module(directory, module, value):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(f"VALUE = {value!r}\n")
    return directory


def _write_package(parent, package, value):
    pkg = parent / package
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("from .inner import VALUE\n")
    (pkg / "inner.py").write_text(f"VALUE = {value!r}\n")
    return pkg


# -- task and actor level ----------------------------------------------------


def test_env_vars_on_a_task():
    ref = env.options(runtime_env={"env_vars": {"COMPAT_TASK_VAR": "task"}}).remote(
        "COMPAT_TASK_VAR"
    )
    assert ray.get(ref, timeout=60) == {"COMPAT_TASK_VAR": "task"}
    # Only that task: a plain task does not see it.
    assert ray.get(env.remote("COMPAT_TASK_VAR"), timeout=60) == {"COMPAT_TASK_VAR": None}


def test_env_vars_in_the_decorator():
    @ray.remote(runtime_env={"env_vars": {"COMPAT_DECORATED": "yes"}})
    def decorated():
        return os.environ.get("COMPAT_DECORATED")

    assert ray.get(decorated.remote(), timeout=60) == "yes"


def test_env_vars_on_an_actor():
    actor = EnvActor.options(runtime_env={"env_vars": {"COMPAT_ACTOR_VAR": "actor"}}).remote()
    assert ray.get(actor.env.remote("COMPAT_ACTOR_VAR"), timeout=60) == {
        "COMPAT_ACTOR_VAR": "actor"
    }
    ray.kill(actor)


def test_a_child_task_inherits_its_parents_runtime_env():
    @ray.remote
    def parent():
        return ray.get(env.remote("COMPAT_INHERITED"))

    ref = parent.options(runtime_env={"env_vars": {"COMPAT_INHERITED": "from parent"}}).remote()
    assert ray.get(ref, timeout=60) == {"COMPAT_INHERITED": "from parent"}


@pytest.mark.parametrize("key", ["working_dir", "py_modules"])
def test_a_local_directory_is_for_the_job_only(tmp_path, key):
    # Ray uploads local directories only for the job (init); a task or actor
    # naming one is refused: "only supported at the job level".
    value = str(tmp_path) if key == "working_dir" else [str(tmp_path)]
    with pytest.raises(ValueError, match="job level"):
        env.options(runtime_env={key: value}).remote("X")
    with pytest.raises(ValueError, match="job level"):
        EnvActor.options(runtime_env={key: value}).remote()


# -- job level (init(runtime_env=...)) -----------------------------------------


@pytest.fixture(scope="module")
def job_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    wd = _write_module(root / "wd", "compat_job_module", "job")
    (wd / "data.txt").write_text("relative file")
    pkg = _write_package(root / "mods", "compat_job_pkg", "job package")
    return wd, pkg


class TestJobLevel:
    """One init with a job-level runtime_env for the whole class (one restart on Ray)."""

    @pytest.fixture
    def init_kwargs(self, job_dirs):
        wd, pkg = job_dirs
        return {
            "num_cpus": NUM_CPUS,
            "runtime_env": {
                "working_dir": str(wd),
                "py_modules": [str(pkg)],
                "env_vars": {"COMPAT_JOB": "job", "COMPAT_BOTH": "job"},
            },
        }

    def test_every_task_gets_the_job_env(self):
        assert ray.get(env.remote("COMPAT_JOB"), timeout=60) == {"COMPAT_JOB": "job"}

    def test_working_dir_is_importable_and_the_current_directory(self):
        assert ray.get(import_value.remote("compat_job_module"), timeout=60) == "job"
        # Relative paths resolve in (a copy of) the working directory.
        assert ray.get(read.remote("data.txt"), timeout=60) == "relative file"

    def test_py_modules_package_is_importable(self):
        assert ray.get(import_value.remote("compat_job_pkg"), timeout=60) == "job package"

    def test_actors_get_the_job_env(self):
        actor = EnvActor.remote()
        assert ray.get(actor.env.remote("COMPAT_JOB"), timeout=60) == {"COMPAT_JOB": "job"}
        assert ray.get(actor.import_value.remote("compat_job_module"), timeout=60) == "job"
        assert ray.get(actor.import_value.remote("compat_job_pkg"), timeout=60) == "job package"
        ray.kill(actor)

    def test_task_env_vars_merge_with_the_jobs(self):
        # env_vars merge (the task's win on a clash); other fields are replaced.
        ref = env.options(
            runtime_env={"env_vars": {"COMPAT_TASK": "task", "COMPAT_BOTH": "task"}}
        ).remote("COMPAT_JOB", "COMPAT_TASK", "COMPAT_BOTH")
        assert ray.get(ref, timeout=60) == {
            "COMPAT_JOB": "job",
            "COMPAT_TASK": "task",
            "COMPAT_BOTH": "task",
        }

    def test_task_runtime_env_keeps_the_jobs_other_fields(self):
        # A field the task does not set (working_dir, py_modules) is the job's.
        ref = import_value.options(runtime_env={"env_vars": {"COMPAT_TASK": "x"}}).remote(
            "compat_job_pkg"
        )
        assert ray.get(ref, timeout=60) == "job package"
