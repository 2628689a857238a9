"""The price catalog with provenance and stale flags, and the models seen without a price
(in the user's scope)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa

from spendtrail.access.principal import Principal
from spendtrail.access.roles import Permission
from spendtrail.console.types import PriceItem, PricesView, UnpricedItem
from spendtrail.ledger.prices import load_catalog, unpriced_models
from spendtrail.money import plain_decimal
from spendtrail.periods import parse_period
from spendtrail.pricing import stale_prices
from spendtrail.pricing.check import DEFAULT_CADENCE_DAYS


def catalog(
    engine: sa.Engine,
    who: Principal,
    period: str | None = None,
    as_of: date | None = None,
    cadence_days: int = DEFAULT_CADENCE_DAYS,
) -> PricesView:
    who.require(Permission.read)
    day = as_of or datetime.now(UTC).date()
    chosen = None if period is None else parse_period(period)
    with engine.connect() as conn:
        found = load_catalog(conn)
        unpriced = unpriced_models(conn, chosen, scope=who.scope)
    stale = {s.entry.id for s in stale_prices(found, day, cadence_days)}
    entries = [
        PriceItem(
            id=e.id,
            provider=e.provider,
            model_match=e.model_match,
            match_kind=e.match_kind,
            kind=e.kind,
            currency=e.currency,
            prices={m: plain_decimal(p) for m, p in e.prices.items()},
            effective_from=e.effective_from,
            effective_to=e.effective_to,
            service_tier=e.service_tier,
            source_url=e.source_url,
            checked_at=e.checked_at,
            checked_by=e.checked_by,
            origin=e.origin,
            stale=e.id in stale,
            age_days=(day - e.checked_at).days,
        )
        for e in found.entries
    ]
    return PricesView(
        as_of=day,
        cadence_days=cadence_days,
        entries=entries,
        unpriced=[
            UnpricedItem(
                provider=u.provider,
                model=u.model,
                unpriced_events=u.unpriced_events,
                first_day=u.first_day,
                last_day=u.last_day,
            )
            for u in unpriced
        ],
    )
