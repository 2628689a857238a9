"""`spendtrail bills fetch`: a provider's bill API paged for the closed UTC days not fetched
yet, each day's entries saved as a JSONL file of pages and imported as one bill per report
through the ordinary import (docs/bills.md, "Fetching bills").

Only closed days are fetched (a day closes at the next UTC midnight), so a day is read whole,
once: the cursor (``bill_fetch_cursors``) moves to a day after its bills are stored, and the
next fetch starts the day after. If a fetch stops between a day's import and its cursor move,
the next one fetches the same day again; the same pages make the same file, which the import
refuses as already imported, so the day is not stored twice. Every fetch, completed or not,
writes one ``bills.fetch`` audit record. The key is used in request headers only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO

import msgspec
import sqlalchemy as sa

from spendtrail.connectors.http import CallCounts, FetchError, Retrying
from spendtrail.connectors.sources import SOURCES, Fetch, Source, days
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.fetch_cursors import move_cursor, read_cursor
from spendtrail.periods import Period
from spendtrail.reconcile import BillImport, DuplicateBillError, import_bill

_json = msgspec.json.Encoder(decimal_format="number")


@dataclass
class FetchResult:
    source: str
    account: str
    first: date | None  # the first day fetched; None when nothing was due
    through: date | None  # the cursor after the fetch
    bills: list[BillImport] = field(default_factory=list)
    already_stored: list[Path] = field(default_factory=list)  # files the import refused
    counts: CallCounts = field(default_factory=CallCounts)


def source_named(name: str) -> Source:
    source = SOURCES.get(name)
    if source is None:
        raise FetchError(f"unknown bill source {name!r}; expected one of {', '.join(SOURCES)}")
    return source


def fetch_bills(
    engine: sa.Engine,
    source_name: str,
    period: Period,
    *,
    key: str,
    actor: str,
    out_dir: Path,
    base_url: str | None = None,
    now: datetime | None = None,
    page_size: int | None = None,
    retrying: Retrying | None = None,
) -> FetchResult:
    """Fetch the closed days of `period` after the source account's cursor, store each day's
    pages as bills and move the cursor past them. Pages are saved under `out_dir`."""
    source = source_named(source_name)
    if not key:
        raise FetchError(f"{source.name}: no key; set {source.key_env}")
    account = (base_url or source.base_url).rstrip("/")
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    with engine.connect() as conn:
        cursor = read_cursor(conn, source.name, account)
    first = max(period.start, cursor + timedelta(days=1)) if cursor else period.start
    if cursor is not None and cursor + timedelta(days=1) < first:
        # Moving the cursor past days never fetched would leave them out for good.
        raise FetchError(
            f"{source.name} {account}: fetched through {cursor}; a fetch from {first} would "
            f"skip the days between; start the period at {cursor + timedelta(days=1)}"
        )
    end = min(period.end, today)
    result = FetchResult(source.name, account, first if first < end else None, cursor)
    try:
        if first < end:
            fetch = Fetch(
                account, key, first, end, page_size, retrying or Retrying(), result.counts
            )
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            run_dir = out_dir / source.name / stamp
            files = _save_pages(source, fetch, run_dir)
            for day in days(first, end):
                for path, bill_format in files.get(day, []):
                    try:
                        imported = import_bill(
                            engine, path, bill_format, actor=actor, provider=source.name
                        )
                    except DuplicateBillError:
                        result.already_stored.append(path)
                    else:
                        result.bills.append(imported.bill)
                with engine.begin() as conn:
                    move_cursor(conn, source.name, account, day, actor)
                result.through = day
    except Exception as exc:
        _audit(engine, result, period, actor, error=str(exc))
        raise
    _audit(engine, result, period, actor)
    return result


def _save_pages(source: Source, fetch: Fetch, run_dir: Path) -> dict[date, list[tuple[Path, str]]]:
    """Page every report over the range; each entry goes to its day's file as a one-entry
    JSONL page. An entry whose time cannot be read goes to the first day's file, so its
    import reports it. The APIs answer day after day (buckets in order, log rows newest
    first), so one file is open at a time however long the range. Returns, per day, the files
    written and their formats."""
    run_dir.mkdir(parents=True, exist_ok=True)
    files: dict[date, list[tuple[Path, str]]] = {}
    for report in source.reports:
        written: set[date] = set()
        current: tuple[date, IO[bytes]] | None = None
        try:
            for entry, day in report.entries(fetch):
                day = day if day is not None and fetch.first <= day < fetch.end else fetch.first
                if current is None or current[0] != day:
                    if current is not None:
                        current[1].close()
                    path = run_dir / f"{day.isoformat()}.{report.format}.jsonl"
                    current = (day, path.open("ab" if day in written else "wb"))
                    if day not in written:
                        written.add(day)
                        files.setdefault(day, []).append((path, report.format))
                current[1].write(_json.encode({"data": [entry]}) + b"\n")
        finally:
            if current is not None:
                current[1].close()
    return files


def _audit(
    engine: sa.Engine, result: FetchResult, period: Period, actor: str, error: str | None = None
) -> None:
    after = {
        "period": period.label,
        "first_day": result.first,
        "through": result.through,
        "bills": [bill.id for bill in result.bills],
        "already_stored": [str(path) for path in result.already_stored],
        "requests": result.counts.requests,
        "retries": result.counts.retries,
    }
    if error is not None:
        after["error"] = error
    with engine.begin() as conn:
        record_change(
            conn,
            actor=actor,
            action="bills.fetch",
            object_type="bill_source",
            object_id=f"{result.source} {result.account}",
            after=after,
        )
