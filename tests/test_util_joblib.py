"""``ray.util.joblib.register_ray()``: joblib's ``"ray"`` backend on asyncray."""

from __future__ import annotations

import os

import pytest

joblib = pytest.importorskip("joblib")

from asyncray.util.joblib import register_ray  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def square_and_pid(i):
    return i * i, os.getpid()


def fail_on_five(i):
    if i == 5:
        raise KeyError("five")
    return i


def test_parallel_runs_on_asyncray_workers(ray_start):
    register_ray()
    with joblib.parallel_backend("ray"):
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(square_and_pid)(i) for i in range(10))
    assert [value for value, _ in out] == [i * i for i in range(10)]
    pids = {pid for _, pid in out}
    assert os.getpid() not in pids
    assert len(pids) <= 2


def test_a_failing_call_raises_its_exception(ray_start):
    register_ray()
    with joblib.parallel_backend("ray"), pytest.raises(KeyError, match="five"):
        joblib.Parallel(n_jobs=2)(joblib.delayed(fail_on_five)(i) for i in range(10))


def test_n_jobs_minus_one_uses_the_sessions_cpus(ray_start):
    register_ray()
    with joblib.parallel_backend("ray", n_jobs=-1) as (backend, _):
        assert backend.effective_n_jobs(-1) == 2
        assert backend.effective_n_jobs(-2) == 1
        assert joblib.Parallel()(joblib.delayed(fail_on_five)(i) for i in range(4)) == [0, 1, 2, 3]


def test_memmapping_options_other_than_the_defaults_are_refused(ray_start):
    register_ray()
    with joblib.parallel_backend("ray"), pytest.raises(ValueError, match="mmap_mode='w\\+'"):
        joblib.Parallel(n_jobs=2, mmap_mode="w+")(joblib.delayed(abs)(i) for i in range(2))
    with joblib.parallel_backend("ray"):  # max_nbytes=None (no memmapping) is what happens
        assert joblib.Parallel(n_jobs=2, max_nbytes=None)(
            joblib.delayed(abs)(-i) for i in range(3)
        ) == [0, 1, 2]


def test_ray_remote_args_configure_the_actors(ray_start):
    register_ray()
    with joblib.parallel_backend("ray", ray_remote_args={"num_cpus": 0.5}):
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(4)) == [
            0,
            1,
            2,
            3,
        ]
    with (
        joblib.parallel_backend("ray", ray_remote_args={"bogus": 1}),
        pytest.raises(ValueError, match="Invalid option keyword bogus"),
    ):
        joblib.Parallel(n_jobs=1)(joblib.delayed(abs)(i) for i in range(2))


def test_scikit_learn_cross_validation_on_the_ray_backend(ray_start):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    register_ray()
    x, y = load_iris(return_X_y=True)
    with joblib.parallel_backend("ray"):
        scores = cross_val_score(LogisticRegression(max_iter=500), x, y, cv=3, n_jobs=2)
    assert len(scores) == 3 and all(0.8 < s <= 1.0 for s in scores)


def test_without_joblib_the_import_error_says_to_install_it(tmp_path):
    import subprocess
    import sys

    blocker = tmp_path / "joblib.py"
    blocker.write_text("raise ImportError('No module named joblib (hidden by the test)')\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import asyncray as ray\n"
        "try:\n    ray.util.joblib\n"
        "except ImportError as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=50
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "ImportError asyncray.util.joblib needs joblib, which is not installed: "
        "pip install 'joblib>=1.3'"
    )
