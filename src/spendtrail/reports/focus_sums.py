"""The FOCUS export's pass over a period's events: each event's current cost entry (highest
revision) split into its priced meters and summed by row key (``RowKey``). The query is
streamed, so memory grows with row keys (days x groups), never with events.

A large period is read by worker processes, one range of days each, under one snapshot of
the ledger: a row key holds its day, so their sums never meet, and the export is the same
byte for byte however it was read. A worker is spawned, not forked: the caller may be a
server with threads.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec
import sqlalchemy as sa

from spendtrail.errors import SpendtrailError
from spendtrail.events.model import OWNER_FIELDS, Usage
from spendtrail.ledger.costs import has_revisions, in_days, is_current
from spendtrail.ledger.db import as_utc, make_engine
from spendtrail.ledger.schema import cost_entries, events, reallocations, rollups_daily
from spendtrail.periods import Period
from spendtrail.pricing import Catalog, PriceEntry

# Context tags the registry rejected (by reason code) are never written as tags.
REJECTED_BY = {
    "environment": ("unknown_environment", "environment_not_allowed", "missing_environment"),
    "workload_class": ("unknown_workload_class", "workload_not_allowed",
                       "missing_workload_class"),
}
PRICED_STATUSES = ("priced", "incomplete")
_HALF_PICO = Decimal("0.5")
# Below this many events in the period, one process reads them sooner than workers start.
PARALLEL_FROM = 300_000


class FocusExportError(SpendtrailError):
    """The ledger holds something the export cannot state exactly; the message says what."""


class RowKey(NamedTuple):
    """What makes one FOCUS row: a unit price is constant within it, so price x quantity
    stays exact after summing."""

    day: date
    provider: str
    model: str
    owner: tuple[str, ...]  # OWNER_FIELDS, '' for unset or rejected
    allocation_status: str  # allocated, shared, quarantined or reassigned
    claimed: tuple[str, ...]  # OWNER_FIELDS as captured, for quarantined and reassigned
    entry_id: str
    meter: str
    unit_pico: int
    tier: int
    list_entry_id: str
    list_unit_pico: int


@dataclass(slots=True)
class Sum:
    quantity: Decimal | int = 0
    cost_pico: int = 0
    events: int = 0


@dataclass
class EventCounts:
    """The events read, by what became of them (the export's summary prints these)."""

    events: int = 0
    exported_events: int = 0  # events with at least one priced meter in the rows
    unpriced_events: int = 0  # no price entry: in no row
    incomplete_events: int = 0  # partly priced: priced meters exported, the rest in no row
    no_usage_events: int = 0  # nothing metered, nothing to charge
    unpriced_models: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, other: EventCounts) -> None:
        self.events += other.events
        self.exported_events += other.exported_events
        self.unpriced_events += other.unpriced_events
        self.incomplete_events += other.incomplete_events
        self.no_usage_events += other.no_usage_events
        self.unpriced_models.update(other.unpriced_models)


def event_sums(
    conn: sa.Connection, period: Period, catalog: Catalog, *, workers: int | None = None,
    parallel_from: int | None = None,
) -> tuple[dict[RowKey, Sum], EventCounts]:
    """The period's events summed by row key, and their counts. With ``parallel_from``
    events or more (default ``PARALLEL_FROM``) and a ledger other processes can open,
    ``workers`` processes (default: one per core) read a range of days each."""
    ranges = day_ranges(conn, period, workers or os.cpu_count() or 1,
                        PARALLEL_FROM if parallel_from is None else parallel_from)
    url = _shared_url(conn)
    if len(ranges) < 2 or url is None:
        return _sums(conn, period, catalog)
    snapshot = _snapshot_id(conn)
    jobs = [(url, snapshot, days, catalog) for days in ranges]
    sums: dict[RowKey, Sum] = {}
    counts = EventCounts()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(jobs), mp_context=context) as pool:
        for part, part_counts in pool.map(_sums_in_worker, jobs):
            sums.update(part)  # disjoint: a key holds its day
            counts.add(part_counts)
    return sums, counts


def day_ranges(conn: sa.Connection, period: Period, workers: int, parallel_from: int
                ) -> list[Period]:
    """The period cut into at most ``workers`` ranges of whole days holding about as many
    events each (counted in the daily rollups); the whole period when it is small."""
    r = rollups_daily.c
    per_day = conn.execute(
        sa.select(r.day, sa.func.sum(r.events)).where(r.day >= period.start, r.day < period.end)
        .group_by(r.day).order_by(r.day)
    ).all()
    total = sum(count for _, count in per_day)
    if workers < 2 or total < parallel_from:
        return [period]
    ranges, start, seen = [], period.start, 0
    for day, count in per_day:
        seen += count
        if seen >= total * (len(ranges) + 1) / workers and len(ranges) < workers - 1:
            end = day + timedelta(days=1)
            ranges.append(Period(start, end, f"{start}..{end}"))
            start = end
    ranges.append(Period(start, period.end, f"{start}..{period.end}"))
    return [days for days in ranges if days.start < days.end]


def _shared_url(conn: sa.Connection) -> str | None:
    """The ledger's URL for a worker to open (password included: it goes down a pipe to
    the worker, never to a log); None for a ledger only this process can see."""
    url = conn.engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    return url.render_as_string(hide_password=False)


def _snapshot_id(conn: sa.Connection) -> str | None:
    """PostgreSQL: a snapshot of this transaction, exported for every worker to read the
    same ledger. SQLite: None; a worker reads the last commit. In a close that is the events
    as the close sees them (its writes hold every other writer off); in an export, what the
    ledger held when the worker began, as with each of the export's own statements."""
    if conn.dialect.name != "postgresql":
        return None
    return conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()


def _sums_in_worker(job: tuple[str, str | None, Period, Catalog]
                    ) -> tuple[dict[RowKey, Sum], EventCounts]:
    url, snapshot, days, catalog = job
    engine = make_engine(url)
    try:
        if snapshot is None:
            with engine.connect() as conn:
                return _sums(conn, days, catalog)
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            # One snapshot for both statements, so no repricing can come between them.
            return _sums(conn, days, catalog, repriced=has_revisions(conn, days))
    finally:
        engine.dispose()


def _sums(conn: sa.Connection, period: Period, catalog: Catalog, *, repriced: bool = True
          ) -> tuple[dict[RowKey, Sum], EventCounts]:
    entries = {entry.id: entry for entry in catalog.entries}
    counts = EventCounts()
    reader = _Reader(conn.dialect, catalog)
    query = _current_costs(period, repriced=repriced, times=_starts_within_days(catalog, period))
    for batch in _batches(conn, query):
        for row in batch:
            counts.events += 1
            status = row[5]
            if status not in PRICED_STATUSES:
                if status == "no_usage":
                    counts.no_usage_events += 1
                else:  # unpriced, or an event without any cost entry
                    counts.unpriced_events += 1
                    counts.unpriced_models[(row[3], row[4] or "")] += 1
                continue
            if status == "incomplete":
                counts.incomplete_events += 1
                counts.unpriced_models[(row[3], row[4])] += 1
            entry = entries.get(row[6])
            if entry is None:
                raise FocusExportError(
                    f"cost entry of event {row[0]} names price entry "
                    f"{row[6]!r}, which is not in the catalog"
                )
            reader.add(row, entry)
            counts.exported_events += 1
    return reader.row_keys(), counts


def _batches(conn: sa.Connection, query: sa.Select, size: int = 5000) -> Iterator[list[Any]]:
    """The query's rows, streamed in batches straight from the driver: SQLAlchemy's result
    rows cost a sixth of the pass, and these columns need none of its conversions (the day
    and start time are converted by ``_Reader``). PostgreSQL streams through a server-side
    cursor, in the connection's transaction (and snapshot); SQLite's cursor streams as it
    is. The query's only parameters are the period's dates, so they are written into it."""
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    driver = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        # Every row is read: plan for all of them, not for the first tenth (the default
        # for a cursor), which picked a slower join; and give the join's hash table room,
        # so fewer batches spill to disk (4 MB: 64 batches for a week of 10M a month).
        conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1")
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        cursor = driver.cursor(name="focus_pass")
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(size):
            yield rows
    finally:
        cursor.close()


def _starts_within_days(catalog: Catalog, period: Period) -> bool:
    """Whether a price entry starts or ends within one of the period's days (not at its
    midnight): only then can an event's start time decide its list price
    (``_Reader.listed``)."""
    start = datetime.combine(period.start, time(), UTC)
    end = datetime.combine(period.end, time(), UTC)
    return any(edge.astimezone(UTC).time() != time()
               for edge in _edges_within(catalog.entries, start, end))


def _edges_within(entries: Iterable[PriceEntry], start: datetime, end: datetime
                  ) -> list[datetime]:
    """Where any of ``entries`` starts or ends strictly between ``start`` and ``end``."""
    return [edge for entry in entries for edge in (entry.effective_from, entry.effective_to)
            if edge is not None and start < edge < end]


def _current_costs(period: Period, *, repriced: bool = True, times: bool = True) -> sa.Select:
    """Each event of the period with its current cost entry (none: an outer-join null), the
    owner columns last. The day and start time come as the driver gives them (``_Reader``
    converts them: a start time only when a list price changes within its day);
    ``times=False`` selects a null start time, for a period in which none does (reading
    and converting a timestamp costs a quarter of PostgreSQL's rows).
    ``repriced=False`` is for a snapshot in which no event of the period has a second
    revision: its only entry is the current one, and no newer one is searched for."""
    e, c, m = events.c, cost_entries.c, reallocations.c
    current = sa.and_(c.event_id == e.event_id, in_days(cost_entries, period))
    if repriced:
        current = sa.and_(current, is_current(cost_entries, period))
    return (
        sa.select(
            e.event_id, e.day, e.started_at if times else sa.null(),
            e.provider, sa.func.coalesce(e.model_served, e.model_requested).label("model"),
            c.status, c.price_entry_id, e.usage, c.breakdown,
            *(e[name] for name in OWNER_FIELDS), e.allocation_status, e.allocation_reasons,
            m.to_application, m.to_business_unit, m.to_cost_center, m.to_budget_owner,
        )
        .select_from(events.outerjoin(cost_entries, current)
                     .outerjoin(reallocations, m.event_id == e.event_id))
        .where(e.day >= period.start, e.day < period.end)
    )


_OWNER_AT = 9  # where the owner columns start in a _current_costs row


def _owner(columns: tuple[Any, ...]) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    """(owner tags, allocation status, claim as captured) of a row's owner columns: a
    reassigned event's owner is the one it was assigned to; a quarantined one has none,
    since the registry rejected it."""
    *tags, status, reasons_text, to_application, to_business_unit, to_cost_center, \
        to_budget_owner = columns
    captured = tuple(value or "" for value in tags)
    if status != "quarantined":
        return captured, status, ()
    row = dict(zip(OWNER_FIELDS, tags, strict=True))
    reasons = set(reasons_text.split(","))
    context = {name: row[name] or "" for name in REJECTED_BY
               if not reasons.intersection(REJECTED_BY[name])}
    if to_application is None:
        owner = {**dict.fromkeys(OWNER_FIELDS, ""), **context}
        return tuple(owner[name] for name in OWNER_FIELDS), status, captured
    assigned = {"business_unit": to_business_unit, "application": to_application,
                "cost_center": to_cost_center, "budget_owner": to_budget_owner}
    owner = {**dict.fromkeys(OWNER_FIELDS, ""), **context, **assigned}
    return tuple(owner[name] for name in OWNER_FIELDS), "reassigned", captured


_usage = msgspec.json.Decoder(Usage)
_breakdown = msgspec.json.Decoder()  # as json.loads: {meter: pico-units}


class _Meter(NamedTuple):
    """How a price entry bills one meter: the quantity is the usage field less the parts
    billed on lines of their own (a parent's remainder), at ``unit_pico`` per unit."""

    field: str
    less: tuple[str, ...]
    unit_pico: int
    remainder: bool  # a parent's remainder is billed only when positive


_VARIES = object()  # ``_Reader.listed``: no one list entry is in effect all day
BASE_TIER = -1  # the entry's base prices, below every tier threshold
# parent meter -> its parts (meter, billed on its own line even without a price of its own)
_PARTS: tuple[tuple[str, tuple[tuple[str, bool], ...]], ...] = (
    ("input_tokens", (("cached_input_tokens", True), ("cache_write_tokens", True),
                      ("input_audio_tokens", True))),
    ("output_tokens", (("reasoning_tokens", False), ("output_audio_tokens", True))),
)


def _meters(prices: Mapping[str, int]) -> dict[str, _Meter]:
    """meter -> how it is billed at ``prices``, split as ``pricing.engine`` splits: a part
    with its own price is billed at it, one without at its parent's price."""
    meters: dict[str, _Meter] = {}
    for parent, parts in _PARTS:
        parent_price = prices.get(parent)
        own_lines = []
        for meter, own_line in parts:
            price = prices.get(meter)
            if price is None:
                if not own_line:
                    continue  # stays in the parent's count
                if parent_price is None:
                    own_lines.append(meter)  # billed nowhere, and not in the parent's count
                    continue
                price = parent_price
            meters[meter] = _Meter(meter, (), price, False)
            own_lines.append(meter)
        if parent_price is not None:
            meters[parent] = _Meter(parent, tuple(own_lines), parent_price, True)
    for meter in ("requests", "images", "seconds"):
        if meter in prices:
            meters[meter] = _Meter(meter, (), prices[meter], False)
    return meters


def _billed(meter: _Meter | None, usage: Usage) -> Decimal | int | None:
    """The quantity ``meter`` bills for ``usage``; None when it bills nothing."""
    if meter is None:
        return None
    quantity = getattr(usage, meter.field)
    for part in meter.less:
        quantity -= getattr(usage, part)
    if meter.remainder:
        return quantity if quantity > 0 else None
    return quantity or None


class _Group(NamedTuple):
    """What the events of one day, provider, model, price entry and owner columns share."""

    prefix: tuple[Any, ...]  # the row key's fields up to the meter (day ... entry_id)
    candidates: tuple[PriceEntry, ...]  # list entries that may price a contracted price
    listed: Any  # the list entry in effect all day (None: none), or _VARIES


class _Reader:
    """Adds events' meters to ``sums``; what many events share (a group's day, owner and
    list price, an entry's meters per tier, list-price candidates) is worked out once and
    kept. A sum's key is the group's index with the meter's fields: a flat tuple of ints
    and strings hashes quicker than a row key's nested one, once per meter of every event."""

    def __init__(self, dialect: sa.Dialect, catalog: Catalog) -> None:
        self.catalog = catalog
        self.sums: dict[tuple[Any, ...], list[Any]] = {}
        self.groups: dict[tuple[Any, ...], tuple[int, _Group]] = {}
        self.meters: dict[tuple[str, int], dict[str, _Meter]] = {}
        self.to_day = events.c.day.type.dialect_impl(dialect).result_processor(dialect, None)
        self.to_time = events.c.started_at.type.dialect_impl(dialect).result_processor(
            dialect, None)

    def row_keys(self) -> dict[RowKey, Sum]:
        """The sums under their full row keys (a group's prefix and the meter's fields)."""
        prefixes = [group.prefix for _, group in self.groups.values()]
        return {RowKey(*prefixes[index], *meter_fields): Sum(*total)
                for (index, *meter_fields), total in self.sums.items()}

    def tier(self, entry: PriceEntry, usage: Usage) -> tuple[dict[str, _Meter], int]:
        """The engine's tier choice (``PriceEntry.tier_prices``) and its meters."""
        threshold, prices = entry.tier_prices(usage.input_tokens)
        tier = BASE_TIER if threshold is None else threshold
        meters = self.meters.get((entry.id, tier))
        if meters is None:
            meters = self.meters[entry.id, tier] = _meters(prices)
        return meters, tier

    def group(self, row: Any, entry: PriceEntry) -> tuple[int, _Group]:
        key = (row[1], row[3], row[4], entry.id, row[_OWNER_AT:])
        found = self.groups.get(key)
        if found is None:
            raw_day, provider, model = key[:3]
            day = raw_day if self.to_day is None else self.to_day(raw_day)
            owner, status, claimed = _owner(key[4])
            candidates = self.list_entries(entry, provider, model)
            listed = self.listed(day, candidates) if candidates else None
            found = self.groups[key] = (len(self.groups), _Group(
                (day, provider, model, owner, status, claimed, entry.id), candidates, listed))
        return found

    def list_entries(self, entry: PriceEntry, provider: str, model: str
                     ) -> tuple[PriceEntry, ...]:
        """For a contracted price, the list entries that may price the same provider and
        model (which one: the one in effect at the event's start)."""
        if entry.kind == "list":
            return ()
        return tuple(c for c in self.catalog.candidates(provider, model) if c.kind == "list")

    @staticmethod
    def listed(day: date, candidates: tuple[PriceEntry, ...]) -> Any:
        """The list entry in effect all through ``day`` (None: none is), or ``_VARIES`` when
        a candidate starts or ends within the day: then each event's start time decides."""
        start = datetime.combine(day, time(), UTC)
        if _edges_within(candidates, start, start + timedelta(days=1)):
            return _VARIES
        return next((c for c in candidates if c.in_effect(start)), None)

    def add(self, row: Any, entry: PriceEntry) -> None:
        usage = _usage.decode(row[7])
        breakdown: dict[str, int] = _breakdown.decode(row[8])
        meters, tier = self.tier(entry, usage)
        index, group = self.group(row, entry)
        list_entry = group.listed
        if list_entry is _VARIES:
            started_at = row[2]
            at = as_utc(started_at if self.to_time is None else self.to_time(started_at))
            list_entry = next((c for c in group.candidates if c.in_effect(at)), None)
        list_meters = self.tier(list_entry, usage)[0] if list_entry is not None else {}
        for meter, cost in breakdown.items():
            billing = meters.get(meter)
            quantity = _billed(billing, usage)
            if quantity is None:
                raise FocusExportError(
                    f"event {row[0]}: its cost names meter {meter}, which price entry "
                    f"{entry.id} does not price for its usage"
                )
            unit_pico = billing.unit_pico
            exact = quantity * unit_pico
            # Only a fractional seconds meter is rounded (half-even, to a pico-unit; flagged
            # by the engine); every other meter's cost is the exact product.
            if abs(exact - cost) > (_HALF_PICO if meter == "seconds" else 0):
                raise FocusExportError(
                    f"event {row[0]}: {meter} costs {cost} pico-units in the ledger but "
                    f"{exact} at entry {entry.id}'s price; reprice before exporting"
                )
            list_id, list_pico = entry.id, unit_pico
            if list_entry is not None:
                listed = list_meters.get(meter)
                if _billed(listed, usage) is not None:
                    list_id, list_pico = list_entry.id, listed.unit_pico
            key = (index, meter, unit_pico, tier, list_id, list_pico)
            total = self.sums.get(key)
            if total is None:
                self.sums[key] = [quantity, cost, 1]
            else:
                total[0] += quantity
                total[1] += cost
                total[2] += 1
