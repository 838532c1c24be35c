"""Ray's ``ray.dag``: outside Ray Core, so importing it raises ``UnsupportedLibraryError``."""

from .exceptions import UnsupportedLibraryError

raise UnsupportedLibraryError("dag")
