"""Ray's ``ray.workflow``: outside Ray Core, so importing it raises ``UnsupportedLibraryError``."""

from .exceptions import UnsupportedLibraryError

raise UnsupportedLibraryError("workflow")
