"""`spendtrail report chargeback|unit-cost|retries`. Faces only: parse, call
spendtrail.reports, write."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from spendtrail.cli.common import PeriodOption, console, fail, ledger
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError
from spendtrail.periods import parse_period
from spendtrail.reports.rounding import MAX_DECIMALS  # named in --decimals' help

app = typer.Typer(no_args_is_help=True)


@app.callback()
def report() -> None:
    """Statements and reports from the ledger."""


class StatementFormat(StrEnum):
    md = "md"
    html = "html"
    csv = "csv"
    json = "json"
    pdf = "pdf"


@app.command("chargeback")
def chargeback(
    period: PeriodOption,
    owner: Annotated[str | None, typer.Option(
        help="Whose statement: company (the default), application:ID, budget-owner:ID, "
             "cost-center:ID or business-unit:ID (registry ids; a bare ID is an "
             "application).")] = None,
    rules: Annotated[Path | None, typer.Option(
        help="Shared-cost rules YAML; default: the rules stored with `allocation rules-load`"
             ", else shared-pool cost stays unallocated.")] = None,
    decimals: Annotated[int | None, typer.Option(
        min=0, max=MAX_DECIMALS,
        help="Decimals shown in md, html and pdf (default: the currency's minor unit, 2 for "
             "USD); csv and json are always exact.")] = None,
    fmt: Annotated[StatementFormat, typer.Option("--format")] = StatementFormat.md,
    output: Annotated[Path | None, typer.Option(
        help="Write here instead of stdout (required for pdf).")] = None,
) -> None:
    """Showback/chargeback statement for a period, for the company or one owner: charges by
    application with their shared allocations, breakdowns by model, environment and
    workload, quarantined and unpriced usage, budgets, reconciliation and price sources,
    tying out exactly. PRELIMINARY until the period is closed."""
    # The rules are loaded and checked against the registry as `allocation shared` does.
    from spendtrail.cli.allocation_cmd import _rules
    from spendtrail.reports.chargeback import build_statement, parse_scope
    from spendtrail.reports.statement_formats import render_statement

    if fmt is StatementFormat.pdf and output is None:
        fail("--format pdf writes a file: give --output FILE.pdf")
    try:
        chosen = parse_period(period)
        scope = parse_scope(owner)
    except SpendtrailError as exc:
        fail(str(exc))
    loaded = _rules(rules) if rules is not None else None
    with ledger().connect() as conn:
        statement = build_statement(conn, chosen, rules=loaded,
                                    rules_file=f"{rules.name} (given with --rules)"
                                    if rules else None, owner=scope)
    if not scope.is_company and not statement.owners:
        fail(f"no spend or allocation for {scope} in {chosen.label}")
    try:
        rendered = render_statement(statement, fmt, decimals)
    except SpendtrailError as exc:
        fail(str(exc))
    if output is None:
        console.out(rendered, end="", highlight=False)
    elif isinstance(rendered, bytes):
        output.write_bytes(rendered)
        console.print(f"wrote {output}", highlight=False)
    else:
        output.write_text(rendered, encoding="utf-8")
        console.print(f"wrote {output}", highlight=False)


@app.command("unit-cost")
def unit_cost(
    period: PeriodOption,
    metrics: Annotated[Path | None, typer.Option(
        help="Unit-metric definitions YAML, added to the built-in cost_per_1m_tokens and "
             "cost_per_request.")] = None,
    denominators: Annotated[Path | None, typer.Option(
        help="CSV owner,denominator,value for the metrics' own denominators.")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Cost per unit per owner for a period: direct cost over each metric's denominator."""
    from spendtrail.reports.unit_cost import BUILT_IN, load_denominators, load_metrics, unit_costs

    try:
        chosen = parse_period(period)
        defined = [*BUILT_IN, *(load_metrics(metrics) if metrics else ())]
        values = load_denominators(denominators) if denominators else {}
    except SpendtrailError as exc:
        fail(str(exc))
    with ledger().connect() as conn:
        rows = [item.row() for item in unit_costs(conn, chosen, defined, values)]
    render(rows, fmt, title=f"unit cost {chosen.label}")


@app.command("retries")
def retries(period: PeriodOption, fmt: Annotated[Format, typer.Option("--format")] = Format.table,
            ) -> None:
    """Retry inflation per owner: attempts vs logical requests vs billable calls, and the
    cost of failed and retried attempts."""
    from spendtrail.reports.retries import retry_inflation

    try:
        chosen = parse_period(period)
    except SpendtrailError as exc:
        fail(str(exc))
    with ledger().connect() as conn:
        rows = [item.row() for item in retry_inflation(conn, chosen)]
    render(rows, fmt, title=f"retry inflation {chosen.label}")
