"""The state API's error (``ray.util.state.exception``)."""

from __future__ import annotations


class RayStateApiException(Exception):
    """A state API call cannot be answered: a bad filter, no session, ..."""
