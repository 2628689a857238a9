"""`spendtrail bills`: import provider bill exports into the ledger or fetch them from the
provider's API, list and void them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from spendtrail.bills.formats import FORMATS  # named in --format's help
from spendtrail.cli.common import PeriodOption, actor, console, err_console, fail, ledger, settings
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError

if TYPE_CHECKING:
    from spendtrail.reconcile import BillImport

app = typer.Typer(
    help="Provider bills and usage exports, stored for reconciliation.", no_args_is_help=True
)
SHOWN_ERRORS = 50


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="The export file.")],
    bill_format: Annotated[
        str | None,
        typer.Option("--format", help=f"One of: {', '.join(FORMATS)} (default: detected)."),
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="YAML column mapping (mapped-csv only).")
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(help="The ledger provider this bill is for (default: the file's own)."),
    ] = None,
) -> None:
    """Import a bill: good rows are stored, every bad row is reported with its line.

    The format is detected from the header row or JSON shape when --format is omitted.
    The same file (same SHA-256) is imported once, unless its bill is voided. Exit 0 all rows
    imported, 1 some rows rejected, 2 nothing imported (an error)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from spendtrail.reconcile import import_bill

    try:
        with Progress(SpinnerColumn(), TextColumn("importing {task.completed:,.0f} rows"),
                      TimeElapsedColumn(), console=err_console, transient=True,
                      disable=not err_console.is_terminal) as progress:
            task = progress.add_task("import")
            result = import_bill(ledger(), file, bill_format, actor=actor(), mapping=mapping,
                                 provider=provider,
                                 on_progress=lambda n: progress.advance(task, n))
    except SpendtrailError as exc:
        fail(str(exc))
    bill = result.bill
    console.print(f"bill {bill.id}: {bill.line_count} lines imported, {bill.error_count} rows "
                  f"rejected ({bill.format}, {escape(_span(bill))}, "
                  f"provider {escape(bill.provider or '?')})",
                  highlight=False)
    for error in result.errors[:SHOWN_ERRORS]:
        err_console.print(escape(str(error)), highlight=False)
    if bill.error_count > SHOWN_ERRORS:
        err_console.print(f"... and {bill.error_count - SHOWN_ERRORS} more "
                          f"(spendtrail bills errors {bill.id})", highlight=False)
    if bill.error_count:
        raise typer.Exit(1)


@app.command("fetch")
def fetch_command(
    source: Annotated[str, typer.Argument(help="cometapi, openai or anthropic.")],
    period: PeriodOption,
    base_url: Annotated[
        str | None, typer.Option(help="The API's base URL (default: the provider's).")
    ] = None,
    key_env: Annotated[
        str | None,
        typer.Option(help="The environment variable holding the key (default: COMETAPI_ACCESS_"
                     "TOKEN, OPENAI_ADMIN_KEY or ANTHROPIC_ADMIN_API_KEY)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Where the fetched pages are kept (default: $SPENDTRAIL_HOME/bills)."),
    ] = None,
) -> None:
    """Fetch the closed UTC days of the period not fetched yet from the provider's API, and
    import each day's pages as bills (one per report). The next fetch starts after the last
    day fetched. Exit 0 fetched (or nothing due), 2 an error: nothing after the last day
    stored was kept."""
    import os

    from spendtrail.connectors import fetch_bills, source_named
    from spendtrail.periods import parse_period

    try:
        bill_source = source_named(source)
        variable = key_env or bill_source.key_env
        result = fetch_bills(ledger(), source, parse_period(period),
                             key=os.environ.get(variable, ""), actor=actor(),
                             out_dir=out or settings().home / "bills", base_url=base_url)
    except SpendtrailError as exc:
        fail(str(exc))
    if result.first is None:
        console.print(f"{source}: nothing to fetch in {escape(period)} (fetched through "
                      f"{result.through or 'no day yet'}; a day closes at 00:00 UTC)",
                      highlight=False)
        return
    console.print(f"{source}: fetched {result.first}..{result.through} from "
                  f"{escape(result.account)} ({result.counts.requests} requests, "
                  f"{result.counts.retries} retried)", highlight=False)
    for bill in result.bills:
        console.print(f"bill {bill.id}: {bill.line_count} lines, {bill.error_count} rows "
                      f"rejected ({bill.format}, {escape(_span(bill))})", highlight=False)
    for path in result.already_stored:
        console.print(f"{escape(str(path))}: already imported, not stored again",
                      highlight=False)


@app.command("list")
def list_command(
    output_format: Annotated[Format, typer.Option("--format", help="Output format.")] = (
        Format.table
    ),
) -> None:
    """Every imported bill."""
    from spendtrail.reconcile import list_imports

    with ledger().connect() as conn:
        bills = list_imports(conn)
    if not bills and output_format is Format.table:
        console.print("no bills; import one with `spendtrail bills import FILE --format F`")
        return
    rows = [
        {"id": b.id, "format": b.format, "provider": b.provider, "file": b.file_name,
         "days": _span(b), "lines": b.line_count, "errors": b.error_count,
         "imported": f"{b.imported_at:%Y-%m-%d %H:%M}", "by": b.imported_by,
         "sha256": b.sha256[:12], "status": b.describe_void() or "imported"}
        for b in bills
    ]
    render(rows, output_format, title="Bills")


@app.command("errors")
def errors_command(
    bill_id: Annotated[int, typer.Argument(metavar="ID")],
    output_format: Annotated[Format, typer.Option("--format", help="Output format.")] = (
        Format.table
    ),
) -> None:
    """The rows of a bill that were not imported, with their line and reason."""
    from spendtrail.reconcile import get_import, import_errors

    with ledger().connect() as conn:
        bill = get_import(conn, bill_id)
        if bill is None:
            fail(f"no bill {bill_id}; see `spendtrail bills list`")
        rows = [{"line": e.line, "item": e.item, "reason": e.reason,
                 "fatal": "yes" if e.fatal else ""} for e in import_errors(conn, bill)]
    render(rows, output_format, title=f"Bill {bill_id}: {bill.file_name}")


@app.command("void")
def void_command(
    bill_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why it is voided; kept in the audit log.")],
) -> None:
    """Void a bill imported by mistake (wrong format, wrong file): it stays listed as voided,
    can no longer be reconciled, and its file can be imported again."""
    from spendtrail.reconcile import void_bill

    try:
        with ledger().begin() as conn:
            bill = void_bill(conn, bill_id, reason=reason, actor=actor())
    except SpendtrailError as exc:
        fail(str(exc))
    console.print(f"bill {bill.id} ({escape(bill.file_name)}) {escape(bill.describe_void())}",
                  highlight=False)


def _span(bill: BillImport) -> str:
    return f"{bill.first_day}..{bill.last_day}" if bill.first_day else "no lines"
