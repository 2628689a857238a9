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
from spendtrail.ledger.costs import is_current
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
    in_period = sa.and_(e.day >= period.start, e.day < period.end)
    last = (sa.select(e.request_id, sa.func.max(e.attempt).label("last"))
            .where(in_period).group_by(e.request_id).subquery())
    current = (sa.select(c.event_id, c.currency, c.amount_pico).where(is_current())
               .subquery())
    amount = sa.func.coalesce(current.c.amount_pico, 0)
    failed = e.outcome != "success"
    query = (
        sa.select(
            e.application, sa.func.coalesce(current.c.currency, ""), sa.func.count(),
            sa.func.count(sa.distinct(e.request_id)),
            sa.func.sum(sa.case((failed, 0), else_=1)),
            sa.func.sum(amount),
            sa.func.sum(sa.case((failed, amount), else_=0)),
            sa.func.sum(sa.case((e.attempt < last.c.last, amount), else_=0)),
        )
        .select_from(events)
        .join(last, last.c.request_id == e.request_id)
        .outerjoin(current, current.c.event_id == e.event_id)
        .where(in_period)
        .group_by(e.application, current.c.currency)
    )
    rows = [RetryInflation(app or UNTAGGED, currency, *(int(v or 0) for v in values))
            for app, currency, *values in conn.execute(query)]
    return sorted(rows, key=lambda r: (r.owner, r.currency))
