"""The exception queue: quarantined usage nobody owns yet, grouped so people can act on it.

A group is every open quarantined event with the same reasons and the same captured
application (none: untagged). Assigning an owner never edits an event: it writes one
reallocation row per event, moving the event's current cost to a registry application, and
an audit record, in one transaction. Resolving closes a group with a note for the events
ingested before it; later events with the same reasons open it again.
"""

from __future__ import annotations

import difflib
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import sqlalchemy as sa

from spendtrail.errors import SpendtrailError
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.costs import is_current
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.registry_versions import load_history
from spendtrail.ledger.schema import cost_entries, events, exception_resolutions, reallocations
from spendtrail.periods import Period

UNTAGGED = "(untagged)"


class ExceptionQueueError(SpendtrailError):
    """An unknown group or event, an owner not in the registry, or an event already assigned."""


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    event_id: str
    day: date
    started_at: datetime
    ingested_at: datetime
    application: str | None
    reasons: str
    model: str | None
    cost_status: str | None
    currency: str | None
    amount_pico: int | None
    cost_revision: int | None


@dataclass
class ExceptionGroup:
    id: str
    reasons: str
    application: str | None  # as captured
    events: list[QueuedEvent] = field(default_factory=list)

    @property
    def owner_label(self) -> str:
        return self.application or UNTAGGED

    @property
    def oldest(self) -> datetime:
        return min(e.started_at for e in self.events)

    def age_days(self, now: datetime) -> int:
        return (now - self.oldest).days

    @property
    def amounts(self) -> dict[str, int]:
        """Current cost per currency (unpriced events have none)."""
        totals: dict[str, int] = defaultdict(int)
        for e in self.events:
            if e.currency is not None and e.amount_pico is not None:
                totals[e.currency] += e.amount_pico
        return dict(sorted(totals.items()))

    @property
    def unpriced(self) -> int:
        return sum(e.currency is None for e in self.events)


@dataclass(frozen=True, slots=True)
class Assignment:
    application: str
    events: int
    amounts: dict[str, int]
    unpriced: int
    groups: tuple[str, ...]


def group_id(reasons: str, application: str | None) -> str:
    """Stable across runs and backends: the same reasons and capture, the same id."""
    digest = hashlib.sha256(f"{reasons}\0{application or ''}".encode()).hexdigest()
    return f"EX-{digest[:10]}"


def open_groups(conn: sa.Connection, period: Period | None = None) -> list[ExceptionGroup]:
    """Open groups, largest first by event count, then oldest."""
    groups: dict[str, ExceptionGroup] = {}
    for item in _open_events(conn, period):
        key = group_id(item.reasons, item.application)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ExceptionGroup(key, item.reasons, item.application)
        group.events.append(item)
    return sorted(groups.values(), key=lambda g: (-len(g.events), g.oldest, g.id))


def find_group(conn: sa.Connection, gid: str) -> ExceptionGroup:
    for group in open_groups(conn):
        if group.id == gid:
            return group
    raise ExceptionQueueError(f"no open exception group '{gid}' (see spendtrail exceptions list)")


def assign(
    conn: sa.Connection,
    *,
    application: str,
    actor: str,
    reason: str,
    group: str | None = None,
    event_ids: Sequence[str] = (),
) -> Assignment:
    """Reallocate a group's (or the given events') cost to ``application``, in the caller's
    transaction; the events themselves are never changed."""
    if (group is None) == (not event_ids):
        raise ExceptionQueueError("name either an exception group or event ids, not both")
    if not reason.strip():
        raise ExceptionQueueError("an assignment needs a reason, for the audit trail")
    latest = load_history(conn).latest()
    if latest is None:
        raise ExceptionQueueError("no registry loaded; load one with spendtrail registry load")
    version, registry = latest
    owner = registry.applications.get(application)
    if owner is None:
        close = difflib.get_close_matches(application, list(registry.applications), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ExceptionQueueError(
            f"'{application}' is not an application in registry version {version}{hint}")
    if group is not None:
        chosen = find_group(conn, group).events
    else:
        chosen = _pick_events(conn, event_ids)

    now = datetime.now(UTC)
    rows = [
        {
            "event_id": e.event_id, "day": e.day, "group_id": group_id(e.reasons, e.application),
            "from_status": "quarantined", "from_application": e.application,
            "from_reasons": e.reasons, "to_application": owner.id,
            "to_business_unit": owner.business_unit, "to_cost_center": owner.cost_center,
            "to_budget_owner": owner.budget_owner, "registry_version": version,
            "currency": e.currency, "amount_pico": e.amount_pico,
            "cost_revision": e.cost_revision, "assigned_by": actor, "assigned_at": now,
            "reason": reason,
        }
        for e in chosen
    ]
    try:
        with conn.begin_nested():
            conn.execute(reallocations.insert(), rows)
    except sa.exc.IntegrityError:
        raise ExceptionQueueError(
            "another assignment took some of these events first; list the queue again") from None

    by_group: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_group[row["group_id"]].append(row)
    for gid, moved in sorted(by_group.items()):
        amounts = _sum_amounts(moved)
        record_change(
            conn, actor=actor, action="exceptions.assign", object_type="exception_group",
            object_id=gid,
            before={"status": "quarantined", "application": moved[0]["from_application"],
                    "reasons": moved[0]["from_reasons"]},
            after={"application": owner.id, "business_unit": owner.business_unit,
                   "cost_center": owner.cost_center, "budget_owner": owner.budget_owner,
                   "registry_version": version, "events": [r["event_id"] for r in moved],
                   "amount_pico": amounts},
            reason=reason,
        )
    return Assignment(owner.id, len(rows), _sum_amounts(rows),
                      sum(r["currency"] is None for r in rows), tuple(sorted(by_group)))


def resolve(conn: sa.Connection, gid: str, *, note: str, actor: str) -> ExceptionGroup:
    """Close an open group with a note (e.g. 'test traffic, written off by finance')."""
    if not note.strip():
        raise ExceptionQueueError("resolving a group needs a note saying why")
    group = find_group(conn, gid)
    now = datetime.now(UTC)
    conn.execute(exception_resolutions.insert().values(
        group_id=gid, reasons=group.reasons, application=group.application, resolved_at=now,
        resolved_by=actor, note=note))
    record_change(
        conn, actor=actor, action="exceptions.resolve", object_type="exception_group",
        object_id=gid,
        before={"status": "open", "events": len(group.events), "amount_pico": group.amounts},
        after={"status": "resolved"}, reason=note,
    )
    return group


def resolutions(conn: sa.Connection, gid: str) -> list[dict]:
    r = exception_resolutions.c
    return [dict(row) for row in conn.execute(
        sa.select(r.resolved_at, r.resolved_by, r.note).where(r.group_id == gid).order_by(r.id)
    ).mappings()]


def _sum_amounts(rows: list[dict]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        if row["currency"] is not None:
            totals[row["currency"]] += row["amount_pico"]
    return dict(sorted(totals.items()))


def _pick_events(conn: sa.Connection, event_ids: Sequence[str]) -> list[QueuedEvent]:
    wanted = list(dict.fromkeys(event_ids))
    found = {e.event_id: e for e in _queued(conn, sa.true(), include_resolved=True,
                                           only=wanted)}
    for event_id in wanted:
        if event_id not in found:
            raise ExceptionQueueError(
                f"event {event_id} is not in the exception queue (unknown, not quarantined, "
                "or already assigned)")
    return [found[event_id] for event_id in wanted]


def _open_events(conn: sa.Connection, period: Period | None) -> list[QueuedEvent]:
    e = events.c
    where = sa.true() if period is None else sa.and_(e.day >= period.start, e.day < period.end)
    return _queued(conn, where, include_resolved=False)


def _queued(
    conn: sa.Connection,
    where: sa.ColumnElement[bool],
    *,
    include_resolved: bool,
    only: list[str] | None = None,
) -> list[QueuedEvent]:
    """Quarantined events with no reallocation, each with its current (latest) cost entry."""
    e, m = events.c, reallocations.c
    current = cost_entries.alias("current")
    query = (
        sa.select(
            e.event_id, e.day, e.started_at, e.ingested_at, e.application,
            e.allocation_reasons, sa.func.coalesce(e.model_served, e.model_requested),
            current.c.status, current.c.currency, current.c.amount_pico, current.c.revision,
        )
        .select_from(
            events.outerjoin(current, sa.and_(current.c.event_id == e.event_id,
                                              is_current(current))))
        .where(e.allocation_status == "quarantined", where,
               ~sa.exists().where(m.event_id == e.event_id))
        .order_by(e.started_at, e.event_id)
    )
    if only is not None:
        query = query.where(e.event_id.in_(only))
    closed: dict[str, datetime] = {}
    if not include_resolved:
        r = exception_resolutions.c
        for gid, at in conn.execute(
            sa.select(r.group_id, sa.func.max(r.resolved_at)).group_by(r.group_id)
        ):
            closed[gid] = as_utc(at)
    found = []
    for row in conn.execute(query):
        item = QueuedEvent(
            row[0], row[1], as_utc(row[2]), as_utc(row[3]), row[4], row[5], row[6], row[7],
            row[8] if row[9] is not None else None, row[9], row[10])
        resolved_at = closed.get(group_id(item.reasons, item.application))
        if resolved_at is None or item.ingested_at > resolved_at:
            found.append(item)
    return found
