"""A month's allocation entries, its allocation record (stored, closed) and its statement
snapshots (docs/allocation.md, docs/reports.md "Closing a month").

The entries of a closed month are never rewritten: ``save_entries`` refuses them, and what
changes in a closed month later lands as adjustment entries of an open one. How entries are
computed is ``spendtrail.allocation.entries``; this module only stores and reads them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime

import sqlalchemy as sa

from spendtrail.errors import SpendtrailError
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import (
    allocation_entries,
    allocation_periods,
    cost_entries,
    events,
    statement_snapshots,
)

# What an owner is charged; the other kinds are amounts of the month charged to no owner.
OWNER_KINDS = ("direct", "reassigned", "shared", "true_up")
UNCHARGED_KINDS = ("quarantined", "unallocated_pool")
ADJUSTMENT = "adjustment"


class PeriodClosedError(SpendtrailError):
    """A closed month's entries or snapshots cannot change; reopen it first."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored allocation entry: an amount (pico-units of ``currency``; '' and 0 for
    unpriced usage, counted in ``unpriced_events``) and where it comes from."""

    kind: str
    application: str
    currency: str
    amount_pico: int
    business_unit: str = ""
    cost_center: str = ""
    budget_owner: str = ""
    events: int = 0
    unpriced_events: int = 0
    pool: str = ""
    rule_id: str = ""
    rules_version: int | None = None
    method: str = ""
    origin: str = ""
    ratio: str = ""  # the exact fraction, e.g. "3/7"
    day_from: date | None = None
    day_to: date | None = None  # exclusive
    reconciliation_id: int | None = None
    adjusts_period: str = ""
    adjusts_kind: str = ""
    adjusts_entry_id: int | None = None
    detail: str = ""
    id: int | None = None

    @property
    def charged(self) -> bool:
        """Whether this entry is part of its application's charges."""
        kind = self.adjusts_kind if self.kind == ADJUSTMENT else self.kind
        return kind in OWNER_KINDS


_COLUMNS = tuple(f.name for f in fields(Entry) if f.name != "id")


@dataclass(frozen=True, slots=True)
class PeriodRecord:
    period: str
    computed_at: datetime
    computed_by: str
    true_up_rule: str
    rules_version: int | None
    basis: str
    closed_at: datetime | None
    closed_by: str | None
    accepted: dict[str, str]

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


def period_record(conn: sa.Connection, period: str) -> PeriodRecord | None:
    p = allocation_periods.c
    row = conn.execute(sa.select(allocation_periods).where(p.period == period)).first()
    if row is None:
        return None
    return PeriodRecord(
        row.period,
        as_utc(row.computed_at),
        row.computed_by,
        row.true_up_rule,
        row.rules_version,
        row.basis,
        as_utc(row.closed_at),
        row.closed_by,
        json.loads(row.accepted) if row.accepted else {},
    )


def closed_periods(conn: sa.Connection) -> list[str]:
    p = allocation_periods.c
    return list(
        conn.execute(
            sa.select(p.period).where(p.closed_at.is_not(None)).order_by(p.period)
        ).scalars()
    )


def load_entries(conn: sa.Connection, period: str) -> list[Entry]:
    """The stored entries of ``period`` (its own and the adjustments it carries), in order."""
    a = allocation_entries.c
    return _entries(conn, sa.select(allocation_entries).where(a.period == period))


def adjustments_of(conn: sa.Connection, period: str, *, besides: str) -> list[Entry]:
    """Adjustment entries other months (not ``besides``) carry for ``period``."""
    a = allocation_entries.c
    return _entries(
        conn, sa.select(allocation_entries).where(a.adjusts_period == period, a.period != besides)
    )


def _entries(conn: sa.Connection, query: sa.Select) -> list[Entry]:
    rows = conn.execute(query.order_by(allocation_entries.c.id)).mappings()
    return [Entry(**{name: row[name] for name in (*_COLUMNS, "id")}) for row in rows]


def save_entries(
    conn: sa.Connection,
    period: str,
    entries: list[Entry],
    *,
    basis: str,
    true_up_rule: str,
    rules_version: int | None,
    actor: str,
) -> None:
    """Replace an open month's entries, in the caller's transaction."""
    record = period_record(conn, period)
    if record is not None and record.closed:
        raise PeriodClosedError(
            f"{period} is closed ({_closed_text(record)}); its entries "
            "are final (spendtrail reopen to change them)"
        )
    conn.execute(allocation_entries.delete().where(allocation_entries.c.period == period))
    if entries:
        rows = [
            {"period": period, **{name: getattr(e, name) for name in _COLUMNS}} for e in entries
        ]
        for start in range(0, len(rows), 5000):
            conn.execute(allocation_entries.insert(), rows[start : start + 5000])
    values = {
        "computed_at": datetime.now(UTC),
        "computed_by": actor,
        "true_up_rule": true_up_rule,
        "rules_version": rules_version,
        "basis": basis,
    }
    if record is None:
        conn.execute(allocation_periods.insert().values(period=period, **values))
    else:
        conn.execute(
            allocation_periods.update()
            .where(allocation_periods.c.period == period)
            .values(**values)
        )


def mark_closed(
    conn: sa.Connection, period: str, *, actor: str, accepted: dict[str, str]
) -> datetime:
    now = datetime.now(UTC)
    conn.execute(
        allocation_periods.update()
        .where(allocation_periods.c.period == period)
        .values(closed_at=now, closed_by=actor, accepted=json.dumps(accepted, sort_keys=True))
    )
    return now


def mark_reopened(conn: sa.Connection, period: str) -> list[dict[str, str]]:
    """Clear the close and drop the month's snapshots; returns what was dropped (scope,
    format, sha256) for the audit record."""
    s = statement_snapshots.c
    dropped = [
        dict(row)
        for row in conn.execute(
            sa.select(s.scope, s.format, s.sha256)
            .where(s.period == period)
            .order_by(s.scope, s.format)
        ).mappings()
    ]
    conn.execute(statement_snapshots.delete().where(s.period == period))
    conn.execute(
        allocation_periods.update()
        .where(allocation_periods.c.period == period)
        .values(closed_at=None, closed_by=None, accepted=None)
    )
    return dropped


def save_snapshot(conn: sa.Connection, period: str, scope: str, fmt: str, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()
    conn.execute(
        statement_snapshots.insert().values(
            period=period,
            scope=scope,
            format=fmt,
            content=content,
            sha256=digest,
            created_at=datetime.now(UTC),
        )
    )
    return digest


def load_snapshot(
    conn: sa.Connection, period: str, scope: str, fmt: str
) -> tuple[bytes, str] | None:
    """(content, sha256) of a closed month's statement, if one was taken."""
    s = statement_snapshots.c
    row = conn.execute(
        sa.select(s.content, s.sha256).where(s.period == period, s.scope == scope, s.format == fmt)
    ).first()
    return None if row is None else (bytes(row.content), row.sha256)


def late_changes(conn: sa.Connection, start: date, end: date, since: datetime) -> tuple[int, int]:
    """Events of [start, end) ingested after ``since``, and cost entries of its events
    written after ``since`` by a repricing (revision > 1): what moved a closed month."""
    e, c = events.c, cost_entries.c
    late = conn.execute(
        sa.select(sa.func.count()).where(e.day >= start, e.day < end, e.ingested_at > since)
    ).scalar_one()
    repriced = conn.execute(
        sa.select(sa.func.count())
        .select_from(events.join(cost_entries, c.event_id == e.event_id))
        .where(e.day >= start, e.day < end, c.revision > 1, c.priced_at > since)
    ).scalar_one()
    return int(late), int(repriced)


def _closed_text(record: PeriodRecord) -> str:
    return f"closed {record.closed_at:%Y-%m-%d %H:%M} UTC by {record.closed_by}"
