"""Provider bills in the ledger: a file's lines streamed in batches into ``bill_lines``, its
bad rows into ``bill_import_errors``, one ``bill_imports`` row and one audit record.

An import is one transaction, so a failure leaves nothing behind, and a file that yields no
line is not stored at all. The same bytes are imported once: a file whose SHA-256 is in
``bill_imports`` is refused, naming the earlier import, unless that bill was voided. Memory
stays constant in the file size: lines go to the database a batch at a time
(COPY on PostgreSQL, executemany on SQLite, as the event ingester does), and only the first
``KEEP_ERRORS`` row errors are kept in memory for display (all are stored).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from spendtrail.bills import BillFileError, BillLine, BillRowError, choose_format, read_bill
from spendtrail.errors import SpendtrailError
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.db import copy_rows
from spendtrail.ledger.schema import BILL_METERS, bill_import_errors, bill_imports, bill_lines
from spendtrail.money import MoneyError, to_pico

KEEP_ERRORS = 1000
MAX_PICO = 2**63 - 1  # a BIGINT column: about 9.2 million currency units per line
LINE_COLUMNS = tuple(c.name for c in bill_lines.columns if c.name != "id")
_json = msgspec.json.Encoder(decimal_format="number", enc_hook=str)


class DuplicateBillError(SpendtrailError):
    """The file was imported before (same SHA-256)."""


class BillStateError(SpendtrailError):
    """A bill that does not exist, or is voided, for what was asked of it."""


class EmptyBillError(SpendtrailError):
    """No line of the file could be read (often the wrong format): nothing was imported."""


@dataclass(frozen=True, slots=True)
class BillImport:
    id: int
    format: str
    file_name: str
    sha256: str
    provider: str | None
    imported_at: datetime
    imported_by: str
    line_count: int
    error_count: int
    first_day: date | None
    last_day: date | None
    voided_at: datetime | None = None
    voided_by: str | None = None
    void_reason: str | None = None

    def describe_void(self) -> str:
        """'' for a live bill, else when, by whom and why it was voided."""
        if self.voided_at is None:
            return ""
        return f"voided {self.voided_at:%Y-%m-%d %H:%M} by {self.voided_by}: {self.void_reason}"


@dataclass
class ImportResult:
    bill: BillImport
    errors: list[BillRowError] = field(default_factory=list)  # the first KEEP_ERRORS


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise BillFileError(f"{path}: cannot read the file: {exc.strerror}") from None
    return digest.hexdigest()


def import_bill(
    engine: sa.Engine,
    path: Path,
    format: str | None,
    *,
    actor: str,
    mapping: Path | None = None,
    provider: str | None = None,
    batch_size: int = 10_000,
    on_progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import one bill file in `format` (None: detected from the file); `provider` names the
    ledger provider it bills (default: the lines' own provider when they name one).
    `on_progress` receives rows read. A file that yields no line stores nothing and raises
    EmptyBillError."""
    sha256 = file_sha256(path)
    format = choose_format(path, format, mapping)
    items = read_bill(path, format, mapping)  # checks format and mapping before any write
    now = datetime.now(UTC)
    errors: list[BillRowError] = []
    with engine.begin() as conn:
        earlier = conn.execute(
            sa.select(bill_imports.c.id)
            .where(bill_imports.c.sha256 == sha256, bill_imports.c.voided_at.is_(None))
        ).scalar()
        if earlier is not None:
            raise DuplicateBillError(
                f"{path}: already imported as bill {earlier} (same SHA-256); nothing imported"
            )
        import_id = conn.execute(
            bill_imports.insert().values(
                format=format, file_name=str(path), sha256=sha256, provider=provider,
                imported_at=now, imported_by=actor, line_count=0, error_count=0,
            )
        ).inserted_primary_key[0]
        writer = _writer(conn)
        lines = error_count = 0
        providers: set[str] = set()
        first_day: date | None = None
        last_day: date | None = None
        for batch in _batched(items, batch_size):
            rows, bad = [], []
            for item in batch:
                row = item if isinstance(item, BillRowError) else _row(import_id, item)
                if isinstance(row, BillRowError):
                    bad.append(row)
                    continue
                rows.append(row)
                providers.add(item.provider)
                day = item.period_start.date()
                first_day = day if first_day is None else min(first_day, day)
                last_day = day if last_day is None else max(last_day, day)
            writer.lines(rows)
            if bad:
                conn.execute(bill_import_errors.insert(), [
                    {"import_id": import_id, "line": e.line, "item": e.item[:200],
                     "reason": e.reason, "fatal": e.fatal} for e in bad
                ])
                errors.extend(bad[: KEEP_ERRORS - len(errors)])
            lines += len(rows)
            error_count += len(bad)
            if on_progress is not None:
                on_progress(len(batch))
        if not lines:  # raised inside the transaction: the import row and errors go too
            first = f"; the first: {errors[0]}" if errors else ""
            raise EmptyBillError(
                f"{path}: no line could be read as {format}, so nothing was imported "
                f"({error_count} rows rejected{first})")
        if provider is None and len(providers) == 1:
            provider = providers.pop()
        counts = {"provider": provider, "line_count": lines, "error_count": error_count,
                  "first_day": first_day, "last_day": last_day}
        conn.execute(bill_imports.update().where(bill_imports.c.id == import_id).values(counts))
        if conn.dialect.name == "postgresql":
            # Fresh statistics, so the matcher's joins are planned for the lines just added.
            conn.execute(sa.text("ANALYZE bill_lines"))
        record_change(conn, actor=actor, action="bills.import", object_type="bill_import",
                      object_id=str(import_id),
                      after={"format": format, "file_name": str(path), "sha256": sha256,
                             **counts})
        bill = get_import(conn, import_id)
    assert bill is not None
    return ImportResult(bill, errors)


def void_bill(conn: sa.Connection, import_id: int, *, reason: str, actor: str) -> BillImport:
    """Mark a bill void in the caller's transaction, with an audit record: its lines and
    errors stay as evidence, it can no longer be reconciled, and its file's sha256 is free to
    be imported again (e.g. after an import in the wrong format or of the wrong file)."""
    if not reason.strip():
        raise BillStateError("reason: say why the bill is voided; it is kept in the audit log")
    bill = get_import(conn, import_id)
    if bill is None:
        raise BillStateError(f"no bill {import_id}; see `spendtrail bills list`")
    if bill.voided_at is not None:
        raise BillStateError(f"bill {import_id} is already {bill.describe_void()}")
    now = datetime.now(UTC)
    conn.execute(bill_imports.update().where(bill_imports.c.id == import_id).values(
        voided_at=now, voided_by=actor, void_reason=reason.strip()))
    record_change(conn, actor=actor, action="bills.void", object_type="bill_import",
                  object_id=str(import_id),
                  before={"file_name": bill.file_name, "sha256": bill.sha256, "voided": False},
                  after={"voided": True, "voided_at": now}, reason=reason.strip())
    voided = get_import(conn, import_id)
    assert voided is not None
    return voided


def get_import(conn: sa.Connection, import_id: int) -> BillImport | None:
    row = conn.execute(sa.select(bill_imports).where(bill_imports.c.id == import_id)).first()
    return None if row is None else BillImport(**row._mapping)


def list_imports(conn: sa.Connection) -> list[BillImport]:
    rows = conn.execute(sa.select(bill_imports).order_by(bill_imports.c.id))
    return [BillImport(**row._mapping) for row in rows]


def import_errors(conn: sa.Connection, bill: BillImport) -> Iterator[BillRowError]:
    e = bill_import_errors.c
    query = sa.select(e.line, e.reason, e.item, e.fatal).where(e.import_id == bill.id)
    for line, reason, item, fatal in conn.execute(query.order_by(e.id)):
        yield BillRowError(bill.file_name, line, reason, item, fatal)


def _row(import_id: int, line: BillLine) -> tuple | BillRowError:
    try:
        amount, effective = _pico(line.amount), _pico(line.effective_amount)
    except MoneyError as exc:
        return BillRowError(line.source, line.line, f"amount: {exc}", line.item)
    usage = line.usage
    meters = (None,) * len(BILL_METERS) if usage is None else tuple(
        getattr(usage, name) for name in BILL_METERS)
    return (
        import_id, line.line, line.item[:200], line.provider, line.granularity,
        line.period_start, line.period_end, line.period_start.date(), line.charge_kind,
        line.currency, amount, effective, *meters,
        None if usage is None else str(usage.seconds),
        line.provider_request_id, line.response_id, line.key_name, line.project, line.model,
        line.description, _json.encode(line.tags).decode(), _json.encode(line.raw).decode(),
    )


def _pico(amount: Decimal | None) -> int | None:
    if amount is None:
        return None
    pico = to_pico(amount)
    if abs(pico) > MAX_PICO:
        raise MoneyError(f"{amount} is beyond the largest amount a line can store")
    return pico


class _SqliteLines:
    """executemany on the DB-API connection inside the import's transaction; timestamps and
    days in the text forms SQLAlchemy's SQLite types store and read back."""

    _TIMES = tuple(LINE_COLUMNS.index(name) for name in ("period_start", "period_end"))
    _DAY = LINE_COLUMNS.index("day")

    def __init__(self, conn: sa.Connection) -> None:
        self._cursor = conn.connection.driver_connection.cursor()
        self._sql = (f"INSERT INTO bill_lines ({', '.join(LINE_COLUMNS)}) "
                     f"VALUES ({', '.join('?' * len(LINE_COLUMNS))})")

    def lines(self, rows: list[tuple]) -> None:
        self._cursor.executemany(self._sql, [self._adapt(row) for row in rows])

    def _adapt(self, row: tuple) -> tuple:
        values: list[Any] = list(row)
        for index in self._TIMES:
            values[index] = values[index].astimezone(UTC).replace(tzinfo=None).isoformat(
                " ", "microseconds")
        values[self._DAY] = values[self._DAY].isoformat()
        return tuple(values)


class _PostgresLines:
    def __init__(self, conn: sa.Connection) -> None:
        self._cursor = conn.connection.driver_connection.cursor()

    def lines(self, rows: list[tuple]) -> None:
        copy_rows(self._cursor, bill_lines, LINE_COLUMNS, rows)


def _writer(conn: sa.Connection) -> _SqliteLines | _PostgresLines:
    return _SqliteLines(conn) if conn.dialect.name == "sqlite" else _PostgresLines(conn)


def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
