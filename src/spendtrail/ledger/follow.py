"""Follow mode: keep moving the journal into the ledger, and wait out database outages.

Capture never waits for the database: it only appends to the spool. This loop seals the files
of writers that died, ingests every sealed file, and when the database is unreachable it
leaves the files where they are and tries again, so events wait in the journal and catch up
when the database returns. Ingest is idempotent, so a file half-ingested before an outage is
simply replayed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import sqlalchemy as sa

from spendtrail.journal.spool import recover_orphans, sealed_files
from spendtrail.ledger.db import LedgerError, open_ledger
from spendtrail.ledger.ingest import Ingester, IngestReport

OUTAGE_ERRORS = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    LedgerError,
)


def follow(
    url: str,
    spool: Path,
    *,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    on_report: Callable[[IngestReport], None] = lambda report: None,
    on_outage: Callable[[Exception], None] = lambda error: None,
) -> None:
    """Run until `stop` is set, then make one last round, so a writer that sealed its file
    and then asked the loop to stop still has that file ingested. Registry and prices are
    re-read for every round that has files, so changes to them apply without a restart."""
    stop = stop or threading.Event()
    engine: sa.Engine | None = None
    pending = True  # intents held in the ledger may wait for a writer that has stopped since
    while True:
        last = stop.is_set()
        recover_orphans(spool)  # before looking, so a dead writer's file counts
        if sealed_files(spool) or pending:
            try:
                engine = engine or open_ledger(url)
                report = Ingester(engine).ingest_spool(spool)
                pending = report.pending > 0
                on_report(report)
            except OUTAGE_ERRORS as error:
                on_outage(error)
                if engine is not None:
                    engine.dispose()  # reconnect from scratch once the database is back
                    engine = None
        if last:
            break
        stop.wait(interval)
    if engine is not None:
        engine.dispose()
