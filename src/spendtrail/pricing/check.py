"""Review checks: prices nobody has checked lately, and models the ledger saw without a price."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from spendtrail.ledger.schema import rollups_daily
from spendtrail.periods import Period
from spendtrail.pricing.catalog import Catalog
from spendtrail.pricing.model import PriceEntry

DEFAULT_CADENCE_DAYS = 30


@dataclass(frozen=True, slots=True)
class StalePrice:
    entry: PriceEntry
    age_days: int  # days between checked_at and the as-of date


@dataclass(frozen=True, slots=True)
class UnpricedModel:
    provider: str
    model: str  # "" when the events named no model
    unpriced_events: int  # events priced "unpriced" or "incomplete"
    first_day: date
    last_day: date


def stale_prices(
    source: sa.Connection | Catalog, as_of: date, cadence_days: int = DEFAULT_CADENCE_DAYS
) -> list[StalePrice]:
    """Entries still in effect on or after `as_of` whose checked_at is older than the cadence.

    A window that closed before `as_of` is history: it priced what it priced and needs no
    re-check, so it is not flagged.
    """
    catalog = source if isinstance(source, Catalog) else Catalog.load(source)
    start_of_day = datetime.combine(as_of, time(), UTC)
    oldest_fresh = as_of - timedelta(days=cadence_days)
    stale = [
        StalePrice(entry, (as_of - entry.checked_at).days)
        for entry in catalog.entries
        if entry.checked_at < oldest_fresh
        and (entry.effective_to is None or entry.effective_to > start_of_day)
    ]
    return sorted(stale, key=lambda s: (-s.age_days, s.entry.provider, s.entry.id))


def unpriced_models(conn: sa.Connection, period: Period | None = None) -> list[UnpricedModel]:
    """(provider, model) pairs with unpriced or incomplete events, from the daily rollups."""
    r = rollups_daily.c
    query = (
        sa.select(r.provider, r.model, sa.func.sum(r.unpriced_events), sa.func.min(r.day),
                  sa.func.max(r.day))
        .where(r.unpriced_events > 0)
        .group_by(r.provider, r.model)
    )
    if period is not None:
        query = query.where(r.day >= period.start, r.day < period.end)
    rows = [UnpricedModel(p, m, int(n), first, last)
            for p, m, n, first, last in conn.execute(query)]
    return sorted(rows, key=lambda u: (-u.unpriced_events, u.provider, u.model))
