"""Repricing: recompute a period's costs under the current price catalog.

Old cost entries are never updated or deleted: an event whose cost changes gets a new entry
with the next revision, and readers take the highest revision as current. The daily rollups
move by the difference in the same transaction, per batch of events, so reports stay equal
to the sum of current cost entries. Currency is a rollup dimension, so a changed event's
whole rollup contribution (events, tokens, amount) leaves its old row and joins the new one.
A second run finds nothing to change; a run stopped halfway is finished by the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import sqlalchemy as sa

from spendtrail.errors import SpendtrailError
from spendtrail.events.model import INTERRUPTED, OWNER_FIELDS, Usage
from spendtrail.ledger.audit import record_change
from spendtrail.ledger.costs import Cost, cost_of, rollup_measures
from spendtrail.ledger.db import as_utc
from spendtrail.ledger.ingest import (
    COST_COLUMNS,
    PRICES_USED_INSERT,
    ROLLUP_UPSERT,
    PostgresWriter,
    SqliteWriter,
    insert_sql,
    sum_rollups,
)
from spendtrail.ledger.prices import load_catalog
from spendtrail.ledger.retention import require_raw_rows
from spendtrail.ledger.schema import cost_entries, events
from spendtrail.money import from_pico
from spendtrail.periods import Period
from spendtrail.pricing import Catalog

_usage = msgspec.json.Decoder(Usage)
_breakdown = msgspec.json.Decoder(dict[str, int])
_json = msgspec.json.Encoder()


@dataclass
class OwnerDiff:
    """The changed events of one owner (application) in one currency, before and after.
    An event whose currency changes counts its old amount in the old currency's row and its
    new amount (and its counts) in the new one's."""

    application: str
    currency: str  # '' for unpriced
    changed: int = 0
    newly_priced: int = 0
    newly_unpriced: int = 0
    before_pico: int = 0
    after_pico: int = 0

    def as_row(self) -> dict[str, object]:
        return {
            "application": self.application, "currency": self.currency,
            "changed": self.changed, "newly_priced": self.newly_priced,
            "newly_unpriced": self.newly_unpriced, "before": from_pico(self.before_pico),
            "after": from_pico(self.after_pico),
            "difference": from_pico(self.after_pico - self.before_pico),
        }


@dataclass
class RepriceResult:
    period: Period
    dry_run: bool
    examined: int = 0
    changed: int = 0
    newly_priced: int = 0
    newly_unpriced: int = 0
    owners: dict[tuple[str, str], OwnerDiff] = field(default_factory=dict)

    def owner_rows(self) -> list[dict[str, object]]:
        return [self.owners[key].as_row() for key in sorted(self.owners)]

    def counts(self) -> dict[str, int]:
        return {"examined": self.examined, "changed": self.changed,
                "newly_priced": self.newly_priced, "newly_unpriced": self.newly_unpriced}

    def _owner(self, application: str, currency: str | None) -> OwnerDiff:
        key = (application, currency or "")
        found = self.owners.get(key)
        if found is None:
            found = self.owners[key] = OwnerDiff(*key)
        return found

    def add_change(self, application: str, old: Cost, new: Cost) -> None:
        self.changed += 1
        newly_priced = old.unpriced and not new.unpriced
        newly_unpriced = new.unpriced and not old.unpriced
        self.newly_priced += newly_priced
        self.newly_unpriced += newly_unpriced
        if old.currency is not None:  # an unpriced cost had no amount to show as "before"
            self._owner(application, old.currency).before_pico += old.amount_pico or 0
        after = self._owner(application, new.currency or old.currency)
        after.after_pico += new.amount_pico or 0
        after.changed += 1
        after.newly_priced += newly_priced
        after.newly_unpriced += newly_unpriced


@dataclass(slots=True)
class _Delta:
    """A rollup row's change, in the shape ingest's `sum_rollups` sums."""

    rollup_key: tuple
    rollup_values: tuple




def reprice(
    engine: sa.Engine,
    period: Period,
    *,
    actor: str,
    reason: str = "",
    dry_run: bool = False,
    batch_size: int = 5_000,
    on_progress: Callable[[int], None] | None = None,
) -> RepriceResult:
    """Reprice every event of `period` (UTC days) at its own time with the current catalog.
    Writes a new cost entry for each event whose cost changed, moves the rollups, and
    records the run in the audit log; with `dry_run`, computes the same result and writes
    nothing. `on_progress` receives the number of events examined per batch."""
    result = RepriceResult(period, dry_run)
    with engine.connect() as conn:
        require_raw_rows(conn, period, "repricing")
    writer = SqliteWriter() if engine.dialect.name == "sqlite" else PostgresWriter()
    with engine.connect() as conn:
        catalog = load_catalog(conn)
    placeholder = "?" if engine.dialect.name == "sqlite" else "%s"
    after = ""
    while True:
        with engine.begin() as conn:
            rows = conn.execute(_batch_query(period, after, batch_size)).all()
            if not rows:
                break
            after = rows[-1].event_id
            entries, deltas, used = _reprice_batch(rows, catalog, writer, result)
            if entries and not dry_run:
                # The entry goes in before its rollup delta: if a concurrent run wrote the
                # same revision first, the unique key fails the batch before it counts twice.
                try:
                    conn.exec_driver_sql(
                        insert_sql("cost_entries", COST_COLUMNS, placeholder), entries)
                except sa.exc.IntegrityError:
                    raise SpendtrailError(
                        "another repricing changed these events while this one ran; nothing "
                        "of this batch was written, run it again") from None
                conn.exec_driver_sql(ROLLUP_UPSERT.replace("{p}", placeholder),
                                     sum_rollups(deltas))
                if used:
                    conn.exec_driver_sql(PRICES_USED_INSERT.replace("{p}", placeholder),
                                         sorted(used))
        result.examined += len(rows)
        if on_progress is not None:
            on_progress(len(rows))
    if not dry_run:
        with engine.begin() as conn:
            record_change(conn, actor=actor, action="reprice", object_type="reprice",
                          object_id=period.label, after=result.counts(), reason=reason)
    return result


def count_events(engine: sa.Engine, period: Period) -> int:
    """How many events `reprice` will examine (for a progress bar)."""
    e = events.c
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(events)
                            .where(e.day >= period.start, e.day < period.end)).scalar_one()


def _batch_query(period: Period, after: str, limit: int) -> sa.Select:
    """The next batch of the period's events (keyset on event_id: constant memory) with
    their current cost entry."""
    e, c = events.c, cost_entries.c
    newer = cost_entries.alias("newer")
    latest = (sa.select(sa.func.max(newer.c.revision))
              .where(newer.c.event_id == e.event_id).scalar_subquery())
    return (
        sa.select(e.event_id, e.started_at, e.day, e.provider, e.model_served,
                  e.model_requested, e.outcome, e.usage, e.service_tier, e.allocation_status,
                  *(e[name] for name in OWNER_FIELDS), c.revision, c.status,
                  c.price_entry_id, c.currency, c.amount_pico, c.breakdown, c.flags)
        .select_from(events.join(cost_entries, sa.and_(c.event_id == e.event_id,
                                                       c.revision == latest)))
        .where(e.day >= period.start, e.day < period.end, e.event_id > after)
        .order_by(e.event_id)
        .limit(limit)
    )


def _reprice_batch(
    rows: Iterable[sa.Row], catalog: Catalog, writer: SqliteWriter | PostgresWriter,
    result: RepriceResult,
) -> tuple[list[tuple], list[_Delta], set[tuple]]:
    now = writer.timestamp(datetime.now(UTC))
    entries: list[tuple] = []
    deltas: list[_Delta] = []
    used: set[tuple] = set()  # (day, provider, model, price entry) for prices_used_daily
    for row in rows:
        at = as_utc(row.started_at)  # the catalog insists on an offset
        model = row.model_served or row.model_requested
        usage = _usage.decode(row.usage)
        tier = row.service_tier
        new = cost_of(usage, catalog.lookup(row.provider, model, at, tier) if model else None,
                      usage_known=row.outcome != INTERRUPTED, service_tier=tier)
        old = Cost(row.status, row.price_entry_id, row.currency, row.amount_pico,
                   _breakdown.decode(row.breakdown), tuple(filter(None, row.flags.split(","))))
        if new == old:
            continue
        result.add_change(row.application or "", old, new)
        entries.append((row.event_id, row.revision + 1, new.status, new.price_entry_id,
                        new.currency, new.amount_pico, _json.encode(new.breakdown).decode(),
                        ",".join(new.flags), now, writer.day(row.day)))
        dims = (writer.day(row.day), row.provider, model or "",
                *((getattr(row, name) or "") for name in OWNER_FIELDS), row.allocation_status)
        if new.price_entry_id is not None:
            used.add((writer.day(row.day), row.provider, model or "", new.price_entry_id))
        success = row.outcome == "success"
        deltas.append(_Delta((*dims, old.currency or ""),
                             tuple(-v for v in rollup_measures(success, usage, old))))
        deltas.append(_Delta((*dims, new.currency or ""), rollup_measures(success, usage, new)))
    return entries, deltas, used


