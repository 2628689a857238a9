"""What a console operation raises besides ``AccessDenied`` (403) and the domain's own
``SpendtrailError`` (400): a record that does not exist, or that the user may not know of."""

from __future__ import annotations

from spendtrail.errors import SpendtrailError


class NotFound(SpendtrailError):
    """No such record in the user's view; faces answer 404 (the same for a record outside
    the user's scope, so ids of other owners' records are not confirmed)."""
