"""`spendtrail ledger path|stats|rejects`."""

from __future__ import annotations

from typing import Annotated

import typer

from spendtrail.cli.common import console, ledger, settings
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
