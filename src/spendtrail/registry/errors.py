"""The registry's error: every problem found, each naming its file and line."""

from __future__ import annotations

from spendtrail.errors import SpendtrailError


class RegistryError(SpendtrailError):
    """A registry file or stored document that cannot be used. ``problems`` holds every
    problem found, so one run of ``registry check`` shows all of them."""
