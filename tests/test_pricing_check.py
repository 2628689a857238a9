"""Review checks: stale prices by cadence, and models the ledger saw without a price."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa

from spendtrail.ledger.prices import add_entries, load_catalog, unpriced_models
from spendtrail.ledger.schema import rollups_daily
from spendtrail.periods import parse_period
from spendtrail.pricing import Catalog, PriceEntry, stale_prices


def entry(model: str, checked_at: date, **fields) -> PriceEntry:
    return PriceEntry(
        provider="cometapi", model_match=model, kind="contracted",
        prices={"input_tokens": "1"}, source_url="https://api.cometapi.com/pricing",
        checked_at=checked_at, checked_by="ana", origin="test", **fields,
    )


def test_prices_older_than_the_cadence_are_stale():
    catalog = Catalog([
        entry("fresh", date(2026, 11, 1)),
        entry("edge", date(2026, 10, 2)),  # exactly 30 days before: still fresh
        entry("old", date(2026, 10, 1)),
        entry("older", date(2026, 6, 1)),
    ])
    stale = stale_prices(catalog, date(2026, 11, 1))
    assert [(s.entry.model_match, s.age_days) for s in stale] == [("older", 153), ("old", 31)]
    assert [s.entry.model_match for s in stale_prices(catalog, date(2026, 11, 1), 7)] == [
        "older", "old", "edge"]


def test_closed_windows_are_history_not_stale():
    catalog = Catalog([
        entry("closed", date(2025, 1, 1), effective_to=datetime(2026, 1, 1, tzinfo=UTC)),
        entry("closes-later", date(2025, 1, 1), effective_to=datetime(2026, 12, 1, tzinfo=UTC)),
        entry("future", date(2025, 1, 1), effective_from=datetime(2027, 1, 1, tzinfo=UTC)),
    ])
    stale = stale_prices(catalog, date(2026, 11, 1))
    assert sorted(s.entry.model_match for s in stale) == ["closes-later", "future"]


def test_stale_prices_of_the_stored_catalog(ledger):
    with ledger.begin() as conn:
        add_entries(conn, [entry("old", date(2026, 1, 1)), entry("new", date(2026, 11, 1))],
                    actor="ana")
    with ledger.connect() as conn:
        catalog = load_catalog(conn)
    assert [s.entry.model_match for s in stale_prices(catalog, date(2026, 11, 20))] == ["old"]


def rollup(day: str, provider: str, model: str, unpriced: int, **dims) -> dict:
    return {"day": date.fromisoformat(day), "provider": provider, "model": model,
            "events": unpriced + 1, "unpriced_events": unpriced, **dims}


def test_unpriced_models_come_from_the_rollups(ledger):
    with ledger.begin() as conn:
        conn.execute(rollups_daily.insert(), [
            rollup("2026-10-30", "cometapi", "mystery-1", 3),
            rollup("2026-11-02", "cometapi", "mystery-1", 4, application="bot"),
            rollup("2026-11-03", "cometapi", "gpt-4o", 0),
            rollup("2026-11-05", "openai", "", 1),
            rollup("2026-11-06", "cometapi", "dall-e-3", 2),
        ])
    with ledger.connect() as conn:
        everything = unpriced_models(conn)
        november = unpriced_models(conn, parse_period("2026-11"))
        total = conn.execute(sa.select(sa.func.count()).select_from(rollups_daily)).scalar()
    assert total == 5
    assert [(u.provider, u.model, u.unpriced_events, u.first_day, u.last_day)
            for u in everything] == [
        ("cometapi", "mystery-1", 7, date(2026, 10, 30), date(2026, 11, 2)),
        ("cometapi", "dall-e-3", 2, date(2026, 11, 6), date(2026, 11, 6)),
        ("openai", "", 1, date(2026, 11, 5), date(2026, 11, 5)),
    ]
    assert [(u.model, u.unpriced_events) for u in november] == [
        ("mystery-1", 4), ("dall-e-3", 2), ("", 1)]
