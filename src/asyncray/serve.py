"""Ray's ``ray.serve``: outside Ray Core, so importing it raises ``UnsupportedLibraryError``."""

from .exceptions import UnsupportedLibraryError

raise UnsupportedLibraryError("serve")
