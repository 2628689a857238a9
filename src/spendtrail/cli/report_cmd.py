"""`spendtrail report chargeback|unit-cost|retries`. Faces only: parse, call
spendtrail.reports, write."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from spendtrail.cli.common import PeriodOption, console, fail, ledger, settings
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError
from spendtrail.periods import parse_period

app = typer.Typer(no_args_is_help=True)


@app.callback()
def report() -> None:
    """Statements and reports from the ledger."""


class StatementFormat(StrEnum):
    md = "md"
    html = "html"
    csv = "csv"
    json = "json"


def _renderer(fmt: StatementFormat):
    from spendtrail.reports import chargeback
    from spendtrail.reports.render_html import to_html

    return {StatementFormat.md: chargeback.to_markdown, StatementFormat.html: to_html,
            StatementFormat.csv: chargeback.to_csv, StatementFormat.json: chargeback.to_json}[fmt]


@app.command("chargeback")
def chargeback(
    period: PeriodOption,
    owner: Annotated[str | None, typer.Option(help="One application's statement only.")] = None,
    rules: Annotated[Path | None, typer.Option(
        help="Shared-cost rules YAML; without it shared-pool cost stays unallocated.")] = None,
    fmt: Annotated[StatementFormat, typer.Option("--format")] = StatementFormat.md,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Showback/chargeback statement per owner for a period: direct cost, shared allocations
    with their rule, quarantined and unpriced usage, budgets, coverage, reconciliation and
    price sources, tying out exactly to the ledger total."""
    # The rules are loaded and checked against the registry as `allocation shared` does.
    from spendtrail.cli.allocation_cmd import _rules
    from spendtrail.ledger.url import redact_url
    from spendtrail.reports.chargeback import build_statement

    try:
        chosen = parse_period(period)
    except SpendtrailError as exc:
        fail(str(exc))
    loaded = _rules(rules) if rules is not None else None
    with ledger().connect() as conn:
        statement = build_statement(conn, chosen, ledger=redact_url(settings().ledger_url),
                                    rules=loaded, rules_file=str(rules) if rules else None,
                                    owner=owner)
    if owner is not None and not statement.owners:
        fail(f"no spend or allocation for owner {owner!r} in {chosen.label}")
    text = _renderer(fmt)(statement)
    if output is None:
        console.out(text, end="", highlight=False)
    else:
        output.write_text(text, encoding="utf-8")
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
