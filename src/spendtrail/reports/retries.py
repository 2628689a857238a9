"""Retry inflation per owner and currency for a period (attempts with no cost under ''):
attempts (events) vs logical requests (distinct request ids) vs billable calls (successful
attempts), and what failed and retried attempts cost. An attempt is "retried" when a later
attempt of the same request exists: its cost bought nothing the caller kept. Reads the
period's events and their current cost entries, since the daily rollups keep no request ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from spendtrail.allocation.exceptions import UNTAGGED
from spendtrail.ledger.costs import in_days, is_current
from spendtrail.ledger.retention import require_raw_rows
from spendtrail.ledger.schema import cost_entries, events
from spendtrail.money import from_pico, plain_decimal
from spendtrail.periods import Period


@dataclass(frozen=True, slots=True)
class RetryInflation:
    owner: str
    currency: str  # '' for attempts with no cost
    attempts: int
    requests: int
    billable: int
    cost_pico: int
    failed_cost_pico: int
    retried_cost_pico: int

    def row(self) -> dict[str, str | int]:
        return {"owner": self.owner, "currency": self.currency, "attempts": self.attempts,
                "logical_requests": self.requests, "billable_calls": self.billable,
                "attempts_per_request": f"{self.attempts / self.requests:.2f}"
                if self.requests else "n/a",
                "cost": plain_decimal(from_pico(self.cost_pico)),
                "failed_cost": plain_decimal(from_pico(self.failed_cost_pico)),
                "retried_cost": plain_decimal(from_pico(self.retried_cost_pico))}


def retry_inflation(conn: sa.Connection, period: Period) -> list[RetryInflation]:
    require_raw_rows(conn, period, "retry inflation")
    e, c = events.c, cost_entries.c
    # Each attempt beside its request's last attempt number: a window, not a self-join on
    # request_id, so the events table keeps no index on it (one less to maintain at ingest).
    attempts = (
        sa.select(e.event_id, e.request_id, e.application, e.outcome, e.attempt,
                  sa.func.max(e.attempt).over(partition_by=e.request_id).label("last"))
        .where(in_days(events, period))
        .subquery()
    )
    a = attempts.c
    current = (sa.select(c.event_id, c.currency, c.amount_pico)
               .where(in_days(cost_entries, period), is_current(period=period))
               .subquery())
    amount = sa.func.coalesce(current.c.amount_pico, 0)
    failed = a.outcome != "success"
    query = (
        sa.select(
            a.application, sa.func.coalesce(current.c.currency, ""), sa.func.count(),
            sa.func.count(sa.distinct(a.request_id)),
            sa.func.sum(sa.case((failed, 0), else_=1)),
            sa.func.sum(amount),
            sa.func.sum(sa.case((failed, amount), else_=0)),
            sa.func.sum(sa.case((a.attempt < a.last, amount), else_=0)),
        )
        .select_from(attempts)
        .outerjoin(current, current.c.event_id == a.event_id)
        .group_by(a.application, current.c.currency)
    )
    rows = [RetryInflation(app or UNTAGGED, currency, *(int(v or 0) for v in values))
            for app, currency, *values in conn.execute(query)]
    return sorted(rows, key=lambda r: (r.owner, r.currency))
