"""Batch ingest: journal lines -> validated, priced ledger rows, idempotent on event id.

Each event is checked against the registry version valid when it happened, priced from the
catalog at its own timestamp, and written with its first cost entry and its share of the
daily rollups in one transaction per batch. Events already in the ledger are skipped, so a
spool replayed after a crash or an outage never counts twice. A line that is not a valid
event is recorded in ``ingest_rejects`` with its file and line; the other lines go on.
Intent records whose completion is not in the same file are held until it arrives or their
writer has stopped, when they become ``interrupted`` events (``ledger/intents.py``).
On PostgreSQL the partitions of the months a batch holds are created before it is written
(``ledger/partitions.py``); an event of a month retention retired is rejected, never counted
again in the rollups that kept it (``ledger/retention.py``).
"""

from __future__ import annotations

import gc
import json
import multiprocessing
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path

import msgspec
import sqlalchemy as sa

from spendtrail.events.model import INTERRUPTED, EventError, UsageEvent, decode_event
from spendtrail.journal.intents import decode_intent, is_intent
from spendtrail.journal.reader import Chunk, JournalLine, event_files, file_chunks, read_lines
from spendtrail.journal.spool import mark_ingested, recover_orphans, sealed_files
from spendtrail.ledger.costs import UNPRICED_STATUSES, cost_of, rollup_measures
from spendtrail.ledger.db import LedgerError, copy_rows
from spendtrail.ledger.intents import hold_intents, late_completions, resolve_intents
from spendtrail.ledger.partitions import (
    create_months,
    is_partitioned,
    month_of,
    partition_months,
    retired_month_set,
)
from spendtrail.ledger.prices import load_catalog
from spendtrail.ledger.registry_versions import load_history
from spendtrail.ledger.schema import ROLLUP_DIMENSIONS, ROLLUP_MEASURES, cost_entries, events
from spendtrail.redact import redact
from spendtrail.registry import Allocation, quarantine

EVENT_COLUMNS = tuple(c.name for c in events.columns)
COST_COLUMNS = tuple(c.name for c in cost_entries.columns if c.name != "id")
_OUTCOME = EVENT_COLUMNS.index("outcome")

_json = msgspec.json.Encoder(decimal_format="string")
CHUNK_BYTES = 8 * 1024 * 1024  # per worker task: large enough to amortize, small for progress


@dataclass(frozen=True, slots=True)
class Rejected:
    source: str
    line: int
    error: str


@dataclass
class IngestReport:
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    allocated: int = 0
    shared: int = 0
    quarantined: int = 0
    unpriced: int = 0
    intents: int = 0  # intent records read
    interrupted: int = 0  # intents that became `interrupted` events
    pending: int = 0  # intents still waiting for their completion (a running writer)
    rejected: list[Rejected] = field(default_factory=list)

    def add(self, other: IngestReport) -> None:
        for counter in fields(self):
            if counter.name != "rejected":
                setattr(self, counter.name,
                        getattr(self, counter.name) + getattr(other, counter.name))
        self.rejected.extend(other.rejected)


class RetiredMonthWritten(LedgerError):
    """A batch held a row of a month retention retired since the ingester last looked."""


@dataclass(slots=True)
class _Prepared:
    event_id: str
    month: date
    allocation_status: str
    cost_status: str
    event_row: tuple
    cost_row: tuple
    rollup_key: tuple
    rollup_values: tuple


@contextmanager
def _few_collections() -> Iterator[None]:
    """Ingest allocates ~10 containers an event and frees them by reference counting (no
    cycles), yet at the default threshold of 700 the young generation was collected ~8 times
    per 1,000 events, for nothing: 13 % of the ingest's CPU. About once a batch instead."""
    previous = gc.get_threshold()
    gc.set_threshold(max(previous[0], 100_000), *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


class Ingester:
    """Loads the registry history and price catalog once, then ingests any number of batches."""

    def __init__(self, engine: sa.Engine, *, batch_size: int = 10_000, workers: int = 1):
        self.engine = engine
        self.batch_size = batch_size
        self.workers = workers
        with engine.connect() as conn:
            self.registry = load_history(conn)
            self.catalog = load_catalog(conn)
            self._retired = retired_month_set(conn)
            # Months with partitions; None on SQLite, which has none to create.
            self._months = partition_months(conn) if is_partitioned(conn) else None
        self._writer = SqliteWriter() if engine.dialect.name == "sqlite" else PostgresWriter()

    # -- entry points -------------------------------------------------------------------

    def ingest_paths(
        self, paths: Iterable[Path], on_progress: Callable[[int], None] | None = None
    ) -> IngestReport:
        """Ingest JSONL files and folders; `on_progress` receives bytes consumed."""
        report = IngestReport()
        named = event_files(paths)
        for path in named:
            # Chunking reads the file once for its line numbers: only worth it to parallelize.
            chunks = file_chunks(path, CHUNK_BYTES) if self.workers > 1 else []
            if len(chunks) > 1:
                report.add(self._ingest_parallel(path, chunks, on_progress))
            else:
                report.add(self.ingest_lines(read_lines(path), on_progress))
        # The files named are taken as all their writers wrote: only a running writer's
        # intents stay pending.
        self._resolve(report, files={str(path) for path in named})
        return report

    def _ingest_parallel(
        self, path: Path, chunks: list[Chunk], on_progress: Callable[[int], None] | None
    ) -> IngestReport:
        """Worker processes each parse, price and write their own chunks of one file, so
        one chunk's parsing overlaps another's writing. Safe because ingest is idempotent
        and rollup upserts add: the result is the same as a single pass."""
        url = self.engine.url.render_as_string(hide_password=False)
        report = IngestReport()
        context = multiprocessing.get_context("spawn")  # no inherited DB connections
        with context.Pool(self.workers, _init_worker, (url, self.batch_size)) as pool:
            jobs = [(str(path), chunk) for chunk in chunks]
            for (_, chunk), part in zip(jobs, pool.imap(_ingest_chunk, jobs), strict=True):
                report.add(part)
                if on_progress is not None:
                    on_progress(chunk.end - chunk.start)
        return report

    def ingest_spool(self, spool: Path) -> IngestReport:
        """Ingest every sealed spool file, then move it to ``ingested/``; files a killed
        writer left open are sealed first."""
        recover_orphans(spool)
        report = IngestReport()
        for path in sealed_files(spool):
            report.add(self.ingest_lines(read_lines(path)))
            mark_ingested(path)
        self._resolve(report, spool=spool)
        return report

    def _resolve(self, report: IngestReport, *, spool: Path | None = None,
                 files: Collection[str] = ()) -> None:
        interrupted, report.pending = resolve_intents(
            self.engine, lambda items: report.add(self.ingest_events(items)),
            spool=spool, files=files)
        report.interrupted += interrupted

    @_few_collections()
    def ingest_lines(
        self, lines: Iterable[JournalLine], on_progress: Callable[[int], None] | None = None
    ) -> IngestReport:
        report = IngestReport()
        # Intents read and not yet completed by a later line (the latest line of an id wins).
        intents: dict[str, tuple[JournalLine, UsageEvent]] = {}
        for batch in _batched(lines, self.batch_size):
            prepared, sources, rejected, intent_lines = [], [], [], 0
            now = self._writer.timestamp(datetime.now(UTC))
            for item in batch:
                try:
                    if is_intent(item.data):
                        intent_lines += 1
                        intent = decode_intent(item.data)
                        intents[intent.event_id] = (item, intent)
                        continue
                    event = decode_event(item.data)
                    intents.pop(event.event_id, None)
                    prepared.append(self._prepare(event, now))
                    sources.append(item)
                except EventError as exc:
                    message = str(exc) if item.complete else f"truncated line ({exc})"
                    rejected.append((item, message))
            report.read += len(batch) - intent_lines
            report.intents += intent_lines
            inserted, retired = self._write(prepared, report)
            item_of = {row.event_id: item for row, item in zip(prepared, sources, strict=True)}
            rejected += [(item_of[row.event_id], _retired_message(row)) for row in retired]
            if len(inserted) + len(retired) < len(prepared):
                retired_ids = {row.event_id for row in retired}
                rejected += late_completions(self.engine, {
                    row.event_id: item_of[row.event_id] for row in prepared
                    if row.event_id not in inserted and row.event_id not in retired_ids
                    and row.event_row[_OUTCOME] != INTERRUPTED})
            if rejected:
                self._reject(rejected, report)
            if on_progress is not None:
                on_progress(sum(len(item.data) + 1 for item in batch))
        if intents:
            hold_intents(self.engine, intents.values())
        return report

    @_few_collections()
    def ingest_events(self, items: Iterable[UsageEvent]) -> IngestReport:
        report = IngestReport()
        for batch in _batched(items, self.batch_size):
            report.read += len(batch)
            now = self._writer.timestamp(datetime.now(UTC))
            _, retired = self._write([self._prepare(event, now) for event in batch], report)
            if retired:  # intents held since before their month was retired
                self._reject([(JournalLine(f"intent {row.event_id}", 0, b"", True),
                               _retired_message(row)) for row in retired], report)
        return report

    # -- one event --------------------------------------------------------------------

    def _prepare(self, event: UsageEvent, now: object) -> _Prepared:
        at = event.started_at
        found = self.registry.at(at)
        if found is None:
            version, allocation = None, quarantine(event.context, ("no_registry",))
        else:
            version, registry = found
            allocation = registry.validate(event.context)

        model = event.model
        tier = event.service_tier
        entry = self.catalog.lookup(event.provider, model, at, tier) if model else None
        cost = cost_of(event.usage, entry, usage_known=event.usage_known, service_tier=tier)

        w = self._writer
        day = at.date()
        event_row = (
            event.event_id, event.request_id, event.attempt, w.timestamp(at),
            w.timestamp(event.ended_at) if event.ended_at else None, w.day(day),
            event.provider, event.endpoint, event.model_requested, event.model_served,
            event.http_status, event.outcome,
            allocation.business_unit, allocation.application, allocation.environment,
            allocation.workload_class, allocation.cost_center, allocation.budget_owner,
            event.context.job_id, allocation.status, ",".join(allocation.reasons), version,
            _json.encode(event.context).decode(), _json.encode(event.usage).decode(),
            json.dumps(event.raw_usage) if event.raw_usage is not None else None,
            event.provider_request_id, event.response_id, event.gateway_key_id, event.source,
            now, tier,
        )
        cost_row = (
            event.event_id, 1, cost.status, cost.price_entry_id, cost.currency, cost.amount_pico,
            _json.encode(cost.breakdown).decode(), ",".join(cost.flags), now, w.day(day),
        )
        rollup_key = (
            w.day(day), event.provider, model or "", *_owner(allocation), allocation.status,
            cost.currency or "",
        )
        rollup_values = rollup_measures(event.outcome == "success", event.usage, cost)
        return _Prepared(event.event_id, month_of(day), allocation.status, cost.status,
                         event_row, cost_row, rollup_key, rollup_values)

    # -- writing ----------------------------------------------------------------------

    def _write(
        self, prepared: list[_Prepared], report: IngestReport
    ) -> tuple[set[str], list[_Prepared]]:
        """Write the batch's new events; returns their ids and the rows of retired months,
        which are not written."""
        unique: dict[str, _Prepared] = {}
        for row in prepared:
            unique.setdefault(row.event_id, row)
        while True:
            rows = [row for row in unique.values() if row.month not in self._retired]
            self._create_partitions(rows)
            try:
                inserted = self._writer.write(self.engine, rows, sum_rollups) if rows else set()
                break
            except RetiredMonthWritten:  # retention ran meanwhile: look again, write the rest
                with self.engine.connect() as conn:
                    retired = retired_month_set(conn)
                if retired == self._retired:
                    raise
                self._retired = retired
        retired = [row for row in unique.values() if row.month in self._retired]
        report.inserted += len(inserted)
        report.duplicates += len(prepared) - len(inserted) - len(retired)
        for row in rows:
            if row.event_id in inserted:
                setattr(report, row.allocation_status,
                        getattr(report, row.allocation_status) + 1)
                report.unpriced += row.cost_status in UNPRICED_STATUSES
        return inserted, retired

    def _create_partitions(self, rows: list[_Prepared]) -> None:
        if self._months is None:
            return
        missing = {row.month for row in rows} - self._months
        if missing:
            with self.engine.begin() as conn:
                create_months(conn, missing)
            self._months |= missing

    def _reject(self, rejected: list[tuple[JournalLine, str]], report: IngestReport) -> None:
        now = datetime.now(UTC)
        rows = [
            {"at": now, "source": item.source, "line": item.line, "error": message[:2000],
             "raw": redact(item.data[:2000].decode("utf-8", "replace"))}
            for item, message in rejected
        ]
        # A replayed file re-reports the same bad lines; the (source, line) key keeps one row.
        insert = sa.text(
            "INSERT INTO ingest_rejects (at, source, line, error, raw) "
            "VALUES (:at, :source, :line, :error, :raw) ON CONFLICT DO NOTHING"
        )
        with self.engine.begin() as conn:
            conn.execute(insert, rows)
        report.rejected.extend(Rejected(item.source, item.line, msg) for item, msg in rejected)


_worker: Ingester | None = None


def _init_worker(url: str, batch_size: int) -> None:
    global _worker
    from spendtrail.ledger.db import make_engine

    _worker = Ingester(make_engine(url), batch_size=batch_size)


def _ingest_chunk(job: tuple[str, Chunk]) -> IngestReport:
    path, chunk = job
    return _worker.ingest_lines(read_lines(Path(path), chunk))


def _retired_message(row: _Prepared) -> str:
    return (f"event {row.event_id} is of {row.month:%Y-%m}, a month retention retired: its "
            "totals stay in the rollups; not ingested again (a replay of an old journal?)")


def _owner(allocation: Allocation) -> tuple[str, ...]:
    return (
        allocation.business_unit or "", allocation.application or "",
        allocation.environment or "", allocation.workload_class or "",
        allocation.cost_center or "", allocation.budget_owner or "",
    )


def sum_rollups(rows: Iterable[_Prepared]) -> list[tuple]:
    """Sum a batch into rollup rows, sorted so concurrent writers lock rows in one order.
    Only `rollup_key` and `rollup_values` are read (repricing passes its own deltas)."""
    sums: dict[tuple, list[int]] = {}
    for row in rows:
        acc = sums.get(row.rollup_key)
        if acc is None:
            sums[row.rollup_key] = [int(v) for v in row.rollup_values]
        else:
            for i, value in enumerate(row.rollup_values):
                acc[i] += value
    return [key + tuple(values) for key, values in sorted(sums.items())]


ROLLUP_UPSERT = (
    f"INSERT INTO rollups_daily ({', '.join(ROLLUP_DIMENSIONS + ROLLUP_MEASURES)}) "
    f"VALUES ({', '.join(['{p}'] * (len(ROLLUP_DIMENSIONS) + len(ROLLUP_MEASURES)))}) "
    f"ON CONFLICT ({', '.join(ROLLUP_DIMENSIONS)}) DO UPDATE SET "
    + ", ".join(f"{m} = rollups_daily.{m} + excluded.{m}" for m in ROLLUP_MEASURES)
)


PRICES_USED_INSERT = (
    "INSERT INTO prices_used_daily (day, provider, model, price_entry_id) "
    "VALUES ({p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING"
)


def prices_used(rows: Iterable[_Prepared]) -> list[tuple]:
    """The batch's distinct (day, provider, model, price entry), for prices_used_daily."""
    return sorted({(*row.rollup_key[:3], row.cost_row[3]) for row in rows
                   if row.cost_row[3] is not None})


class SqliteWriter:
    """One IMMEDIATE transaction per batch: the write lock is taken before the duplicate check,
    so no other writer can insert the same ids in between."""

    @staticmethod
    def timestamp(value: datetime) -> str:
        # SQLAlchemy's SQLite DateTime storage format (naive UTC), so Core reads parse it.
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    @staticmethod
    def day(value: date) -> str:
        return value.isoformat()

    def write(self, engine: sa.Engine, rows: list[_Prepared], rollups) -> set[str]:
        raw = engine.raw_connection()
        try:
            db = raw.driver_connection
            cursor = db.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                existing = set()
                ids = [row.event_id for row in rows]
                for start in range(0, len(ids), 900):
                    chunk = ids[start:start + 900]
                    cursor.execute(
                        f"SELECT event_id FROM events WHERE event_id IN "
                        f"({','.join('?' * len(chunk))})", chunk)
                    existing.update(r[0] for r in cursor.fetchall())
                new = [row for row in rows if row.event_id not in existing]
                cursor.executemany(insert_sql("events", EVENT_COLUMNS, "?"),
                                   [row.event_row for row in new])
                cursor.executemany(insert_sql("cost_entries", COST_COLUMNS, "?"),
                                   [row.cost_row for row in new])
                cursor.executemany(ROLLUP_UPSERT.replace("{p}", "?"), rollups(new))
                cursor.executemany(PRICES_USED_INSERT.replace("{p}", "?"), prices_used(new))
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            return {row.event_id for row in new}
        finally:
            raw.close()


class PostgresWriter:
    """COPY straight into the tables when the batch's ids are new (the usual case); if any
    already exists, the savepoint rolls back and the batch goes through a temp table with
    INSERT .. ON CONFLICT DO NOTHING RETURNING, which says which events are new even with
    several ingesters running at once."""

    @staticmethod
    def timestamp(value: datetime) -> datetime:
        return value

    @staticmethod
    def day(value: date) -> date:
        return value

    def write(self, engine: sa.Engine, rows: list[_Prepared], rollups) -> set[str]:
        import psycopg  # this writer only: SQLite ledgers never load the driver

        raw = engine.raw_connection()
        try:
            db = raw.driver_connection
            with db.transaction(), db.cursor() as cursor:
                try:
                    with db.transaction():
                        copy_rows(cursor, events, EVENT_COLUMNS, (r.event_row for r in rows))
                    new = rows
                except psycopg.errors.UniqueViolation:
                    new = self._insert_new(cursor, rows)
                copy_rows(cursor, cost_entries, COST_COLUMNS, (r.cost_row for r in new))
                cursor.executemany(ROLLUP_UPSERT.replace("{p}", "%s"), rollups(new))
                cursor.executemany(PRICES_USED_INSERT.replace("{p}", "%s"), prices_used(new))
            return {row.event_id for row in new}
        except psycopg.errors.CheckViolation as exc:  # a retired month's partition refuses
            raise RetiredMonthWritten(str(exc)) from None
        finally:
            raw.close()

    @staticmethod
    def _insert_new(cursor, rows: list[_Prepared]) -> list[_Prepared]:
        columns = ", ".join(EVENT_COLUMNS)
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS staging_events "
            "(LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        copy_rows(cursor, events, EVENT_COLUMNS, (r.event_row for r in rows),
                  into="staging_events")
        cursor.execute(
            f"INSERT INTO events ({columns}) SELECT {columns} FROM staging_events "
            "ON CONFLICT (event_id, day) DO NOTHING RETURNING event_id")
        inserted = {r[0] for r in cursor.fetchall()}
        return [row for row in rows if row.event_id in inserted]


def insert_sql(table: str, columns: tuple[str, ...], placeholder: str) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join([placeholder] * len(columns))})")


def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
