"""Reading the append-only audit log: who changed what, when, from what, to what, and why,
filtered by object type, actor and time. Values are redacted on the way out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import audit_log
from spendtrail.redact import redact


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    before: str | None  # JSON as recorded
    after: str | None
    reason: str

    def row(self) -> dict[str, object]:
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor,
                "action": self.action, "object_type": self.object_type,
                "object_id": self.object_id, "before": self.before, "after": self.after,
                "why": self.reason}


def audit_entries(
    conn: sa.Connection,
    *,
    object_types: tuple[str, ...] = (),
    object_id: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[AuditEntry]:
    """Entries oldest first; with `limit`, the newest `limit` of them."""
    a = audit_log.c
    query = sa.select(audit_log).order_by(a.id.desc())
    if object_types:
        query = query.where(a.object_type.in_(object_types))
    if object_id is not None:
        query = query.where(a.object_id == object_id)
    if actor is not None:
        query = query.where(a.actor == actor)
    if since is not None:
        query = query.where(a.at >= since)
    if limit is not None:
        query = query.limit(limit)
    entries = [
        AuditEntry(row["id"], as_utc(row["at"]), row["actor"], row["action"],
                   row["object_type"], row["object_id"], _redacted(row["before"]),
                   _redacted(row["after"]), redact(row["reason"]))
        for row in conn.execute(query).mappings()
    ]
    return entries[::-1]


def object_types(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.select(audit_log.c.object_type).distinct()
                             .order_by(audit_log.c.object_type)).scalars())


def _redacted(text: str | None) -> str | None:
    return None if text is None else redact(text)
