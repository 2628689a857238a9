"""Budgets as the console shows them: state in the current period, burn-down by day, the
thresholds crossed and the alerts raised; and setting one, within the user's scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import AccessDenied, Permission
from spendtrail.budgets import (
    Budget,
    BudgetGuard,
    BudgetState,
    SqlCounters,
    daily_spend,
    get_budget,
    list_alerts,
    list_budgets,
    put_budget,
)
from spendtrail.budgets.model import parse_limit
from spendtrail.console.alerts import budget_alerts
from spendtrail.console.errors import NotFound
from spendtrail.console.types import (
    BudgetDetail,
    BudgetItem,
    BudgetRequest,
    BurnPoint,
    SavedBudget,
)
from spendtrail.money import from_pico, plain_decimal


def budget_items(engine: sa.Engine, who: Principal, at: datetime | None = None) -> list[BudgetItem]:
    who.require(Permission.read)
    states = _states(engine, at or datetime.now(UTC))
    with engine.connect() as conn:
        found = list_budgets(conn)
    return [
        _item(b, states.get(b.id)) for b in found if who.scope.admits_owner(b.scope, b.scope_value)
    ]


def budget_detail(
    engine: sa.Engine, who: Principal, budget_id: str, at: datetime | None = None
) -> BudgetDetail:
    who.require(Permission.read)
    when = at or datetime.now(UTC)
    with engine.connect() as conn:
        budget = get_budget(conn, budget_id)
    if budget is None or not who.scope.admits_owner(budget.scope, budget.scope_value):
        raise NotFound(f"no budget {budget_id!r}")
    state = _states(engine, when).get(budget.id)
    burn: list[BurnPoint] = []
    crossings: list[dict[str, str]] = []
    with engine.connect() as conn:
        raised = budget_alerts(conn, who, budget.id, (budget.scope, budget.scope_value))
    if state is not None:
        with engine.connect() as conn:
            daily = dict(daily_spend(conn, budget, state.period))
            crossings = [
                {"threshold": f"{t}%", "at": moment.isoformat()}
                for t, moment in list_alerts(conn, budget.id, state.period.start)
            ]
        total, day = 0, state.period.start
        while day < min(state.period.end, when.date() + timedelta(days=1)):
            total += daily.get(day, 0)
            burn.append(BurnPoint(day=day, spent=_units(budget, total)))
            day += timedelta(days=1)
    return BudgetDetail(
        budget=_item(budget, state), burn_down=burn, crossings=crossings, alerts=raised
    )


def set_budget(
    engine: sa.Engine, who: Principal, budget_id: str, request: BudgetRequest
) -> SavedBudget:
    """Create or replace a budget; an owner may set only budgets on its own owners."""
    who.require(Permission.set_budgets)
    who.require_owner(request.scope, request.scope_value)
    limit_units, currency = parse_limit(request.limit)
    custom_end = (
        None if request.custom_last_day is None else request.custom_last_day + timedelta(days=1)
    )
    budget = Budget(
        id=budget_id,
        scope=request.scope,
        scope_value=request.scope_value,  # type: ignore[arg-type]
        period=request.period,
        limit_units=limit_units,
        currency=currency,  # type: ignore[arg-type]
        thresholds=tuple(request.thresholds),
        hard_limit=request.hard_limit,
        environment=request.environment,
        custom_start=request.custom_start,
        custom_end=custom_end,
        owner=request.owner,
        notes=request.notes,
    )
    with engine.begin() as conn:
        before = get_budget(conn, budget_id)
        if before is not None and not who.scope.admits_owner(before.scope, before.scope_value):
            raise AccessDenied(f"budget {budget_id!r} limits an owner outside your scope")
        outcome = put_budget(conn, budget, actor=who.actor, reason=request.reason)
    state = _states(engine, datetime.now(UTC)).get(budget.id)
    return SavedBudget(outcome=outcome, budget=_item(budget, state))


def _states(engine: sa.Engine, when: datetime) -> dict[str, BudgetState]:
    guard = BudgetGuard(engine, SqlCounters(engine), read_only=True)
    guard.reload(when)
    return {s.budget.id: s for s in guard.states(when)}


def _units(budget: Budget, units: int) -> str:
    """Exact: every pico-unit of money, or whole tokens."""
    if budget.currency:
        return f"{plain_decimal(from_pico(units))} {budget.currency}"
    return f"{units} tokens"


def _item(budget: Budget, state: BudgetState | None) -> BudgetItem:
    return BudgetItem(
        id=budget.id,
        scope=budget.scope,
        scope_value=budget.scope_value,
        environment=budget.environment,
        period_kind=budget.period,
        unit=budget.unit,
        limit=_units(budget, budget.limit_units),
        thresholds=list(budget.thresholds),
        hard_limit=budget.hard_limit,
        owner=budget.owner,
        notes=budget.notes,
        period=None if state is None else state.period.label,
        spent=None if state is None else _units(budget, state.spent),
        percent=None if state is None else state.percent,
        state="inactive" if state is None else state.level,
    )
