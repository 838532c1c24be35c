"""Ray's ``ray.tune``: outside Ray Core, so importing it raises ``UnsupportedLibraryError``."""

from .exceptions import UnsupportedLibraryError

raise UnsupportedLibraryError("tune")
