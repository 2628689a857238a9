"""Retention: drop the raw rows of closed months past a keep window (docs/ledger.md,
"Retention").

``--keep 13m`` keeps the current month and the 13 whole months before it; an older month is
retired when it is closed (``month_closed``). Retiring a month drops its events and cost
entries partitions, in one transaction with three other steps, so it is all or nothing:

1. its daily rollups, which statements, coverage, budgets and cost reports read and which
   stay, are checked against the raw rows (events per day; event count and pico-units per
   day and currency of the current cost entries): a difference refuses the month;
2. the partitions are dropped, and an empty partition that refuses every row (CHECK false)
   takes the month's place, so no writer can put a row of that month back;
3. a ``retired_months`` row keeps the month's totals, and the audit log records who ran it.

Ingest rejects an event of a retired month (a replay of an old journal) instead of counting
it twice in rollups that already hold it. SQLite ledgers are not partitioned; retention
refuses to run on them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import sqlalchemy as sa

from spendtrail.ledger.allocation_entries import period_record
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.db import LedgerError
from spendtrail.ledger.partitions import (
    PARTITIONED,
    add_months,
    create_months,
    default_months,
    month_of,
    partition_months,
    partition_name,
    retired_month_set,
)
from spendtrail.ledger.schema import retired_months
from spendtrail.periods import Period, parse_period

_KEEP = re.compile(r"^(\d+)m$")


class RetentionError(LedgerError):
    """A month cannot be retired, or retention cannot run on this ledger."""


def parse_keep(text: str) -> int:
    """``13m`` -> 13 whole months kept before the current one."""
    match = _KEEP.match(text.strip())
    if not match or int(match[1]) < 1:
        raise RetentionError(f"--keep {text!r}: expected a number of months, e.g. 13m")
    return int(match[1])


def parse_month(text: str) -> date:
    """``2025-01`` -> its first day."""
    period = parse_period(text)
    if period.start.day != 1 or period.end != add_months(period.start, 1):
        raise RetentionError(f"--month {text!r}: expected a month, YYYY-MM")
    return period.start


def first_kept(today: date, keep: int) -> date:
    """The oldest month the window keeps: ``keep`` whole months before today's."""
    return add_months(month_of(today), -keep)


def month_closed(conn: sa.Connection, month: date) -> bool:
    """Whether ``month``'s figures are final, so its raw rows may go: it was closed with
    ``spendtrail close`` (docs/reports.md) and not reopened. The one place retention asks."""
    record = period_record(conn, f"{month:%Y-%m}")
    return record is not None and record.closed


@dataclass
class MonthTotals:
    month: date
    events: int = 0
    amount_pico: dict[str, int] = field(default_factory=dict)  # per currency

    def as_json(self) -> str:
        return json.dumps({"events": self.events, "amount_pico": self.amount_pico}, sort_keys=True)


def retire(
    engine: sa.Engine,
    keep: int,
    *,
    today: date,
    actor: str,
    month: date | None = None,
    dry_run: bool = False,
) -> list[MonthTotals]:
    """Retire every closed month before the window (or only ``month``); returns their totals.
    With ``dry_run``, checks them the same way and drops nothing."""
    if engine.dialect.name != "postgresql":
        raise RetentionError(
            "retention drops monthly partitions, which only a PostgreSQL ledger has; this "
            "SQLite ledger is not partitioned and keeps every event"
        )
    kept = first_kept(today, keep)
    with engine.connect() as conn:
        retired = retired_month_set(conn)
        candidates = (partition_months(conn) | default_months(conn)) - retired
        if month is not None:
            candidates = {_check_asked(conn, month, kept, retired, candidates)}
        candidates = {m for m in candidates if m < kept and month_closed(conn, m)}
    done = []
    for old in sorted(candidates):
        with engine.begin() as conn:
            totals = check_rollups(conn, old)
            if not dry_run:
                _drop(conn, old)
                conn.execute(
                    retired_months.insert().values(
                        month=old,
                        retired_at=datetime.now(UTC),
                        retired_by=actor,
                        keep=f"{keep}m",
                        events=totals.events,
                        totals=totals.as_json(),
                    )
                )
                record_change(
                    conn,
                    actor=actor,
                    action="retire",
                    object_type="month",
                    object_id=f"{old:%Y-%m}",
                    after=json.loads(totals.as_json()),
                    reason=f"retention --keep {keep}m",
                )
        done.append(totals)
    return done


def _check_asked(
    conn: sa.Connection, month: date, kept: date, retired: set[date], candidates: set[date]
) -> date:
    month = month_of(month)
    label = f"{month:%Y-%m}"
    if month >= kept:
        raise RetentionError(
            f"{label} is inside the keep window (months from {kept:%Y-%m} are kept); "
            "retention only drops older months"
        )
    if not month_closed(conn, month):
        raise RetentionError(f"{label} is not closed; retention only drops closed months")
    if month in retired:
        raise RetentionError(f"{label} was already retired")
    if month not in candidates:
        raise RetentionError(f"{label} has no rows in the ledger")
    return month


def require_raw_rows(conn: sa.Connection, period: Period, what: str) -> None:
    """Refuse ``what``, which reads events one by one, for a period reaching into a retired
    month: without the month's events its answer would be wrong, not merely empty."""
    gone = sorted(
        m for m in retired_month_set(conn) if m < period.end and period.start < add_months(m, 1)
    )
    if gone:
        months = ", ".join(f"{m:%Y-%m}" for m in gone)
        raise RetentionError(
            f"{what} reads the events of {period.label}, and retention dropped those of "
            f"{months}; statements, cost reports and coverage still hold the month (rollups)"
        )


def check_rollups(conn: sa.Connection, month: date) -> MonthTotals:
    """The month's totals, after checking its daily rollups against its raw rows."""
    end = add_months(month, 1)
    span = {"start": month, "end": end}
    raw_events = dict(
        conn.execute(
            sa.text(
                "SELECT day, count(*) FROM events WHERE day >= :start AND day < :end GROUP BY day"
            ),
            span,
        ).all()
    )
    raw_costs = {
        (day, currency): (count, int(amount))
        for day, currency, count, amount in conn.execute(
            sa.text(
                "SELECT day, currency, count(*), sum(amount) FROM ("
                " SELECT DISTINCT ON (event_id) day, COALESCE(currency, '') AS currency,"
                "  COALESCE(amount_pico, 0) AS amount FROM cost_entries"
                " WHERE day >= :start AND day < :end ORDER BY event_id, revision DESC) AS current"
                " GROUP BY day, currency"
            ),
            span,
        ).all()
    }
    rolled = {
        (day, currency): (int(count), int(amount))
        for day, currency, count, amount in conn.execute(
            sa.text(
                "SELECT day, currency, sum(events), sum(amount_pico) FROM rollups_daily "
                "WHERE day >= :start AND day < :end GROUP BY day, currency HAVING sum(events) <> 0"
            ),
            span,
        ).all()
    }
    rolled_events: dict[date, int] = {}
    for (day, _), (count, _) in rolled.items():
        rolled_events[day] = rolled_events.get(day, 0) + count
    for label, raw, roll in (
        ("events per day", raw_events, rolled_events),
        ("cost per day and currency", raw_costs, rolled),
    ):
        if raw != roll:
            key = min(k for k in raw.keys() | roll.keys() if raw.get(k) != roll.get(k))
            raise RetentionError(
                f"{month:%Y-%m}: the daily rollups do not match the raw rows ({label}, at "
                f"{key}: rollups {roll.get(key)}, raw {raw.get(key)}); nothing was dropped"
            )
    totals = MonthTotals(month, sum(raw_events.values()))
    for (_, currency), (_, amount) in sorted(raw_costs.items(), key=lambda kv: kv[0][1]):
        if currency:
            totals.amount_pico[currency] = totals.amount_pico.get(currency, 0) + amount
    return totals


def _drop(conn: sa.Connection, month: date) -> None:
    create_months(conn, [month])  # rows still in the default partition get their own first
    end = add_months(month, 1)
    for table in PARTITIONED:
        name = partition_name(table, month)
        conn.exec_driver_sql(f"DROP TABLE {name}")
        conn.exec_driver_sql(
            f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{month}') TO ('{end}')"
        )
        conn.exec_driver_sql(f"ALTER TABLE {name} ADD CONSTRAINT retired CHECK (false)")
