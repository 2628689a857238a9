"""Spend so far, from the ledger: the daily rollups the ingester fills, O(days x groups)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import sqlalchemy as sa

from spendtrail.budgets.model import COUNTED_STATUSES, Budget, BudgetPeriod
from spendtrail.ledger.schema import events, rollups_daily

_CHUNK = 500  # event ids per IN list, well under every driver's parameter limit


def ledger_spend(conn: sa.Connection, budget: Budget, period: BudgetPeriod) -> int:
    """Spend recorded in the ledger for the budget's owner in the period: pico-units of the
    budget's currency (other currencies and unpriced usage add nothing), or input + output
    tokens whatever the currency."""
    measure, where = _counted(budget, period)
    query = sa.select(sa.func.coalesce(sa.func.sum(measure), 0)).where(*where)
    return int(conn.execute(query).scalar_one())


def daily_spend(conn: sa.Connection, budget: Budget, period: BudgetPeriod
                ) -> list[tuple[date, int]]:
    """The same spend per day of the period (days without spend left out), for a burn-down."""
    measure, where = _counted(budget, period)
    r = rollups_daily.c
    query = sa.select(r.day, sa.func.sum(measure)).where(*where).group_by(r.day).order_by(r.day)
    return [(day, int(units)) for day, units in conn.execute(query)]


def _counted(budget: Budget, period: BudgetPeriod) -> tuple[sa.ColumnElement, list]:
    r = rollups_daily.c
    measure = r.amount_pico if budget.currency else r.input_tokens + r.output_tokens
    where = [
        r.day >= period.start,
        r.day < period.end,
        getattr(r, budget.scope) == budget.scope_value,
        r.allocation_status.in_(COUNTED_STATUSES),
    ]
    if budget.currency:
        where.append(r.currency == budget.currency)
    if budget.environment is not None:
        where.append(r.environment == budget.environment)
    return measure, where


def ingested(conn: sa.Connection, event_ids: Iterable[str]) -> set[str]:
    """Which of these events the ledger already counts in a budget's rollups: held, and not
    quarantined (a key-proven call quarantined for another reason is settled against its
    application's budgets, and only its counter keeps counting it; docs/budgets.md)."""
    ids = list(event_ids)
    found: set[str] = set()
    e = events.c
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        found.update(
            conn.execute(sa.select(e.event_id).where(
                e.event_id.in_(chunk), e.allocation_status.in_(COUNTED_STATUSES)))
            .scalars()
        )
    return found
