"""`spendtrail reprice`: recompute a period's costs under the current catalog."""

from __future__ import annotations

from typing import Annotated

import typer

from spendtrail.cli.common import actor, console, err_console, fail, ledger
from spendtrail.cli.render import Format, render
from spendtrail.errors import SpendtrailError
from spendtrail.periods import parse_period


def reprice(
    period: Annotated[str, typer.Option(help="YYYY-MM, YYYY-MM-DD or FIRST..LAST (UTC days).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    output_format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Reprice the period's events at their own time with the current price catalog. Changed
    costs get a new cost entry (the old one stays), rollups follow, and the run is audited."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from spendtrail.ledger.reprice import count_events
    from spendtrail.ledger.reprice import reprice as run_reprice

    try:
        parsed = parse_period(period)
        engine = ledger()
        with Progress(TextColumn("repricing"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err_console, transient=True,
                      disable=not err_console.is_terminal) as progress:
            task = progress.add_task("reprice", total=count_events(engine, parsed))
            result = run_reprice(engine, parsed, actor=actor(), reason=reason, dry_run=dry_run,
                                 on_progress=lambda n: progress.advance(task, n))
    except SpendtrailError as exc:
        fail(str(exc))
    if output_format is not Format.table:
        render(result.owner_rows(), output_format)
        return
    verb = "would change" if dry_run else "changed"
    console.print(
        f"{parsed.label}: {result.examined:,} events examined, {result.changed:,} {verb} "
        f"({result.newly_priced:,} newly priced, {result.newly_unpriced:,} newly unpriced)"
        + (" — dry run, nothing written" if dry_run else ""),
        highlight=False)
    if result.owners:
        render(result.owner_rows(), Format.table, title="Before / after by owner and currency")
