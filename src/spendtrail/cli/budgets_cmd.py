"""`spendtrail budgets`: define, list, inspect and delete budgets."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from spendtrail.cli.budget_review_cmd import review
from spendtrail.cli.common import actor, console, fail, ledger
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from spendtrail.budgets import Budget, BudgetState

app = typer.Typer(
    help="Budgets: limits on an owner's spend per month, week, day or custom period.",
    no_args_is_help=True,
)

Reason = Annotated[str, typer.Option(help="Why it changes; kept in the audit log.")]


@app.command("set")
def set_budget(
    budget_id: Annotated[str, typer.Argument(metavar="ID", help="Budget id, e.g. search-monthly.")],
    application: Annotated[
        str | None, typer.Option(help="Scope: this application's spend.", show_default=False)
    ] = None,
    cost_center: Annotated[
        str | None, typer.Option(help="Scope: this cost center's spend.", show_default=False)
    ] = None,
    business_unit: Annotated[
        str | None, typer.Option(help="Scope: this business unit's spend.", show_default=False)
    ] = None,
    budget_owner: Annotated[
        str | None, typer.Option(help="Scope: this budget owner's spend.", show_default=False)
    ] = None,
    period: Annotated[
        str | None, typer.Option(help="month, week (ISO, Monday), day or custom (UTC).")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="Custom period: first day, YYYY-MM-DD.")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Custom period: last day (inclusive), YYYY-MM-DD.")
    ] = None,
    limit: Annotated[
        str | None, typer.Option(help="'500 USD' (exact decimal) or '2000000 tokens'.")
    ] = None,
    soft: Annotated[
        str | None, typer.Option(help="Soft thresholds in percent, e.g. 50,80; 'none' clears.")
    ] = None,
    hard: Annotated[
        bool | None,
        typer.Option("--hard/--no-hard", help="Refuse calls (HTTP 429) once the limit is reached."),
    ] = None,
    environment: Annotated[
        str | None, typer.Option(help="Count only this environment; 'any' clears.")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Who answers for the budget.")] = None,
    notes: Annotated[str | None, typer.Option(help="Free text.")] = None,
    reason: Reason = "",
) -> None:
    """Create a budget, or change the given fields of an existing one."""
    from spendtrail.budgets import Budget, get_budget, put_budget
    from spendtrail.budgets.model import parse_limit, parse_thresholds

    scopes = {
        "application": application, "cost_center": cost_center,
        "business_unit": business_unit, "budget_owner": budget_owner,
    }
    given = {scope: value for scope, value in scopes.items() if value is not None}
    if len(given) > 1:
        fail("give one scope: --application, --cost-center, --business-unit or --budget-owner")
    try:
        with ledger().begin() as conn:
            before = get_budget(conn, budget_id)
            if before is None and not given:
                fail(f"new budget {budget_id!r}: give a scope, e.g. --application ID")
            if before is None and (period is None or limit is None):
                fail(f"new budget {budget_id!r}: give --period and --limit")
            changes: dict[str, object] = {}
            for scope, value in given.items():
                changes["scope"], changes["scope_value"] = scope, value
            if period is not None:
                changes["period"] = period
                if period != "custom":
                    changes["custom_start"] = changes["custom_end"] = None
            if start is not None:
                changes["custom_start"] = _day(start, "--start")
            if end is not None:
                changes["custom_end"] = _day(end, "--end") + timedelta(days=1)
            if limit is not None:
                changes["limit_units"], changes["currency"] = parse_limit(limit)
            if soft is not None:
                changes["thresholds"] = parse_thresholds(soft)
            if hard is not None:
                changes["hard_limit"] = hard
            if environment is not None:
                changes["environment"] = None if environment == "any" else environment
            if owner is not None:
                changes["owner"] = owner or None
            if notes is not None:
                changes["notes"] = notes or None
            if before is None:
                budget = Budget(id=budget_id, **changes)  # type: ignore[arg-type]
            else:
                budget = dataclasses.replace(before, **changes)  # type: ignore[arg-type]
            outcome = put_budget(conn, budget, actor=actor(), reason=reason)
    except SpendtrailError as exc:
        fail(str(exc))
    console.print(f"{outcome}: budget {escape(budget_id)}: {escape(_summary(budget))}",
                  highlight=False)


@app.command("list")
def list_command(
    output_format: Annotated[Format, typer.Option("--format", help="Output format.")] = (
        Format.table
    ),
) -> None:
    """Every budget and what it limits."""
    from spendtrail.budgets import list_budgets

    with ledger().connect() as conn:
        budgets = list_budgets(conn)
    if not budgets and output_format is Format.table:
        console.print("no budgets; create one with `spendtrail budgets set`")
        return
    machine = output_format is not Format.table
    render([_row(b, machine) for b in budgets], output_format, title="Budgets")


@app.command()
def show(
    budget_id: Annotated[str, typer.Argument(metavar="ID")],
    at: Annotated[
        str | None, typer.Option(help="Show the period containing this UTC day or time.")
    ] = None,
    output_format: Annotated[Format, typer.Option("--format", help="Output format.")] = (
        Format.table
    ),
) -> None:
    """A budget with its spend so far in the current period, % used and state.

    Spend is the ledger's, plus what gateways sharing this database have settled and the
    ledger does not hold yet. Gateways counting in memory or Redis are not seen here."""
    from spendtrail.budgets import BudgetGuard, SqlCounters, get_budget

    when = datetime.now(UTC) if at is None else _when(at)
    engine = ledger()
    with engine.connect() as conn:
        budget = get_budget(conn, budget_id)
    if budget is None:
        fail(f"no budget {budget_id!r}")
    guard = BudgetGuard(engine, SqlCounters(engine), read_only=True)
    guard.reload(when)
    state = next((s for s in guard.states(when) if s.budget.id == budget_id), None)
    machine = output_format is not Format.table
    row = _row(budget, machine)
    if state is None:
        row.update(spent=None, used=None, state="inactive")  # outside its custom period
    else:
        row.update(_state_row(state, machine))
        row["alerts"] = _alerts(engine, state)
    if output_format is not Format.table:
        render([row], output_format)
        return
    for name, value in row.items():
        console.print(f"{name.replace('_', ' '):>12}: {escape(str(value or '-'))}",
                      highlight=False)


@app.command()
def delete(
    budget_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why it goes; kept in the audit log.")],
) -> None:
    """Delete a budget (its past alerts stay)."""
    from spendtrail.budgets import delete_budget

    if not reason.strip():
        fail("--reason: say why the budget goes; it is kept in the audit log")
    try:
        with ledger().begin() as conn:
            budget = delete_budget(conn, budget_id, actor=actor(), reason=reason)
    except SpendtrailError as exc:
        fail(str(exc))
    console.print(f"deleted: budget {escape(budget_id)} ({escape(_summary(budget))})",
                  highlight=False)


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r}: expected a day, YYYY-MM-DD")


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--at {text!r}: expected YYYY-MM-DD or an ISO 8601 time")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _summary(budget: Budget) -> str:
    period = budget.period
    if budget.period == "custom":
        assert budget.custom_start is not None and budget.custom_end is not None
        period = f"{budget.custom_start}..{budget.custom_end - timedelta(days=1)}"
    soft = ",".join(f"{t}%" for t in budget.thresholds) or "no soft thresholds"
    hard = "hard limit" if budget.hard_limit else "no hard limit"
    return (f"{budget.describe_scope()}, {period}, {budget.format_units(budget.limit_units)}, "
            f"{soft}, {hard}")


def _units(budget: Budget, units: int, machine: bool) -> str:
    """Readable with its unit in a table; a plain number (the unit in its own column) in
    JSON and CSV."""
    from spendtrail.money import from_pico, plain_decimal

    if not machine:
        return budget.format_units(units)
    return plain_decimal(from_pico(units)) if budget.currency else str(units)


def _row(budget: Budget, machine: bool = False) -> dict[str, object]:
    period = budget.period
    if budget.period == "custom":
        assert budget.custom_start is not None and budget.custom_end is not None
        period = f"custom {budget.custom_start}..{budget.custom_end - timedelta(days=1)}"
    return {
        "id": budget.id,
        "scope": f"{budget.scope}={budget.scope_value}",
        "environment": budget.environment or "any",
        "period": period,
        "limit": _units(budget, budget.limit_units, machine),
        **({"unit": budget.currency or "tokens"} if machine else {}),
        "soft": ",".join(f"{t}%" for t in budget.thresholds),
        "hard": "yes" if budget.hard_limit else "no",
        "owner": budget.owner,
        "notes": budget.notes,
    }


def _state_row(state: BudgetState, machine: bool) -> dict[str, object]:
    return {
        "period": f"{state.budget.period} {state.period.label} "
        f"({state.period.start}..{state.period.end - timedelta(days=1)})",
        "spent": _units(state.budget, state.spent, machine),
        "used": f"{state.percent}%",
        "state": state.level,
    }


def _alerts(engine: sa.Engine, state: BudgetState) -> str:
    from spendtrail.budgets import list_alerts

    with engine.connect() as conn:
        found = list_alerts(conn, state.budget.id, state.period.start)
    return ", ".join(f"{t}% at {at:%Y-%m-%d %H:%M}" for t, at in found)


app.command("review")(review)
