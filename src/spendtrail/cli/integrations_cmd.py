"""`spendtrail import litellm` and `spendtrail otlp`: bring in what other tools captured."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spendtrail.cli.common import console, err_console, ledger, settings
from spendtrail.errors import SpendtrailError

import_app = typer.Typer(help="Import usage captured by other tools.", no_args_is_help=True)

MappingOption = Annotated[
    Path | None, typer.Option("--mapping", help="Owner mapping file (YAML; docs/integrations.md).")
]


@import_app.command("litellm")
def litellm(
    postgres: Annotated[
        str | None,
        typer.Option(
            "--postgres", help="URL of LiteLLM's PostgreSQL database (its LiteLLM_SpendLogs)."
        ),
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option(
            "--csv", help="A CSV export of LiteLLM_SpendLogs, its column names as header."
        ),
    ] = None,
    mapping: MappingOption = None,
) -> None:
    """Import LiteLLM spend logs as events, then ingest them; a replay adds nothing."""
    from spendtrail.integrations.litellm import csv_rows, import_spend_logs, postgres_rows
    from spendtrail.integrations.owners import LITELLM_SECTIONS, OwnerMap, load_owner_map

    if (postgres is None) == (csv is None):
        raise SpendtrailError("give one of --postgres URL or --csv FILE")
    owners = load_owner_map(mapping, LITELLM_SECTIONS) if mapping else OwnerMap()
    rows = postgres_rows(postgres) if postgres else csv_rows(csv)
    report, ingested = import_spend_logs(rows, owners, settings().spool, ledger())
    console.print(
        f"rows read {report.read}, journaled {report.journaled} "
        f"({report.mapped} with a mapped key, team or tag), bad {len(report.bad)}"
    )
    console.print(
        f"ingested: inserted {ingested.inserted}, duplicates skipped "
        f"{ingested.duplicates}; allocated {ingested.allocated}, shared "
        f"{ingested.shared}, quarantined {ingested.quarantined}, unpriced "
        f"{ingested.unpriced}"
    )
    for problem in report.bad[:50]:
        err_console.print(str(problem), highlight=False)
    if len(report.bad) > 50:
        err_console.print(f"... and {len(report.bad) - 50} more", highlight=False)
    if report.bad or ingested.rejected:
        raise typer.Exit(1)


def otlp(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port.")] = 4318,
    mapping: MappingOption = None,
) -> None:
    """Receive OpenTelemetry traces (OTLP/HTTP) and journal their GenAI model calls."""
    from spendtrail.integrations.otlp_receiver import COUNTERS, make_app, run_receiver
    from spendtrail.integrations.owners import OTEL_SECTIONS, OwnerMap, load_owner_map

    owners = load_owner_map(mapping, OTEL_SECTIONS) if mapping else OwnerMap()
    app = make_app(settings().spool, owners)

    run_receiver(
        app,
        host,
        port,
        on_ready=lambda url: console.print(
            f"receiving OTLP traces at {url}; events go to {settings().spool} (Ctrl-C to stop)"
        ),
    )
    counters = app[COUNTERS]
    console.print(
        f"requests {counters.requests}, events journaled {counters.journaled}, "
        f"spans ignored (not GenAI model calls) {counters.ignored}, rejected "
        f"{counters.rejected}"
    )
