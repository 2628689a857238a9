"""`spendtrail ledger path|stats|rejects|partitions|retention`."""

from __future__ import annotations

from typing import Annotated

import typer

from spendtrail.cli.common import actor, console, ledger, settings
from spendtrail.cli.render import Format, render

app = typer.Typer(no_args_is_help=True)


@app.command()
def path() -> None:
    """Print where the ledger is (SPENDTRAIL_DATABASE_URL overrides the SQLite default)."""
    from spendtrail.ledger.url import redact_url

    console.print(redact_url(settings().ledger_url), highlight=False, soft_wrap=True)


@app.command()
def stats(fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Counts of what the ledger holds."""
    from spendtrail.ledger.stats import ledger_stats

    with ledger().connect() as conn:
        figures = ledger_stats(conn)
    render([{"measure": k, "value": v} for k, v in figures.items()], fmt, title="ledger")


@app.command()
def rejects(
    limit: Annotated[int, typer.Option(min=1)] = 100,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Lines that could not be ingested, with their file, line and reason."""
    from spendtrail.ledger.stats import rejected_lines

    with ledger().connect() as conn:
        rows = rejected_lines(conn, limit)
    render(rows, fmt, title="rejected lines")


@app.command()
def partitions(
    ahead: Annotated[int, typer.Option(min=0, help="Months after the current one.")] = 3,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Create the monthly partitions (PostgreSQL) of this month and --ahead more; list all."""
    from datetime import UTC, datetime

    from spendtrail.ledger.partitions import maintain

    created, found = maintain(ledger(), datetime.now(UTC).date(), ahead)
    rows = [
        {
            "partition": p.name,
            "month": f"{p.month:%Y-%m}" if p.month else "(default)",
            "rows_estimated": p.rows,
            "size_mib": f"{p.bytes / 2**20:.1f}",
            "state": "retired" if p.retired else "created" if p.month in created else "live",
        }
        for p in found
    ]
    render(rows, fmt, title="partitions")


@app.command()
def retention(
    keep: Annotated[str, typer.Option(help="Whole months kept before the current one: 13m.")],
    month: Annotated[str | None, typer.Option(help="Only this month (YYYY-MM).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check, drop nothing.")] = False,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Drop the raw events and cost entries of closed months older than --keep (PostgreSQL);
    their daily rollups stay, checked against the raw rows first."""
    from datetime import UTC, datetime

    from spendtrail.ledger.retention import parse_keep, parse_month, retire
    from spendtrail.money import from_pico, plain_decimal

    done = retire(
        ledger(),
        parse_keep(keep),
        today=datetime.now(UTC).date(),
        actor=actor(),
        month=parse_month(month) if month else None,
        dry_run=dry_run,
    )
    rows = [
        {
            "month": f"{t.month:%Y-%m}",
            "events": t.events,
            "cost": ", ".join(
                f"{plain_decimal(from_pico(pico))} {currency}"
                for currency, pico in t.amount_pico.items()
            ),
            "state": "would drop" if dry_run else "dropped",
        }
        for t in done
    ]
    render(rows, fmt, title="retention" if rows else "retention: no month to drop")
