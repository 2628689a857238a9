"""The `spendtrail` command. Faces hold no business logic: parse, call a layer, render."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from spendtrail.cli import (
    allocation_cmd,
    bills_cmd,
    budgets_cmd,
    evidence_cmd,
    export_cmd,
    gateway_cmd,
    ledger_cmd,
    prices_cmd,
    reconcile_cmd,
    registry_cmd,
    report_cmd,
    reprice_cmd,
    simulator_cmd,
)
from spendtrail.cli.common import console, err_console, fail, ledger, settings
from spendtrail.errors import SpendtrailError
from spendtrail.journal.spool import backlog
from spendtrail.ledger.db import redact_url
from spendtrail.ledger.follow import follow
from spendtrail.ledger.ingest import Ingester, IngestReport

app = typer.Typer(
    help="spendtrail: explainable, chargeable AI API spend.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(registry_cmd.app, name="registry", help="The owner registry.")
app.add_typer(prices_cmd.app, name="prices", help="The dated, sourced price catalog.")
app.add_typer(ledger_cmd.app, name="ledger", help="Where the ledger is and what it holds.")
app.add_typer(budgets_cmd.app, name="budgets", help="Budgets: limits per owner and period.")
app.command("costs")(ledger_cmd.costs)
app.command("simulate-provider")(simulator_cmd.simulate_provider)
app.command("gateway")(gateway_cmd.gateway)
app.add_typer(gateway_cmd.keys_app, name="keys", help="Gateway keys: create, list, revoke, rotate.")
app.add_typer(evidence_cmd.sources_app, name="sources", help="The register of sources relied on.")
app.add_typer(evidence_cmd.review_app, name="review", help="Chargeback review notes.")
app.add_typer(evidence_cmd.followups_app, name="followups", help="Open questions, routed.")
app.add_typer(evidence_cmd.audit_app, name="audit", help="The append-only audit trail.")
app.add_typer(evidence_cmd.handoff_app, name="handoff", help="Cost handoff records.")
app.command("smoke")(evidence_cmd.smoke)
app.add_typer(bills_cmd.app, name="bills", help="The provider's bills: import and list.")
app.command("reconcile")(reconcile_cmd.reconcile)
app.command("reprice")(reprice_cmd.reprice)
app.add_typer(report_cmd.app, name="report", help="Chargeback statements, unit cost, retries.")
app.add_typer(export_cmd.app, name="export", help="Export the ledger in standard formats.")
app.add_typer(allocation_cmd.allocation_app, name="allocation",
              help="Coverage KPIs and shared-cost rules.")
app.add_typer(allocation_cmd.exceptions_app, name="exceptions",
              help="The queue of quarantined (unallocated) usage.")


@app.command()
def init() -> None:
    """Create the spendtrail home, the ledger (migrated) and the spool folder."""
    s = settings()
    s.home.mkdir(parents=True, exist_ok=True)
    s.spool.mkdir(parents=True, exist_ok=True)
    ledger()
    console.print(f"ledger: {redact_url(s.ledger_url)}")
    console.print(f"spool:  {s.spool}")
    console.print("next: spendtrail registry load REGISTRY.yaml; spendtrail prices import ...")


@app.command()
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
        bool, typer.Option("--follow", help="keep ingesting the spool until interrupted")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.05, help="seconds between rounds")] = 1.0,
) -> None:
    """Validate, price and write events to the ledger; idempotent on event id."""
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
        total = sum(f.stat().st_size for p in paths
                    for f in ([p] if p.is_file() else p.rglob("*.jsonl")))
        with Progress("[progress.description]{task.description}", BarColumn(),
                      DownloadColumn(), TimeRemainingColumn(), console=err_console,
                      transient=True, disable=not err_console.is_terminal) as progress:
            task = progress.add_task("ingesting", total=total)
            report = ingester.ingest_paths(paths, lambda n: progress.advance(task, n))
    _print_report(report)
    if report.rejected:
        raise typer.Exit(1)


def _follow(interval: float) -> None:
    def outage(error: Exception) -> None:
        files, _, age = backlog(settings().spool)
        err_console.print(f"ledger unavailable ({type(error).__name__}); {files} spool files "
                          f"wait, oldest {age:.0f}s; retrying", highlight=False)

    def report(result: IngestReport) -> None:
        if result.read:
            _print_report(result)

    console.print(f"following {settings().spool} (Ctrl-C to stop)")
    try:
        follow(settings().ledger_url, settings().spool, interval=interval, on_report=report,
               on_outage=outage)
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


def main() -> None:
    try:
        app()
    except SpendtrailError as exc:
        try:
            fail(str(exc))
        except typer.Exit as done:
            sys.exit(done.exit_code)


if __name__ == "__main__":
    main()
