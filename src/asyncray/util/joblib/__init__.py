"""Ray's ``ray.util.joblib``: ``register_ray()`` makes ``parallel_backend("ray")``
run joblib's work on asyncray (needs joblib installed)."""

from __future__ import annotations

try:
    from joblib.parallel import register_parallel_backend
except ImportError as e:
    raise ImportError(
        "asyncray.util.joblib needs joblib, which is not installed: pip install 'joblib>=1.3'",
        name="joblib",
    ) from e


def register_ray() -> None:
    """Register the backend ``"ray"`` with joblib (``joblib.parallel_backend("ray")``)."""
    from .ray_backend import RayBackend

    register_parallel_backend("ray", RayBackend)


__all__ = ["register_ray"]
