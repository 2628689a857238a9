"""`spendtrail export focus`: the ledger as FOCUS cost-and-usage rows (1.3; 1.2 or 1.4);
`spendtrail export gl`: a month's charges as a general-ledger journal (CSV)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from spendtrail.cli.common import console, err_console, fail, ledger
from spendtrail.errors import SpendtrailError
from spendtrail.money import format_amount
from spendtrail.periods import parse_period

app = typer.Typer(no_args_is_help=True)


@app.callback()
def export() -> None:
    """Export the ledger in standard formats."""  # a group even with one command


class FocusFileFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


class FocusVersion(StrEnum):
    v1_2 = "1.2"
    v1_3 = "1.3"
    v1_4 = "1.4"


@app.command()
def focus(
    period: Annotated[str, typer.Option(help="YYYY-MM, YYYY-MM-DD or START..END (UTC days)")],
    output: Annotated[Path, typer.Option(help="file to write", dir_okay=False)],
    fmt: Annotated[FocusFileFormat, typer.Option("--format")] = FocusFileFormat.csv,
    billing_account: Annotated[
        str | None, typer.Option(help="BillingAccountId (default: the provider id)")
    ] = None,
    billing_account_name: Annotated[
        str | None, typer.Option(help="BillingAccountName (default: '<provider> account')")
    ] = None,
    invoice_issuer: Annotated[
        str | None, typer.Option(help="InvoiceIssuerName (default: the provider)")
    ] = None,
    focus_version: Annotated[
        FocusVersion, typer.Option(help="the FOCUS version to write")
    ] = FocusVersion.v1_3,
) -> None:
    """Write FOCUS cost-and-usage rows (one per day, model, meter, owner and price), and the
    FOCUS metadata files beside them.

    Usage without a price cannot be a FOCUS cost row (costs are never null, never a made-up 0):
    it is counted here instead, and the command exits 1 when there is any."""
    from spendtrail.reports.focus import FocusOptions, export_focus, metadata_paths

    options = FocusOptions(billing_account, billing_account_name, invoice_issuer,
                           focus_version.value)
    try:
        summary = export_focus(ledger(), parse_period(period), output, fmt.value, options)
    except SpendtrailError as exc:
        fail(str(exc))
    costs = ", ".join(f"{format_amount(v, 12)} {c}" for c, v in summary.cost().items())
    console.print(
        f"{output}: {summary.rows} FOCUS rows from {summary.exported_events} of "
        f"{summary.events} events in {summary.period.label}; BilledCost {costs or '0'}",
        highlight=False, soft_wrap=True,
    )
    if summary.closed:
        console.print(f"{summary.period.label} is closed: the export taken at its close",
                      highlight=False)
    console.print(f"FOCUS {options.version}; metadata: "
                  + ", ".join(str(p) for p in metadata_paths(output).values()),
                  highlight=False, soft_wrap=True)
    if summary.no_usage_events:
        console.print(f"{summary.no_usage_events} events metered nothing (no charge)")
    missing = [
        f"{summary.unpriced_events} unpriced events" if summary.unpriced_events else "",
        f"the unpriced meters of {summary.incomplete_events} partly priced events"
        if summary.incomplete_events else "",
    ]
    if any(missing):
        err_console.print(
            f"[yellow]not in the cost rows:[/yellow] {' and '.join(filter(None, missing))}; "
            "add their prices, reprice the period, then export again",
            highlight=False, soft_wrap=True,
        )
        for (provider, model), count in summary.unpriced_models.most_common():
            err_console.print(f"  {provider} {model or '(no model)'}: {count} events",
                              highlight=False)
        raise typer.Exit(1)


@app.command()
def gl(
    period: Annotated[str, typer.Option(help="The month, YYYY-MM.")],
    output: Annotated[Path | None, typer.Option(help="file to write (default: stdout)",
                                                dir_okay=False)] = None,
    credit_account: Annotated[str, typer.Option(
        help="The account every line credits.")] = "AI-API-CLEARING",
) -> None:
    """A month's charges as a GL journal CSV an ERP can import: date, debit cost center,
    credit account, currency, amount (exact), memo; the lines add up to the charges."""
    from spendtrail.reports.gl_journal import gl_lines, to_csv

    try:
        chosen = parse_period(period)
        with ledger().connect() as conn:
            text = to_csv(gl_lines(conn, chosen, credit_account))
    except SpendtrailError as exc:
        fail(str(exc))
    if output is None:
        console.out(text, end="", highlight=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}", highlight=False)
