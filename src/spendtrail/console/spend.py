"""The overview and the spend explorer: cost grouped and filtered within the user's scope,
and the events under any figure."""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import Permission
from spendtrail.allocation.coverage import coverage, percent
from spendtrail.allocation.exceptions import open_groups
from spendtrail.console import alerts
from spendtrail.console.budgets import budget_items
from spendtrail.console.types import (
    BudgetBrief,
    EventPage,
    Overview,
    ReconciliationBrief,
    SpendReport,
    SpendRow,
    amount,
    amounts,
    event_item,
    rounded,
)
from spendtrail.evidence.followups import list_follow_ups
from spendtrail.ledger.event_list import list_events
from spendtrail.periods import Period, month_of, parse_period
from spendtrail.reconcile import list_reconciliations
from spendtrail.reports.costs import CostRow, cost_report

LATEST_ALERTS = 5  # on the overview; GET /api/v1/alerts and `alerts list` have the rest


def spend(
    engine: sa.Engine,
    who: Principal,
    period: str,
    group_by: tuple[str, ...],
    filters: Mapping[str, str],
) -> SpendReport:
    who.require(Permission.read)
    chosen = parse_period(period)
    with engine.connect() as conn:
        report = cost_report(conn, chosen, group_by, scope=who.scope, filters=filters)
    return SpendReport(
        period=chosen.label,
        group_by=list(group_by),
        filters=dict(filters),
        rows=[_row(r) for r in report.rows],
        total=_row(report.totals),
        quarantined=_row(report.quarantined),
        shared=_row(report.shared),
    )


def events(
    engine: sa.Engine,
    who: Principal,
    period: str,
    filters: Mapping[str, str],
    limit: int = 100,
    offset: int = 0,
) -> EventPage:
    who.require(Permission.read)
    chosen = parse_period(period)
    with engine.connect() as conn:
        rows = list_events(conn, chosen, who.scope, filters=filters, limit=limit, offset=offset)
        total = cost_report(conn, chosen, (), scope=who.scope, filters=filters).totals.events
    items = [event_item(r) for r in rows]
    return EventPage(
        period=chosen.label, filters=dict(filters), total=total, offset=offset, events=items
    )


def overview(engine: sa.Engine, who: Principal, today: date | None = None) -> Overview:
    """This month so far against the same days of last month, a straight-line forecast, the
    budgets nearest their limit; the queue, follow-ups, coverage and the latest
    reconciliation only for users who see every owner (they hold every owner's figures)."""
    who.require(Permission.read)
    today = today or datetime.now(UTC).date()
    month = month_of(today)
    so_far = Period(month.start, today + timedelta(days=1), f"{month.start}..{today}")
    last_start = month_of(month.start - timedelta(days=1)).start
    last_days = min(today.day, calendar.monthrange(last_start.year, last_start.month)[1])
    last = Period(last_start, last_start + timedelta(days=last_days), "last month, same days")
    everyone = who.scope.everyone
    with engine.connect() as conn:
        now = cost_report(conn, so_far, (), scope=who.scope)
        before = cost_report(conn, last, (), scope=who.scope)
        whole = calendar.monthrange(today.year, today.month)[1]
        forecast = {cur: pico * whole // today.day for cur, pico in now.totals.cost_pico.items()}
        covered = coverage(conn, month) if everyone else None
        exceptions = len(open_groups(conn, month)) if everyone else None
        follow_ups = len(list_follow_ups(conn)) if everyone else None
        runs = list_reconciliations(conn)[:1] if everyone else []
    raised, latest_alerts = alerts.recent(
        engine, who, datetime.combine(month.start, time(), UTC), LATEST_ALERTS
    )
    nearest = sorted(
        (b for b in budget_items(engine, who) if b.percent is not None),
        key=lambda b: -(b.percent or 0),
    )[:5]
    share = None
    if covered is not None and covered.currencies:
        share = "; ".join(
            f"{percent(c.share('allocated'))} of {c.currency}" for c in covered.currencies
        )
    return Overview(
        as_of=today,
        month=month.label,
        month_to_date=amounts(now.totals.cost_pico),
        same_days_last_month=amounts(before.totals.cost_pico),
        forecast_month_end=rounded(forecast),
        unpriced_events=now.totals.unpriced_events,
        unallocated=amounts(now.quarantined.cost_pico),
        allocation_coverage=share,
        budgets_nearest_limit=[
            BudgetBrief(
                id=b.id,
                scope=f"{b.scope}:{b.scope_value}",
                period=b.period or "",
                spent=b.spent or "",
                limit=b.limit,
                percent=b.percent or 0,
                state=b.state,
            )
            for b in nearest
        ],
        open_exceptions=exceptions,
        open_follow_ups=follow_ups,
        latest_reconciliation=None
        if not runs
        else ReconciliationBrief(
            id=runs[0].id,
            period=runs[0].period.label,
            provider=runs[0].provider,
            result=runs[0].result,
            variance=amount(runs[0].variance_pico, runs[0].currency),
            created_at=runs[0].created_at,
        ),
        alerts_this_month=raised,
        latest_alerts=latest_alerts,
    )


def _row(row: CostRow) -> SpendRow:
    return SpendRow(
        key=row.key,
        events=row.events,
        successes=row.successes,
        unpriced_events=row.unpriced_events,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cost=amounts(dict(row.cost_pico)),
    )
