"""Ray's ``ray.train``: outside Ray Core, so importing it raises ``UnsupportedLibraryError``."""

from .exceptions import UnsupportedLibraryError

raise UnsupportedLibraryError("train")
