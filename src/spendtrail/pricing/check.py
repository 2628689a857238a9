"""Review check: prices nobody has checked lately (the ledger's unpriced models are
``spendtrail.ledger.prices.unpriced_models``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from spendtrail.pricing.catalog import Catalog
from spendtrail.pricing.model import PriceEntry

DEFAULT_CADENCE_DAYS = 30


@dataclass(frozen=True, slots=True)
class StalePrice:
    entry: PriceEntry
    age_days: int  # days between checked_at and the as-of date


def stale_prices(
    catalog: Catalog, as_of: date, cadence_days: int = DEFAULT_CADENCE_DAYS
) -> list[StalePrice]:
    """Entries still in effect on or after `as_of` whose checked_at is older than the cadence.

    A window that closed before `as_of` is history: it priced what it priced and needs no
    re-check, so it is not flagged.
    """
    start_of_day = datetime.combine(as_of, time(), UTC)
    oldest_fresh = as_of - timedelta(days=cadence_days)
    stale = [
        StalePrice(entry, (as_of - entry.checked_at).days)
        for entry in catalog.entries
        if entry.checked_at < oldest_fresh
        and (entry.effective_to is None or entry.effective_to > start_of_day)
    ]
    return sorted(stale, key=lambda s: (-s.age_days, s.entry.provider, s.entry.id))
