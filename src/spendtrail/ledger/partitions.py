"""Monthly partitions of events and cost entries on PostgreSQL (docs/ledger.md, "Partitions").

Both tables are partitioned by RANGE on ``day``, the event's UTC day (a cost entry carries
its event's). Each month has one partition per table (``events_2026_10``,
``cost_entries_2026_10``), and a default partition per table catches the rows of a month
that has none yet, so no row is ever refused for want of a partition. The ingester creates
the partitions of the months it sees before it writes them; ``spendtrail ledger partitions
--ahead N`` creates the current month's and the next N. Creating a month whose rows already
sit in the default partition moves them into the new one. SQLite ledgers are not
partitioned: the same tables, the same queries, one file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from spendtrail.ledger.db import LedgerError
from spendtrail.ledger.schema import retired_months

PARTITIONED = ("events", "cost_entries")
_MONTHLY = re.compile(r"^(events|cost_entries)_(\d{4})_(\d{2})$")
# One creator at a time (ingesters, the maintenance command, migrations): pg_advisory_xact_lock.
_LOCK_KEY = 0x5EED_0016


def month_of(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_{month:%Y_%m}"


def default_partition(table: str) -> str:
    return f"{table}_default"


def is_partition(name: str) -> bool:
    """Whether a table name is one of the partitions (not a table of ``schema.py``)."""
    return bool(_MONTHLY.match(name)) or name in {default_partition(t) for t in PARTITIONED}


def is_partitioned(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def partition_months(conn: sa.Connection) -> set[date]:
    """The months that have an events partition (retired ones included)."""
    names = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        )
    ).scalars()
    return {date(int(m[2]), int(m[3]), 1) for name in names if (m := _MONTHLY.match(name))}


def default_months(conn: sa.Connection) -> set[date]:
    """The months of the rows the default events partition holds (normally none)."""
    rows = conn.execute(
        sa.text(
            f"SELECT DISTINCT date_trunc('month', day)::date FROM {default_partition('events')}"
        )
    )
    return set(rows.scalars())


def create_months(conn: sa.Connection, months: Iterable[date]) -> list[date]:
    """Create, in the caller's transaction, the partitions of those ``months`` that have
    none; returns the months created."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    have = partition_months(conn)
    created = sorted({month_of(m) for m in months} - have)
    for month in created:
        for table in PARTITIONED:
            _create(conn, table, month)
    return created


def create_ahead(conn: sa.Connection, today: date, ahead: int) -> list[date]:
    """The partitions of the current month and the ``ahead`` months after it."""
    first = month_of(today)
    return create_months(conn, (add_months(first, i) for i in range(ahead + 1)))


def _create(conn: sa.Connection, table: str, month: date) -> None:
    # Built beside the table and attached, which locks the parent less than CREATE ..
    # PARTITION OF would: ingest into other months goes on meanwhile.
    name, end = partition_name(table, month), add_months(month, 1)
    conn.exec_driver_sql(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)")
    conn.exec_driver_sql(
        f"WITH moved AS (DELETE FROM {default_partition(table)} "
        f"WHERE day >= '{month}' AND day < '{end}' RETURNING *) "
        f"INSERT INTO {name} SELECT * FROM moved"
    )
    conn.exec_driver_sql(
        f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{month}') TO ('{end}')"
    )


def maintain(engine: sa.Engine, today: date, ahead: int) -> tuple[list[date], list[Partition]]:
    """Create the partitions of this month and ``ahead`` more; returns the months created
    and every partition."""
    if engine.dialect.name != "postgresql":
        raise LedgerError(
            "this SQLite ledger is not partitioned: only a PostgreSQL ledger "
            "keeps events and cost entries in monthly partitions"
        )
    with engine.begin() as conn:
        created = create_ahead(conn, today, ahead)
    with engine.connect() as conn:
        return created, list_partitions(conn)


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    month: date | None  # None: the default partition
    rows: int | None  # PostgreSQL's estimate, None before its first ANALYZE; the default
    # partition's is counted, since any row there is one no month partition holds
    bytes: int  # with its indexes
    retired: bool


def list_partitions(conn: sa.Connection) -> list[Partition]:
    """Every partition of both tables, by month and table, the default partitions last."""
    retired = retired_month_set(conn)
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid) "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent IN ('events'::regclass, 'cost_entries'::regclass)"
        )
    ).all()
    found = []
    for name, estimate, size in rows:
        if match := _MONTHLY.match(name):
            month = date(int(match[2]), int(match[3]), 1)
            rows = estimate if estimate >= 0 else None
            found.append(Partition(name, month, rows, size, month in retired))
        else:
            exact = conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()
            found.append(Partition(name, None, exact, size, False))
    return sorted(found, key=lambda p: (p.month is None, p.month or date.min, p.name))


def retired_month_set(conn: sa.Connection) -> set[date]:
    """The months whose raw rows retention dropped (``ledger/retention.py``)."""
    return {month_of(m) for m in conn.execute(sa.select(retired_months.c.month)).scalars()}
