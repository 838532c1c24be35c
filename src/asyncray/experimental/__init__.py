"""Ray's ``ray.experimental`` paths asyncray provides: ``tqdm_ray``."""
