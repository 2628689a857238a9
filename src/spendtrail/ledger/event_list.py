"""Events of a period with their current cost, filtered by owner, model and day: the drill
from a total to the calls behind it. Filters name the daily rollups' columns, so a row of a
cost report and the events under it are selected by the same values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from spendtrail.access.scope import AccessScope
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.costs import is_current
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import cost_entries, events
from spendtrail.ledger.scoping import scope_condition
from spendtrail.periods import Period, parse_day

EVENT_FILTERS = (
    "provider",
    "model",
    "business_unit",
    "application",
    "environment",
    "workload_class",
    "cost_center",
    "budget_owner",
    "allocation_status",
    "day",
)
MAX_EVENTS = 1000


@dataclass(frozen=True, slots=True)
class EventRow:
    event_id: str
    request_id: str
    attempt: int
    started_at: datetime
    provider: str
    model: str
    outcome: str
    http_status: int | None
    business_unit: str | None
    application: str | None
    environment: str | None
    workload_class: str | None
    cost_center: str | None
    budget_owner: str | None
    allocation_status: str
    cost_status: str | None
    currency: str | None
    amount_pico: int | None


def list_events(
    conn: sa.Connection,
    period: Period,
    scope: AccessScope,
    *,
    filters: Mapping[str, str] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[EventRow]]:
    """(how many events match, one page of them newest first)."""
    e = events.c
    model = sa.func.coalesce(e.model_served, e.model_requested, "")
    where = [e.day >= period.start, e.day < period.end, scope_condition(scope, events)]
    for name, value in (filters or {}).items():
        if name not in EVENT_FILTERS:
            raise SpendtrailError(
                f"cannot filter events by {name!r}; choose from {', '.join(EVENT_FILTERS)}"
            )
        if name == "day":
            where.append(e.day == parse_day(value))
        elif name == "model":
            where.append(model == value)
        else:
            column = e[name]
            where.append(sa.or_(column.is_(None), column == "") if value == "" else column == value)
    if not 1 <= limit <= MAX_EVENTS:
        raise SpendtrailError(f"limit must be 1..{MAX_EVENTS}")
    total = conn.execute(sa.select(sa.func.count()).select_from(events).where(*where)).scalar_one()
    current = cost_entries.alias("current")
    query = (
        sa.select(
            e.event_id,
            e.request_id,
            e.attempt,
            e.started_at,
            e.provider,
            model.label("model"),
            e.outcome,
            e.http_status,
            e.business_unit,
            e.application,
            e.environment,
            e.workload_class,
            e.cost_center,
            e.budget_owner,
            e.allocation_status,
            current.c.status,
            current.c.currency,
            current.c.amount_pico,
        )
        .select_from(
            events.outerjoin(
                current, sa.and_(current.c.event_id == e.event_id, is_current(current))
            )
        )
        .where(*where)
        .order_by(e.started_at.desc(), e.event_id)
        .limit(limit)
        .offset(offset)
    )
    rows = [EventRow(*row[:3], as_utc(row[3]), *row[4:]) for row in conn.execute(query)]
    return int(total), rows
