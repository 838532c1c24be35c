"""Ray's private module path for a few classes programs import from it."""

from .object_ref import ObjectRef
from .object_ref_generator import ObjectRefGenerator

__all__ = ["ObjectRef", "ObjectRefGenerator"]
