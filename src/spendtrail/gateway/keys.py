"""Gateway keys: issued per application, shown once, stored as a SHA-256 hash.

A key fixes the application (and so its owner and cost center) and optionally the
environment of every call made with it. Revocation and rotation are audited; rotation may
leave the old key valid for a grace period so callers can switch without an outage.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from spendtrail.errors import SpendtrailError
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.registry_versions import load_history
from spendtrail.ledger.schema import gateway_keys

KEY_PREFIX = "sk-st-"
_DISPLAY_CHARS = len(KEY_PREFIX) + 6


class GatewayKeyError(SpendtrailError):
    """A key operation that cannot be done: unknown key, unknown application, ..."""


@dataclass(frozen=True, slots=True)
class GatewayKey:
    id: str
    application: str
    environment: str | None
    key_hash: str
    key_prefix: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    rotated_from: str | None = None

    def active(self, at: datetime) -> bool:
        return self.revoked_at is None or at < self.revoked_at

    def record(self) -> dict[str, Any]:
        """What the audit log keeps of a key: everything but its hash."""
        values = asdict(self)
        del values["key_hash"]
        return values


def hash_key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def load_keys(conn: sa.Connection) -> list[GatewayKey]:
    rows = conn.execute(sa.select(gateway_keys).order_by(gateway_keys.c.created_at))
    return [_from_row(row) for row in rows.mappings()]


def get_key(conn: sa.Connection, key_id: str) -> GatewayKey:
    row = conn.execute(sa.select(gateway_keys).where(gateway_keys.c.id == key_id)).mappings()
    found = row.first()
    if found is None:
        raise GatewayKeyError(
            f"no gateway key with id '{key_id}'; `spendtrail keys list` shows them"
        )
    return _from_row(found)


def create_key(
    conn: sa.Connection,
    *,
    application: str,
    environment: str | None,
    actor: str,
    reason: str = "",
    rotated_from: str | None = None,
) -> tuple[GatewayKey, str]:
    """Issue a key for an application the registry knows; returns it with its only copy
    of the secret value. Runs in the caller's transaction with its audit row."""
    _check_owner(conn, application, environment)
    value = KEY_PREFIX + secrets.token_urlsafe(32)
    key = GatewayKey(
        id="gk_" + secrets.token_hex(8),
        application=application,
        environment=environment,
        key_hash=hash_key(value),
        key_prefix=value[:_DISPLAY_CHARS],
        created_at=datetime.now(UTC),
        created_by=actor,
        rotated_from=rotated_from,
    )
    conn.execute(gateway_keys.insert().values(**asdict(key)))
    record_change(conn, actor=actor, action="gateway_key.create", object_type="gateway_key",
                  object_id=key.id, after=key.record(), reason=reason)
    return key, value


def revoke_key(
    conn: sa.Connection, key_id: str, *, actor: str, reason: str = "", at: datetime | None = None
) -> GatewayKey:
    """Revoke a key from `at` (default now). A key revoked already keeps its earlier time."""
    before = get_key(conn, key_id)
    when = at or datetime.now(UTC)
    if before.revoked_at is not None and before.revoked_at <= when:
        return before
    conn.execute(
        gateway_keys.update().where(gateway_keys.c.id == key_id).values(revoked_at=when)
    )
    after = get_key(conn, key_id)
    record_change(conn, actor=actor, action="gateway_key.revoke", object_type="gateway_key",
                  object_id=key_id, before=before.record(), after=after.record(), reason=reason)
    return after


def rotate_key(
    conn: sa.Connection,
    key_id: str,
    *,
    actor: str,
    reason: str = "",
    grace: timedelta = timedelta(0),
) -> tuple[GatewayKey, str]:
    """A new key for the same application and environment; the old one stops working after
    `grace`. Both changes and their audit rows commit together."""
    old = get_key(conn, key_id)
    if not old.active(datetime.now(UTC)):
        raise GatewayKeyError(f"gateway key '{key_id}' is revoked; create a new key instead")
    new, value = create_key(conn, application=old.application, environment=old.environment,
                            actor=actor, reason=reason, rotated_from=old.id)
    revoke_key(conn, key_id, actor=actor, reason=reason or f"rotated to {new.id}",
               at=datetime.now(UTC) + grace)
    return new, value


def _check_owner(conn: sa.Connection, application: str, environment: str | None) -> None:
    latest = load_history(conn).latest()
    if latest is None:
        raise GatewayKeyError("no registry loaded; load one with `spendtrail registry load FILE` "
                        "before issuing gateway keys")
    _, registry = latest
    pool = registry.shared_pool
    owner = pool if application == pool.id else registry.applications.get(application)
    if owner is None:
        known = ", ".join(sorted(registry.applications)) + f" (shared pool: {pool.id})"
        raise GatewayKeyError(
            f"--application: '{application}' is not in the registry; known: {known}"
        )
    if environment is not None and environment not in owner.environments:
        raise GatewayKeyError(
            f"--environment: '{environment}' is not an environment of '{application}'; "
            f"allowed: {', '.join(owner.environments)}"
        )


def _from_row(row: sa.RowMapping) -> GatewayKey:
    return GatewayKey(
        id=row["id"],
        application=row["application"],
        environment=row["environment"],
        key_hash=row["key_hash"],
        key_prefix=row["key_prefix"],
        created_at=as_utc(row["created_at"]),
        created_by=row["created_by"],
        revoked_at=as_utc(row["revoked_at"]),
        rotated_from=row["rotated_from"],
    )


class KeyIndex:
    """Keys by hash, for the request path: one hash and one dict lookup per call."""

    def __init__(self, keys: list[GatewayKey]) -> None:
        self._by_hash = {key.key_hash: key for key in keys}

    def __len__(self) -> int:
        return len(self._by_hash)

    def find(self, presented: str) -> GatewayKey | None:
        return self._by_hash.get(hash_key(presented))
