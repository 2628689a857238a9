"""The ledger's URL, safe to print."""

from __future__ import annotations


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" not in url:  # no user part, so no password (e.g. sqlite:///path): skip SQLAlchemy
        return url
    import sqlalchemy as sa

    return sa.engine.make_url(url).render_as_string(hide_password=True)
