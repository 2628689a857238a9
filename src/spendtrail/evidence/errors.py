"""The evidence layer's error."""

from __future__ import annotations

from spendtrail.errors import SpendtrailError


class EvidenceError(SpendtrailError):
    """A review note, source or export that cannot be used; the message names the field."""
