"""Follow mode: keep moving the journal into the ledger, and wait out database outages.

Capture never waits for the database: it only appends to the spool. This loop seals the files
of writers that died, ingests every sealed file, and when the database is unreachable it
leaves the files where they are and tries again, so events wait in the journal and catch up
when the database returns. Ingest is idempotent, so a file half-ingested before an outage is
simply replayed.

``follow_stream`` does the same for a JetStream journal: one member of the ingesters' shared
consumer, acknowledging each batch after its commit, so an ingester killed mid-batch only has
the batch delivered again (to itself or another).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy as sa

from spendtrail.journal.jetstream import JetStreamReader, parse_journal_url
from spendtrail.journal.spool import recover_orphans, sealed_files
from spendtrail.ledger.db import LedgerError, open_ledger
from spendtrail.ledger.ingest import Ingester, IngestReport
from spendtrail.ledger.intents import resolve_stream_intents

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


def follow_stream(
    url: str,
    journal_url: str,
    *,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    batch: int = 1000,
    on_report: Callable[[IngestReport], None] = lambda report: None,
    on_outage: Callable[[Exception], None] = lambda error: None,
) -> None:
    """Ingest the stream of a ``nats://`` journal until `stop` is set. A batch is acknowledged
    only after its commit; while the ledger is down it is given back, to come again. Registry
    and prices are re-read every `interval` seconds."""
    stop = stop or threading.Event()
    target = parse_journal_url(journal_url)
    reader = JetStreamReader(target)
    engine: sa.Engine | None = None
    ingester: Ingester | None = None
    loaded_at = 0.0
    # (moment, the stream's last sequence then): once the consumer's acknowledged floor
    # reaches that sequence, every message published before the moment is in the ledger.
    checkpoints: deque[tuple[datetime, int]] = deque(maxlen=10_000)
    committed_before: datetime | None = None
    checked_at = 0.0
    try:
        while not stop.is_set():
            try:
                messages = reader.fetch(batch, wait=min(interval, 1.0))
            except Exception as error:  # the server is away: the client reconnects
                on_outage(error)
                stop.wait(interval)
                continue
            report, progress = IngestReport(), None
            try:
                if ingester is None or time.monotonic() - loaded_at >= interval:
                    engine = engine or open_ledger(url)
                    ingester, loaded_at = Ingester(engine, batch_size=batch), time.monotonic()
                if messages:
                    report = ingester.ingest_lines(reader.lines(messages))
                    _stream_call(reader.ack, messages, on_outage)
                if time.monotonic() - checked_at >= interval:
                    checked_at = time.monotonic()
                    now = datetime.now(UTC)
                    progress = _stream_call(reader.progress, None, on_outage)
                if progress is not None:
                    checkpoints.append((now, progress.last))
                    while checkpoints and checkpoints[0][1] <= progress.acknowledged:
                        committed_before = checkpoints.popleft()[0]
                    if committed_before is not None:
                        interrupted, report.pending = resolve_stream_intents(
                            engine, target.source, committed_before, target.intent_horizon,
                            lambda items, r=report, i=ingester: r.add(i.ingest_events(items)))
                        report.interrupted += interrupted
            except OUTAGE_ERRORS as error:
                on_outage(error)
                _give_back(reader, messages)
                if engine is not None:
                    engine.dispose()
                    engine, ingester = None, None
                stop.wait(interval)
                continue
            if report.read or report.interrupted or report.rejected:
                on_report(report)
    finally:
        reader.close()
        if engine is not None:
            engine.dispose()


def _stream_call(call: Callable, argument: object, on_outage: Callable[[Exception], None]):
    """A call to the server that may fail while it is away: reported, and None returned (an
    acknowledgement lost so makes its batch come again, which ingest skips)."""
    try:
        return call() if argument is None else call(argument)
    except Exception as error:
        on_outage(error)
        return None


def _give_back(reader: JetStreamReader, messages: list) -> None:
    try:
        reader.release(messages)
    except Exception:  # unacknowledged, they come again after the consumer's ack wait anyway
        pass
