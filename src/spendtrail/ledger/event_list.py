"""Events of a period with their current cost, filtered by owner, model and day: the drill
from a total to the calls behind it. Filters name the daily rollups' columns and follow one
rule, ``filter_condition``, on the rollups (``reports.costs``) and on the events, so a row of
a cost report and the events under it are selected alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa

from spendtrail.access.scope import AccessScope
from spendtrail.errors import SpendtrailError
from spendtrail.events.model import OWNER_FIELDS
from spendtrail.ledger.costs import is_current
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.schema import cost_entries, events
from spendtrail.ledger.scoping import scope_condition
from spendtrail.periods import Period, parse_day

# What a quarantined event's context claims, which the registry did not confirm: reports
# show it as "quarantined", never under an owner it may have named falsely. Only what was
# measured (day, provider, model) is trusted; the exception queue shows the claims.
CLAIMED = OWNER_FIELDS
QUARANTINED = "quarantined"
EVENT_FILTERS = ("provider", "model", *OWNER_FIELDS, "allocation_status", "day")
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


def filter_condition(
    columns: Mapping[str, sa.ColumnElement], name: str, value: str
) -> sa.ColumnElement[bool]:
    """One filter on a figure: ``name`` (a rollup column) equals ``value``. An owner filter
    selects no quarantined usage (its owner columns are claims), except the value
    ``quarantined``, which selects just that usage, as reports label it."""
    if name == "day":
        return columns["day"] == parse_day(value)
    if name in CLAIMED:
        held = columns["allocation_status"] == "quarantined"
        return held if value == QUARANTINED else sa.and_(columns[name] == value, ~held)
    return columns[name] == value


def list_events(
    conn: sa.Connection,
    period: Period,
    scope: AccessScope,
    *,
    filters: Mapping[str, str] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[EventRow]:
    """One page of the period's events in ``scope`` that match ``filters``, newest first;
    the figure's own count is its rollups' (``reports.costs``)."""
    e = events.c
    # Rollups hold '' where events hold NULL: compare as the rollups do. A value other than
    # '' is compared with the column itself (the same rows), so the (owner, started_at)
    # indexes of migration 0018 serve.
    columns = {
        name: sa.func.coalesce(e[name], "")
        for name in EVENT_FILTERS
        if name not in ("model", "day", "allocation_status")
    }
    columns.update(
        model=sa.func.coalesce(e.model_served, e.model_requested, ""),
        day=e.day,
        allocation_status=e.allocation_status,
    )
    first, end = period.start, period.end
    if filters and "day" in filters:  # the drill to one day: its hours only
        first = max(first, parse_day(filters["day"]))
        end = min(end, first + timedelta(days=1))
    # ``day`` is the UTC day of ``started_at``: bounding both prunes partitions (day) and lets
    # an (owner, started_at) index give the newest events first, so a page reads its own rows.
    where = [
        e.day >= period.start,
        e.day < period.end,
        e.started_at >= datetime.combine(first, time(), UTC),
        e.started_at < datetime.combine(end, time(), UTC),
        scope_condition(scope, events),
    ]
    for name, value in (filters or {}).items():
        if name not in EVENT_FILTERS:
            raise SpendtrailError(
                f"cannot filter events by {name!r}; choose from {', '.join(EVENT_FILTERS)}"
            )
        plain = value and name in e and name not in ("day", "allocation_status")
        where.append(
            filter_condition({**columns, name: e[name]} if plain else columns, name, value)
        )
    if not 1 <= limit <= MAX_EVENTS:
        raise SpendtrailError(f"limit must be 1..{MAX_EVENTS}")
    # The page first, then the costs of its events only.
    page = (
        sa.select(*events.c)
        .where(*where)
        .order_by(e.started_at.desc(), e.event_id)
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )
    p = page.c
    current = cost_entries.alias("current")
    query = (
        sa.select(
            p.event_id,
            p.request_id,
            p.attempt,
            p.started_at,
            p.provider,
            sa.func.coalesce(p.model_served, p.model_requested, "").label("model"),
            p.outcome,
            p.http_status,
            p.business_unit,
            p.application,
            p.environment,
            p.workload_class,
            p.cost_center,
            p.budget_owner,
            p.allocation_status,
            current.c.status,
            current.c.currency,
            current.c.amount_pico,
        )
        .select_from(
            page.outerjoin(current, sa.and_(current.c.event_id == p.event_id, is_current(current)))
        )
        .order_by(p.started_at.desc(), p.event_id)
    )
    return [EventRow(*row[:3], as_utc(row[3]), *row[4:]) for row in conn.execute(query)]
