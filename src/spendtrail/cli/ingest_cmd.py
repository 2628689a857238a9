"""`spendtrail init` and `spendtrail ingest`: create the ledger, and move events into it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spendtrail.cli.common import console, err_console, ledger, settings
from spendtrail.errors import SpendtrailError

if TYPE_CHECKING:
    from spendtrail.ledger.ingest import IngestReport


def init() -> None:
    """Create the spendtrail home, the ledger (migrated) and the spool folder."""
    from spendtrail.ledger.url import redact_url

    s = settings()
    s.home.mkdir(parents=True, exist_ok=True)
    s.spool.mkdir(parents=True, exist_ok=True)
    ledger()
    console.print(f"ledger: {redact_url(s.ledger_url)}")
    console.print(f"spool:  {s.spool}")
    console.print("next: spendtrail registry load REGISTRY.yaml; spendtrail prices import ...")


def ingest(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="JSONL event files or folders; default: the sealed spool files."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 10_000,
    workers: Annotated[
        int, typer.Option(min=1, help="processes for large files (default: one per CPU)")
    ] = os.cpu_count() or 1,
    follow_spool: Annotated[
        bool, typer.Option("--follow", help="keep ingesting the spool (or, with "
                           "SPENDTRAIL_JOURNAL_URL set, the NATS journal) until interrupted")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.05, help="seconds between rounds")] = 1.0,
) -> None:
    """Validate, price and write events to the ledger; idempotent on event id."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from spendtrail.ledger.ingest import Ingester

    if follow_spool:
        _follow(interval)
        return
    ingester = Ingester(ledger(), batch_size=batch_size, workers=workers)
    if not paths:
        report = ingester.ingest_spool(settings().spool)
    else:
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise SpendtrailError(f"{missing[0]}: no such file or folder")
        total = sum(
            f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*.jsonl"))
        )
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        ) as progress:
            task = progress.add_task("ingesting", total=total)
            report = ingester.ingest_paths(paths, lambda n: progress.advance(task, n))
    _print_report(report)
    if report.rejected:
        raise typer.Exit(1)


def _follow(interval: float) -> None:
    from spendtrail.journal.spool import backlog
    from spendtrail.ledger.follow import follow

    if settings().journal_url:
        _follow_stream(interval)
        return

    def outage(error: Exception) -> None:
        files, _, age = backlog(settings().spool)
        err_console.print(
            f"ledger unavailable ({type(error).__name__}); {files} spool files "
            f"wait, oldest {age:.0f}s; retrying",
            highlight=False,
        )

    def report(result: IngestReport) -> None:
        if result.read:
            _print_report(result)

    console.print(f"following {settings().spool} (Ctrl-C to stop)")
    try:
        follow(
            settings().ledger_url,
            settings().spool,
            interval=interval,
            on_report=report,
            on_outage=outage,
        )
    except KeyboardInterrupt:
        pass


def _follow_stream(interval: float) -> None:
    from spendtrail.journal.jetstream import parse_journal_url
    from spendtrail.ledger.follow import follow_stream

    target = parse_journal_url(settings().journal_url)

    def outage(error: Exception) -> None:
        err_console.print(f"ledger or journal unavailable ({type(error).__name__}); "
                          "events wait in the stream; retrying", highlight=False)

    def report(result: IngestReport) -> None:
        _print_report(result)

    ledger()  # create or migrate the ledger first, with the CLI's usual errors
    console.print(f"following {target.display}, consumer {target.consumer} (Ctrl-C to stop)")
    try:
        follow_stream(settings().ledger_url, settings().journal_url, interval=interval,
                      on_report=report, on_outage=outage)
    except KeyboardInterrupt:
        pass


def _print_report(report: IngestReport) -> None:
    console.print(
        f"read {report.read}, inserted {report.inserted}, duplicates skipped "
        f"{report.duplicates}, rejected {len(report.rejected)}"
    )
    console.print(
        f"allocated {report.allocated}, shared {report.shared}, quarantined "
        f"{report.quarantined}, unpriced {report.unpriced}"
    )
    if report.interrupted or report.pending:
        console.print(f"interrupted {report.interrupted} (calls in flight when their gateway "
                      f"stopped), intents still in flight {report.pending}")
    for item in report.rejected[:50]:
        err_console.print(f"{item.source}:{item.line}: {item.error}", highlight=False)
    if len(report.rejected) > 50:
        err_console.print(f"... and {len(report.rejected) - 50} more (spendtrail ledger rejects)")
