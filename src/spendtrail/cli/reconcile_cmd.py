"""`spendtrail reconcile`: a bill against the ledger for a period, recorded with its reviewer."""

from __future__ import annotations

import csv
import json
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape

from spendtrail.cli.common import actor, console, err_console, fail, ledger
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError
from spendtrail.periods import parse_period

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}


class RecordFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    md = "md"


def reconcile(
    reviewer: Annotated[str, typer.Option(help="Who reviews this reconciliation.")],
    period: Annotated[
        str | None, typer.Option(help="YYYY-MM, YYYY-MM-DD or FIRST..LAST (UTC days).")
    ] = None,
    bill: Annotated[int | None, typer.Option(help="The bill id (spendtrail bills list).")] = None,
    daily: Annotated[
        bool, typer.Option("--daily", help="Reconcile each closed day's fetched bill of "
                           "--bill-source not reconciled yet, instead of --period/--bill.")
    ] = False,
    bill_source: Annotated[
        str | None, typer.Option(help="With --daily: cometapi, openai or anthropic.")
    ] = None,
    tolerance: Annotated[str, typer.Option(help="Accepted |variance| as % of billed.")] = "1%",
    provider: Annotated[
        str | None, typer.Option(help="The ledger provider to compare with (default: the bill's).")
    ] = None,
    output_format: Annotated[
        RecordFormat,
        typer.Option("--format", help="table; csv (the differences); json; md (the summary)."),
    ] = RecordFormat.table,
) -> None:
    """Match a bill line by line (request ids) or by (day, model) against the ledger, and
    write an immutable, dated reconciliation record. Exit 0 pass, 1 fail, 3 inconclusive.

    With --daily: one record per closed day; a day over the tolerance is logged on stderr
    with its variance, and the exit is 1 if any day failed, else 3 if any was inconclusive."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from spendtrail.allocation.entries import period_entries
    from spendtrail.reconcile import parse_tolerance
    from spendtrail.reconcile import reconcile as run_reconciliation
    from spendtrail.reconcile.render import (
        DIFFERENCE_FIELDS,
        SHOWN_DIFFERENCES,
        charge_rows,
        difference_rows,
        owner_rows,
        summary_rows,
        to_json,
        to_markdown,
    )

    if daily:
        if bill_source is None or period or bill is not None or provider:
            fail("--daily takes --bill-source (the provider) and no --period, --bill or "
                 "--provider")
        _daily(bill_source, reviewer, tolerance)
    if period is None or bill is None:
        fail("name the --period and the --bill to reconcile (or use --daily --bill-source S)")
    try:
        with Progress(SpinnerColumn(), TextColumn("matching {task.completed:,.0f} requests"),
                      TimeElapsedColumn(), console=err_console, transient=True,
                      disable=not err_console.is_terminal) as progress:
            task = progress.add_task("match")
            record = run_reconciliation(
                ledger(), period=parse_period(period), bill_id=bill, reviewer=reviewer,
                actor=actor(), tolerance=parse_tolerance(tolerance), provider=provider,
                on_progress=lambda n: progress.advance(task, n))
        with ledger().connect() as conn:
            charges = period_entries(conn, record.period).charges()
    except SpendtrailError as exc:
        fail(str(exc))
    if output_format is RecordFormat.md:
        sys.stdout.write(to_markdown(record, charges))
    elif output_format is RecordFormat.json:
        sys.stdout.write(json.dumps(to_json(record, charges), indent=2) + "\n")
    elif output_format is RecordFormat.csv:
        rows = difference_rows(record, plain=True)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["reconciliation", "currency", *DIFFERENCE_FIELDS])
        writer.writerows([record.id, record.currency, *("" if v is None else v
                                                        for v in row.values())]
                         for row in rows)
    else:
        render(summary_rows(record), Format.table, title=f"Reconciliation {record.id}")
        render(owner_rows(record), Format.table, title="By owner")
        render(charge_rows(record, charges), Format.table,
               title="Charged per owner (allocation entries)")
        shown = difference_rows(record)[:SHOWN_DIFFERENCES]
        if shown:
            render(shown, Format.table, title="Differences")
        if len(record.differences) > len(shown):
            console.print(f"... and {len(record.differences) - len(shown)} more (--format csv)")
        elif not shown:
            console.print("no differences")
        console.print(f"result: {escape(record.result)}", highlight=False)
    raise typer.Exit(EXIT_CODES[record.result])


def _daily(source: str, reviewer: str, tolerance: str) -> None:
    from spendtrail.money import format_amount, from_pico
    from spendtrail.reconcile import parse_tolerance, reconcile_daily

    try:
        records = reconcile_daily(ledger(), source, reviewer=reviewer, actor=actor(),
                                  tolerance=parse_tolerance(tolerance))
    except SpendtrailError as exc:
        fail(str(exc))
    if not records:
        console.print(f"{source}: no closed day with a fetched bill left to reconcile")
    for record in records:
        variance = f"{format_amount(from_pico(record.variance_pico))} {record.currency}"
        percent = record.variance_percent
        share = "" if percent is None else f" ({percent}%)"
        console.print(f"{record.period.label} {source}: {record.result}, variance {variance}"
                      f"{share}, reconciliation {record.id}", highlight=False)
        if record.result == "fail":
            err_console.print(
                f"reconcile: {record.period.label} {source} variance {variance}{share} is over "
                f"the tolerance of {tolerance} (reconciliation {record.id})", highlight=False)
    results = {record.result for record in records}
    if "fail" in results:
        _alert_failures()
    raise typer.Exit(1 if "fail" in results else 3 if "inconclusive" in results else 0)


def _alert_failures() -> None:
    """A failed day is an alert too (docs/alerts.md), delivered to the alerts file's
    channels; a problem with alerting is reported without hiding the reconciliation's exit."""
    from spendtrail.alerts import check_alerts
    from spendtrail.cli.alerts_cmd import load, report

    try:
        report(check_alerts(ledger(), load(None), kinds=("reconciliation_failed",)))
    except SpendtrailError as exc:
        err_console.print(f"alerts: {escape(str(exc))}", highlight=False)
