"""Catalog lookup precedence and windows; storage, conflicts and audit rows on both backends."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from spendtrail.ledger.prices import add_entries, load_catalog, load_entries
from spendtrail.ledger.schema import audit_log
from spendtrail.pricing import Catalog, PriceEntry, PricingError, Tier


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def entry(model: str, price: str, **fields) -> PriceEntry:
    return PriceEntry(**{
        "provider": "cometapi", "kind": "list", "source_url": "https://api.cometapi.com/pricing",
        "checked_at": date(2026, 10, 1), "checked_by": "ana", "origin": "test",
        "model_match": model, "prices": {"input_tokens": price}, **fields,
    })


def price_of(catalog: Catalog, model: str, when: str, provider: str = "cometapi"):
    found = catalog.lookup(provider, model, at(when))
    return None if found is None else found.prices["input_tokens"]


def test_contracted_beats_list_even_when_less_specific():
    catalog = Catalog([
        entry("gpt-4o", "2.5"),
        entry("gpt-4o*", "2", match_kind="glob", kind="contracted"),
    ])
    assert price_of(catalog, "gpt-4o", "2026-01-01") == Decimal("2")


def test_exact_beats_pattern():
    catalog = Catalog([
        entry("gpt-4o*", "9", match_kind="glob"),
        entry("^gpt-4o", "8", match_kind="regex"),
        entry("gpt-4o-mini", "0.15"),
    ])
    assert price_of(catalog, "gpt-4o-mini", "2026-01-01") == Decimal("0.15")
    assert price_of(catalog, "GPT-4o-Mini", "2026-01-01") == Decimal("0.15")  # case-insensitive
    assert price_of(catalog, "gpt-4o-2024-08-06", "2026-01-01") is not None


def test_newer_effective_from_beats_older_among_equals():
    catalog = Catalog([
        entry("gpt-4o*", "3", match_kind="glob", effective_from=at("2025-01-01")),
        entry("gpt-*", "4", match_kind="glob", effective_from=at("2026-01-01")),
    ])
    assert price_of(catalog, "gpt-4o", "2025-06-01") == Decimal("3")
    assert price_of(catalog, "gpt-4o", "2026-06-01") == Decimal("4")


def test_equal_rank_patterns_resolve_the_same_way_every_time():
    a = entry("gpt-4o*", "1", match_kind="glob")
    b = entry("gpt-*", "2", match_kind="glob")
    assert price_of(Catalog([a, b]), "gpt-4o", "2026-01-01") == Decimal("1")  # more specific
    assert price_of(Catalog([b, a]), "gpt-4o", "2026-01-01") == Decimal("1")


def test_windows_are_half_open():
    catalog = Catalog([
        entry("m", "1", effective_from=at("2026-01-01"), effective_to=at("2026-02-01")),
        entry("m", "2", effective_from=at("2026-02-01")),
    ])
    assert price_of(catalog, "m", "2025-12-31T23:59:59") is None
    assert price_of(catalog, "m", "2026-01-01") == Decimal("1")
    assert price_of(catalog, "m", "2026-01-31T23:59:59.999999") == Decimal("1")
    assert price_of(catalog, "m", "2026-02-01") == Decimal("2")  # effective_to is exclusive


def test_a_contracted_price_only_wins_inside_its_window():
    catalog = Catalog([
        entry("m", "5"),
        entry("m", "4", kind="contracted", effective_from=at("2026-03-01"),
              effective_to=at("2026-04-01")),
    ])
    assert [price_of(catalog, "m", d) for d in ("2026-02-28", "2026-03-15", "2026-04-01")] == [
        Decimal(5), Decimal(4), Decimal(5)]


def test_no_match_is_unpriced_and_provider_matters():
    catalog = Catalog([entry("gpt-4o", "2.5", provider="openai")])
    assert catalog.lookup("cometapi", "gpt-4o", at("2026-01-01")) is None
    assert catalog.lookup("openai", "gpt-4o-mini", at("2026-01-01")) is None
    assert catalog.lookup("OpenAI", "gpt-4o", at("2026-01-01")) is not None


def test_glob_and_regex_semantics():
    glob = entry("claude-sonnet-4-[0-9]*", "3", match_kind="glob")
    regex = entry(r"^claude-opus-4-\d{8}$", "15", match_kind="regex")
    assert glob.matches("claude-sonnet-4-20250514") and not glob.matches("claude-sonnet-4")
    assert regex.matches("claude-opus-4-20250514") and not regex.matches("claude-opus-4-1")
    assert entry("opus", "1", match_kind="regex").matches("claude-opus-4")  # search, not full


def test_lookup_needs_an_aware_time():
    with pytest.raises(PricingError, match="must carry a UTC offset"):
        Catalog([]).lookup("openai", "gpt-4o", datetime(2026, 1, 1))


def test_candidates_are_cached_per_provider_and_model():
    catalog = Catalog([entry("gpt-*", "1", match_kind="glob")])
    first = catalog.candidates("cometapi", "gpt-4o")
    assert catalog.candidates("cometapi", "gpt-4o") is first


def test_select_filters_for_listing():
    catalog = Catalog([
        entry("gpt-4o", "2.5", provider="openai"),
        entry("gpt-4o", "2", effective_to=at("2026-01-01")),
        entry("claude-*", "3", match_kind="glob"),
    ])
    assert len(catalog.select(provider="cometapi")) == 2
    assert [e.provider for e in catalog.select(model="gpt-4o")] == ["cometapi", "openai"]
    assert [e.model_match for e in catalog.select(at=at("2026-06-01"))] == ["claude-*", "gpt-4o"]


# -- storage ------------------------------------------------------------------------------


def tiered(**fields) -> PriceEntry:
    return PriceEntry(
        provider="cometapi", model_match="claude-sonnet-4", kind="contracted", currency="EUR",
        prices={"input_tokens": "2.4", "cached_input_tokens": "0.24", "output_tokens": "12",
                "images": "0.000000000001"},
        tiers=(Tier(200_000, {"input_tokens": "4.8", "output_tokens": "18"}),),
        effective_from=at("2026-01-01T12:30:00"), source_url="https://api.cometapi.com/pricing",
        source_id="src-7", checked_at=date(2026, 11, 20), checked_by="ana", origin="sheet x",
        **fields,
    )


def test_entries_round_trip_exactly(ledger):
    original = tiered()
    with ledger.begin() as conn:
        result = add_entries(conn, [original], actor="ana", reason="contract 2026")
    assert result.added == [original.id]
    with ledger.connect() as conn:
        (loaded,) = load_entries(conn)
    assert loaded == original
    assert loaded.record() == original.record()
    assert loaded.effective_from == at("2026-01-01T12:30:00")
    assert loaded.prices["images"] == Decimal("1E-12")


def test_every_add_is_audited_with_the_entry(ledger):
    original = tiered()
    with ledger.begin() as conn:
        add_entries(conn, [original], actor="ana", reason="contract 2026")
    with ledger.connect() as conn:
        row = conn.execute(sa.select(audit_log)).mappings().one()
    assert (row["actor"], row["action"], row["object_type"], row["object_id"], row["reason"]) == (
        "ana", "price.add", "price", original.id, "contract 2026")
    assert row["before"] is None
    after = json.loads(row["after"])
    assert after["prices"]["input_tokens"] == "2.4"
    assert after["tiers"] == [{"above_input_tokens": 200000,
                               "prices": {"input_tokens": "4.8", "output_tokens": "18"}}]
    assert after["checked_by"] == "ana"


def test_identical_entries_are_skipped_and_counted(ledger):
    with ledger.begin() as conn:
        add_entries(conn, [tiered()], actor="ana")
    with ledger.begin() as conn:
        again = add_entries(conn, [tiered()], actor="ana")
    assert (again.added, again.unchanged) == ([], [tiered().id])
    with ledger.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar() == 1


def test_overlapping_entries_are_ambiguous(ledger):
    first = entry("gpt-4o", "2", kind="contracted", effective_from=at("2026-01-01"))
    overlapping = entry("gpt-4o", "3", kind="contracted", effective_from=at("2026-06-01"))
    with ledger.begin() as conn:
        add_entries(conn, [first], actor="ana")
    with pytest.raises(PricingError, match="overlaps contracted:cometapi:gpt-4o@2026-01-01"):
        with ledger.begin() as conn:
            add_entries(conn, [overlapping], actor="ana")
    # A list entry, another match or a disjoint window is not ambiguous.
    with ledger.begin() as conn:
        result = add_entries(conn, [
            entry("gpt-4o", "2.5", effective_from=at("2026-01-01")),
            entry("gpt-4o*", "2", match_kind="glob", kind="contracted"),
            entry("gpt-4o", "1", kind="contracted", effective_from=at("2025-01-01"),
                  effective_to=at("2026-01-01")),
        ], actor="ana")
    assert len(result.added) == 3


def test_a_price_change_closes_the_old_window_and_adds_the_new(ledger):
    old = entry("gpt-4o", "2", kind="contracted", effective_from=at("2026-01-01"))
    with ledger.begin() as conn:
        add_entries(conn, [old], actor="ana")
    closed = entry("gpt-4o", "2", kind="contracted", effective_from=at("2026-01-01"),
                   effective_to=at("2026-07-01"))
    new = entry("gpt-4o", "1.8", kind="contracted", effective_from=at("2026-07-01"))
    with ledger.begin() as conn:
        result = add_entries(conn, [new, closed], actor="ana", reason="new contract")
    assert (result.closed, result.added) == ([old.id], [new.id])
    with ledger.connect() as conn:
        catalog = load_catalog(conn)
        actions = conn.execute(sa.select(audit_log.c.action).order_by(audit_log.c.id)).scalars()
        assert list(actions) == ["price.add", "price.close", "price.add"]
    assert price_of(catalog, "gpt-4o", "2026-06-30T23:59:59") == Decimal("2")
    assert price_of(catalog, "gpt-4o", "2026-07-01") == Decimal("1.8")


def test_a_changed_price_is_not_edited_in_place(ledger):
    with ledger.begin() as conn:
        add_entries(conn, [entry("gpt-4o", "2")], actor="ana")
    with pytest.raises(PricingError, match="already exists with other prices"):
        with ledger.begin() as conn:
            add_entries(conn, [entry("gpt-4o", "2.1")], actor="ana")
    with ledger.begin() as conn:
        result = add_entries(conn, [entry("gpt-4o", "2.1")], actor="ana", skip_conflicts=True)
    assert result.added == [] and "other prices" in result.rejected[0].reason
    with ledger.connect() as conn:
        assert [e.prices["input_tokens"] for e in load_entries(conn)] == [Decimal("2")]



def test_a_newer_check_updates_provenance_only(ledger):
    with ledger.begin() as conn:
        add_entries(conn, [entry("gpt-4o", "2")], actor="ana")
    rechecked = entry("gpt-4o", "2.00", checked_at=date(2026, 11, 15), checked_by="bo",
                      origin="sheet v2")
    with ledger.begin() as conn:
        result = add_entries(conn, [rechecked], actor="bo", reason="re-verified")
    assert result.rechecked == [rechecked.id]
    older = entry("gpt-4o", "2", checked_at=date(2026, 9, 1), origin="sheet v0")
    with ledger.begin() as conn:
        assert add_entries(conn, [older], actor="ana").unchanged == [older.id]
    with ledger.connect() as conn:
        (stored,) = load_entries(conn)
        audit = conn.execute(sa.select(audit_log).order_by(audit_log.c.id)).mappings().all()
    assert (stored.checked_at, stored.checked_by, stored.origin) == (
        date(2026, 11, 15), "bo", "test")
    assert [a["action"] for a in audit] == ["price.add", "price.recheck"]
    assert json.loads(audit[1]["before"])["checked_at"] == "2026-10-01"
    assert json.loads(audit[1]["after"])["checked_at"] == "2026-11-15"


def test_a_closed_window_cannot_be_reopened_or_moved(ledger):
    closed = entry("m", "2", effective_from=at("2026-01-01"), effective_to=at("2026-02-01"))
    with ledger.begin() as conn:
        add_entries(conn, [closed], actor="ana")
    for effective_to in (None, at("2026-03-01")):
        with pytest.raises(PricingError, match="already exists with other prices or window"):
            with ledger.begin() as conn:
                add_entries(conn, [entry("m", "2", effective_from=at("2026-01-01"),
                                         effective_to=effective_to)], actor="ana")


def test_a_tier_entry_prices_only_its_tier_and_wins_over_standard_ones():
    catalog = Catalog([
        entry("gpt-4o", "2.5"),
        entry("gpt-4o*", "2", match_kind="glob", kind="contracted"),
        entry("gpt-4o", "1.25", service_tier="batch"),
        entry("gpt-4o", "5", service_tier="priority", effective_from=at("2026-06-01")),
    ])

    def tier_price(tier, when="2026-07-01"):
        found = catalog.lookup("cometapi", "gpt-4o", at(when), tier)
        return found.prices["input_tokens"], found.service_tier

    assert tier_price(None) == (Decimal("2"), None)  # standard calls never take a tier price
    assert tier_price("batch") == (Decimal("1.25"), "batch")  # the tier's own, even if list
    assert tier_price("priority") == (Decimal("5"), "priority")
    # A tier with no entry in effect falls back to the standard entry (price_usage flags it).
    assert tier_price("priority", "2026-05-01") == (Decimal("2"), None)
    assert tier_price("flex") == (Decimal("2"), None)


def test_tiers_do_not_overlap_each_other_but_one_tier_still_can(ledger):
    with ledger.begin() as conn:
        result = add_entries(conn, [entry("gpt-4o", "2.5"),
                                    entry("gpt-4o", "1.25", service_tier="batch")], actor="t")
        assert len(result.added) == 2
        with pytest.raises(PricingError, match="same provider, model match, kind and service"):
            add_entries(conn, [entry("gpt-4o", "1", service_tier="batch", id="other",
                                     effective_from=at("2026-01-01"))], actor="t")
    with ledger.connect() as conn:
        stored = {e.id: e.service_tier for e in load_entries(conn)}
    assert stored == {"list:cometapi:gpt-4o@1970-01-01": None,
                      "list:cometapi:tier=batch:gpt-4o@1970-01-01": "batch"}
