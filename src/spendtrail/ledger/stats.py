"""What the ledger holds, counted."""

from __future__ import annotations

import sqlalchemy as sa

from spendtrail.ledger.costs import UNPRICED_STATUSES, is_current
from spendtrail.ledger.schema import (
    audit_log,
    cost_entries,
    events,
    ingest_rejects,
    price_entries,
    registry_versions,
)


def ledger_stats(conn: sa.Connection) -> dict[str, object]:
    def count(table, *where) -> int:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar()

    e = events.c
    first, last = conn.execute(sa.select(sa.func.min(e.day), sa.func.max(e.day))).one()
    current = cost_entries.c
    return {
        "events": count(events),
        "first_day": first,
        "last_day": last,
        "allocated": count(events, e.allocation_status == "allocated"),
        "shared": count(events, e.allocation_status == "shared"),
        "quarantined": count(events, e.allocation_status == "quarantined"),
        "cost_entries": count(cost_entries),
        "unpriced_events": count(
            cost_entries, current.status.in_(UNPRICED_STATUSES), is_current()
        ),
        "rejected_lines": count(ingest_rejects),
        "price_entries": count(price_entries),
        "registry_versions": count(registry_versions),
        "audit_records": count(audit_log),
    }


def rejected_lines(conn: sa.Connection, limit: int) -> list[dict[str, object]]:
    """The first `limit` lines that could not be ingested: source file, line, reason, when."""
    t = ingest_rejects.c
    rows = conn.execute(sa.select(t.source, t.line, t.error, t.at).order_by(t.id).limit(limit))
    return [dict(row) for row in rows.mappings()]
