"""One event's cost as the ledger stores it, and its share of the daily rollups: the rule
both ingest (first cost entry) and repricing (later revisions) apply."""

from __future__ import annotations

import msgspec
import sqlalchemy as sa

from spendtrail.events.model import Usage
from spendtrail.ledger.schema import cost_entries
from spendtrail.periods import Period
from spendtrail.pricing import INCOMPLETE, PriceEntry, price_usage

COST_UNPRICED = "unpriced"
COST_NO_USAGE = "no_usage"  # nothing was metered, so nothing can cost anything
UNPRICED_STATUSES = (COST_UNPRICED, INCOMPLETE)  # counted in the rollups' unpriced_events


class Cost(msgspec.Struct, frozen=True):
    """One event's cost, as a cost entry stores it (amount None when unpriced). A frozen
    Struct, built in C: one for every event ingested or repriced."""

    status: str
    price_entry_id: str | None
    currency: str | None
    amount_pico: int | None
    breakdown: dict[str, int]
    flags: tuple[str, ...]

    @property
    def unpriced(self) -> bool:
        return self.status in UNPRICED_STATUSES


def cost_of(
    usage: Usage, entry: PriceEntry | None, *, usage_known: bool = True,
    service_tier: str | None = None,
) -> Cost:
    """Usage unknown (an interrupted attempt) -> unpriced; nothing metered -> no_usage; no
    price entry -> unpriced (never 0); else priced (`service_tier` is the event's)."""
    if not usage_known:
        return Cost(COST_UNPRICED, None, None, None, {}, ("usage_unknown",))
    if not any(msgspec.structs.astuple(usage)):
        return Cost(COST_NO_USAGE, entry.id if entry else None, None, 0, {}, ())
    if entry is None:
        return Cost(COST_UNPRICED, None, None, None, {}, ("no_price_entry",))
    cost = price_usage(usage, entry, service_tier=service_tier)
    return Cost(cost.status, entry.id, cost.currency, cost.total_pico, cost.per_meter_pico,
                cost.flags)


def rollup_measures(success: bool, usage: Usage, cost: Cost) -> tuple[int, ...]:
    """One event's rollup measures, in the order of schema.ROLLUP_MEASURES."""
    return (1, int(success), int(cost.unpriced), usage.input_tokens, usage.cached_input_tokens,
            usage.cache_write_tokens, usage.output_tokens, usage.reasoning_tokens,
            usage.requests, usage.images, cost.amount_pico or 0)


def is_current(
    entries: sa.FromClause = cost_entries, period: Period | None = None
) -> sa.ColumnElement[bool]:
    """True for the cost entry no later revision of its event supersedes: repricing adds
    revisions, and every reader takes the newest. `entries` may be an alias. A reader of the
    entries of one `period` names it: every revision carries its event's day, so only the
    period's days are searched (PostgreSQL otherwise hashes every revision of the month)."""
    newer = cost_entries.alias("newer")
    condition = sa.and_(newer.c.event_id == entries.c.event_id,
                        newer.c.revision > entries.c.revision)
    if period is not None:
        condition = sa.and_(condition, in_days(newer, period))
    return ~sa.exists().where(condition)


def has_revisions(conn: sa.Connection, period: Period) -> bool:
    """Whether any event of `period` was repriced (has a cost entry above revision 1)."""
    c = cost_entries.c
    return conn.execute(sa.select(sa.exists().where(
        c.revision > 1, in_days(cost_entries, period)))).scalar_one()


def in_days(entries: sa.FromClause, period: Period) -> sa.ColumnElement[bool]:
    """The rows of `period`, by the day they carry: the cost entries of its events, or the
    events themselves."""
    return sa.and_(entries.c.day >= period.start, entries.c.day < period.end)
