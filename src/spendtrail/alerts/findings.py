"""What `alerts check` looks for in the books: one function per kind, in ``CHECKS``, each
reading what its capability already records (never a second computation of it):

- ``budget_threshold``: the ``budget_alerts`` rows budgets write when spend first reaches a
  soft threshold (a reload of the guard here records crossings that arrived via the ledger).
- ``budget_hard_limit``: a hard budget whose spend is at its limit (``BudgetState``).
- ``budget_forecast``: a budget under its limit that the linear forecast of ``rules.py``
  takes past it before the period ends.
- ``spend_anomaly``: an application's day (yesterday, or today so far) far above its own
  baseline (``rules.py``), per currency, from the daily rollups.
- ``unallocated``: the month's coverage past its threshold (``allocation/coverage.py``).
- ``reconciliation_failed``: a reconciliation record whose result is ``fail``.
- ``prices_stale``: price entries in effect not checked within the cadence
  (``pricing/check.py``), one alert per distinct set of stale entries.

Events that are recorded with a time (a crossing, a reconciliation) count when they are at
most ``rules.lookback_days`` old, so a first check does not replay the ledger's history.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from spendtrail.alerts.model import COMPANY, KINDS, Alert, Owner
from spendtrail.alerts.rules import Rules, anomaly, forecast
from spendtrail.allocation.coverage import coverage
from spendtrail.budgets import (
    Budget,
    BudgetGuard,
    BudgetPeriod,
    BudgetState,
    SqlCounters,
    crossings_since,
    ledger_spend,
    list_budgets,
)
from spendtrail.budgets.model import COUNTED_STATUSES
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.prices import load_catalog
from spendtrail.ledger.registry_versions import load_history
from spendtrail.ledger.schema import reconciliations, rollups_daily
from spendtrail.money import format_amount, from_pico
from spendtrail.periods import parse_period
from spendtrail.pricing import stale_prices
from spendtrail.reconcile.record import variance_percent
from spendtrail.registry import Registry


@dataclass(frozen=True)
class Books:
    """What every check reads: the ledger, the time of the check, the rules, the latest
    registry (to name an alert's owners) and the budgets' states now."""

    conn: sa.Connection
    now: datetime
    rules: Rules
    registry: Registry | None
    states: Sequence[BudgetState]

    @property
    def today(self) -> date:
        return self.now.date()

    @property
    def since(self) -> datetime:
        return self.now - timedelta(days=self.rules.lookback_days)

    def owner(self, scope: str, value: str) -> Owner:
        """The owner an alert on (scope, value) is about, with what the registry adds: an
        application's cost center, business unit and budget owner; a cost center's unit."""
        registry = self.registry
        if registry is not None and scope == "application":
            pool = registry.shared_pool
            app = registry.applications.get(value) or (pool if pool.id == value else None)
            if app is not None:
                return Owner(app.id, app.cost_center, app.business_unit, app.budget_owner)
        if registry is not None and scope == "cost_center" and value in registry.cost_centers:
            return Owner(
                cost_center=value, business_unit=registry.cost_centers[value].business_unit
            )
        return Owner(**{scope: value})


def find(
    engine: sa.Engine, rules: Rules, now: datetime, kinds: Sequence[str] = KINDS
) -> list[Alert]:
    """Every alert condition of ``kinds`` holding at ``now`` (recorded or not)."""
    states: list[BudgetState] = []
    if any(kind.startswith("budget_") for kind in kinds):
        # A writing reload, as a gateway's: records the crossings the ledger's spend reached.
        guard = BudgetGuard(engine, SqlCounters(engine))
        guard.reload(now)
        states = guard.states(now)
    with engine.connect() as conn:
        latest = load_history(conn).latest()
        books = Books(conn, now, rules, None if latest is None else latest[1], states)
        return [alert for kind, check in CHECKS if kind in kinds for alert in check(books)]


def _units(units: int, unit: str) -> str:
    return (
        f"{units:,} tokens" if unit == "tokens" else (f"{format_amount(from_pico(units))} {unit}")
    )


def _budget_details(budget: Budget, label: str, spent: str) -> dict[str, str]:
    return {
        "budget": budget.id,
        "scope": budget.describe_scope(),
        "period": label,
        "spent": spent,
        "limit": budget.format_units(budget.limit_units),
    }


def budget_thresholds(books: Books) -> Iterator[Alert]:
    """A deleted budget's crossings are not alerted: its scope is gone with it."""
    budgets = {budget.id: budget for budget in list_budgets(books.conn)}
    for crossing in crossings_since(books.conn, books.since):
        budget = budgets.get(crossing.budget_id)
        if budget is None:
            continue
        spent = _units(crossing.spent, crossing.unit)
        limit = _units(crossing.limit_units, crossing.unit)
        yield Alert(
            "budget_threshold",
            f"budget_threshold:{budget.id}:{crossing.period_start}:{crossing.threshold}",
            f"budget {budget.id} reached {crossing.threshold}% of its limit "
            f"({crossing.period_label})",
            f"budget '{budget.id}' ({budget.describe_scope()}, {budget.period} "
            f"{crossing.period_label}) reached its {crossing.threshold}% threshold: spent "
            f"{spent} of {limit}",
            crossing.period_label,
            books.owner(budget.scope, budget.scope_value),
            {
                **_budget_details(budget, crossing.period_label, spent),
                "limit": limit,
                "threshold": f"{crossing.threshold}%",
            },
        )


def budget_hard_limits(books: Books) -> Iterator[Alert]:
    for state in books.states:
        budget, period = state.budget, state.period
        if budget.hard_limit and state.spent >= budget.limit_units:
            yield Alert(
                "budget_hard_limit",
                f"budget_hard_limit:{budget.id}:{period.start}",
                f"budget {budget.id} is at its hard limit ({period.label})",
                f"{state.describe()}; the hard limit is reached, so the gateway refuses its "
                f"calls until the period ends at {period.ends_at.isoformat()}",
                period.label,
                books.owner(budget.scope, budget.scope_value),
                _budget_details(budget, period.label, budget.format_units(state.spent)),
            )


def budget_forecasts(books: Books) -> Iterator[Alert]:
    """The ledger's spend on the period's completed days (today left out), extrapolated."""
    for state in books.states:
        budget, period = state.budget, state.period
        days_done = (books.today - period.start).days
        if state.spent >= budget.limit_units or days_done < books.rules.forecast_min_days:
            continue
        so_far = ledger_spend(
            books.conn, budget, BudgetPeriod(period.start, books.today, period.label)
        )
        days_total = (period.end - period.start).days
        found = forecast(so_far, period.start, days_done, days_total, budget.limit_units)
        if found is None:
            continue
        at_end = budget.format_units(found.at_end)
        spent = budget.format_units(so_far)
        yield Alert(
            "budget_forecast",
            f"budget_forecast:{budget.id}:{period.start}",
            f"budget {budget.id} is forecast to pass its limit on {found.crossing} "
            f"({period.label})",
            f"budget '{budget.id}' ({budget.describe_scope()}, {budget.period} {period.label})"
            f": {spent} in the {days_done} completed days; at that rate the period ends at "
            f"{at_end}, over the limit of {budget.format_units(budget.limit_units)}, which it "
            f"passes on {found.crossing}",
            period.label,
            books.owner(budget.scope, budget.scope_value),
            {
                **_budget_details(budget, period.label, spent),
                "days_done": str(days_done),
                "days_in_period": str(days_total),
                "forecast": at_end,
                "crossing_day": found.crossing.isoformat(),
            },
        )


def spend_anomalies(books: Books) -> Iterator[Alert]:
    rules, today = books.rules, books.today
    first = today - timedelta(days=rules.baseline_days + 1)
    r = rollups_daily.c
    rows = books.conn.execute(
        sa.select(r.application, r.currency, r.day, sa.func.sum(r.amount_pico))
        .where(
            r.day >= first,
            r.day <= today,
            r.allocation_status.in_(COUNTED_STATUSES),
            r.currency != "",
            r.application != "",
        )
        .group_by(r.application, r.currency, r.day)
    )
    daily: dict[tuple[str, str], dict[date, int]] = defaultdict(dict)
    for application, currency, day, amount in rows:
        daily[(application, currency)][day] = int(amount)
    for (application, currency), amounts in sorted(daily.items()):
        for day in (today - timedelta(days=1), today):
            spent = amounts.get(day, 0)
            history = [
                amounts.get(day - timedelta(days=n), 0) for n in range(1, rules.baseline_days + 1)
            ]
            usual = anomaly(spent, history, rules)
            if usual is None:
                continue
            so_far = " so far" if day == today else ""
            shown = f"{format_amount(from_pico(spent))} {currency}"
            base = f"{format_amount(from_pico(round(usual)))} {currency}"
            times = f"{Decimal(spent) / Decimal(round(usual)):.1f}"
            yield Alert(
                "spend_anomaly",
                f"spend_anomaly:{application}:{currency}:{day}",
                f"{application} spent {times}x its usual day on {day}{so_far}",
                f"{application} spent {shown} on {day}{so_far}, {times} times its baseline of "
                f"{base} (the median of its {rules.baseline_days} days before)",
                day.isoformat(),
                books.owner("application", application),
                {
                    "day": day.isoformat(),
                    "spent": shown,
                    "baseline": base,
                    "times": times,
                    "baseline_rule": f"median of the {rules.baseline_days} days before",
                },
            )


def unallocated(books: Books) -> Iterator[Alert]:
    month = parse_period(f"{books.today:%Y-%m}")
    found = coverage(books.conn, month, books.rules.unallocated_threshold)
    for (currency, share), message in zip(found.over_threshold(), found.alerts(), strict=True):
        shown = f"{float(share * 100):.2f}%"
        yield Alert(
            "unallocated",
            f"unallocated:{month.label}:{currency or 'unpriced'}",
            f"unallocated {currency or 'usage'} is {shown} of {month.label}",
            message,
            month.label,
            COMPANY,
            {
                "currency": currency,
                "share": shown,
                "threshold": f"{float(books.rules.unallocated_threshold * 100):g}%",
            },
        )


def failed_reconciliations(books: Books) -> Iterator[Alert]:
    r = reconciliations.c
    rows = books.conn.execute(
        sa.select(
            r.id,
            r.provider,
            r.period_label,
            r.currency,
            r.variance_pico,
            r.billed_pico,
            r.tolerance,
            r.reviewer,
            r.reasons,
            r.created_at,
        )
        .where(r.result == "fail", r.created_at >= books.since)
        .order_by(r.id)
    )
    for row in rows:
        variance = f"{format_amount(from_pico(row.variance_pico))} {row.currency}"
        percent = variance_percent(row.variance_pico, row.billed_pico)
        tolerance = f"{Decimal(row.tolerance) * 100:f}".rstrip("0").rstrip(".") + "%"
        yield Alert(
            "reconciliation_failed",
            f"reconciliation_failed:{row.id}",
            f"reconciliation {row.id} failed: {row.provider} {row.period_label}",
            f"reconciliation {row.id} of the {row.provider} bill for {row.period_label} "
            f"failed: variance {variance}"
            + ("" if percent is None else f" ({percent}%)")
            + f", over the tolerance of {tolerance} (reviewer {row.reviewer})",
            row.period_label,
            COMPANY,
            {
                "reconciliation": str(row.id),
                "provider": row.provider,
                "variance": variance,
                "variance_percent": "" if percent is None else f"{percent}%",
                "tolerance": tolerance,
                "recorded_at": as_utc(row.created_at).isoformat(),
            },
        )


def stale_price_entries(books: Books) -> Iterator[Alert]:
    cadence = books.rules.price_cadence_days
    stale = stale_prices(load_catalog(books.conn), books.today, cadence)
    if not stale:
        return
    which = "\n".join(sorted(f"{s.entry.id}@{s.entry.checked_at}" for s in stale))
    digest = hashlib.sha256(which.encode()).hexdigest()[:16]
    oldest = "; ".join(
        f"{s.entry.provider} {s.entry.model_match} (checked {s.entry.checked_at} by "
        f"{s.entry.checked_by}, {s.age_days} days ago)"
        for s in stale[:5]
    )
    more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
    yield Alert(
        "prices_stale",
        f"prices_stale:{digest}",
        f"{len(stale)} prices not checked in {cadence} days",
        f"{len(stale)} prices in effect on {books.today} were not checked at their source in "
        f"the {cadence} days before: {oldest}{more}",
        books.today.isoformat(),
        COMPANY,
        {
            "stale": str(len(stale)),
            "cadence_days": str(cadence),
            "oldest_checked_at": min(s.entry.checked_at for s in stale).isoformat(),
        },
    )


CHECKS: tuple[tuple[str, Callable[[Books], Iterator[Alert]]], ...] = (
    ("budget_threshold", budget_thresholds),
    ("budget_hard_limit", budget_hard_limits),
    ("budget_forecast", budget_forecasts),
    ("spend_anomaly", spend_anomalies),
    ("unallocated", unallocated),
    ("reconciliation_failed", failed_reconciliations),
    ("prices_stale", stale_price_entries),
)
