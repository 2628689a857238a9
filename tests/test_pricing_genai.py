"""genai-prices import: the engine and catalog agree with genai_prices.calc_price, the import
reports what it cannot express, and re-running it changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import genai_prices
import pytest
import sqlalchemy as sa
from genai_prices import data as genai_data

from spendtrail.events.model import Usage
from spendtrail.ledger.genai_prices import import_genai_prices
from spendtrail.ledger.prices import load_entries
from spendtrail.ledger.schema import audit_log, price_entries
from spendtrail.pricing import Catalog, PricingError, price_usage, stale_prices
from spendtrail.pricing.genai_import import ORIGIN, plan_genai_import

PROVIDERS = ("openai", "anthropic", "google")
AS_OF = date(2026, 12, 4)  # the day the imports run
GENAI_NAMES = {
    "input_tokens": "input_tokens",
    "cached_input_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "output_tokens": "output_tokens",
    "reasoning_tokens": "output_reasoning_tokens",
    "input_audio_tokens": "input_audio_tokens",
    "output_audio_tokens": "output_audio_tokens",
    "cache_write_1h_tokens": "cache_write_1h_tokens",
    "input_image_tokens": "input_image_tokens",
    "output_image_tokens": "output_image_tokens",
    "input_characters": "input_characters",
    "seconds": "audio_seconds",
}


@pytest.fixture(scope="module")
def plan():
    return plan_genai_import(PROVIDERS, AS_OF)


@pytest.fixture(scope="module")
def catalog(plan):
    return Catalog(plan.entries)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (provider, model as an event names it, when, usage meters)
CASES = [
    ("openai", "gpt-4o", "2025-01-01", dict(input_tokens=1000, output_tokens=500)),
    ("openai", "gpt-4o-2024-11-20", "2025-03-01",
     dict(input_tokens=12_000, cached_input_tokens=8_000, output_tokens=700)),
    ("openai", "gpt-4o-mini", "2025-05-05",
     dict(input_tokens=150_000, cached_input_tokens=100_000, output_tokens=2_000)),
    ("openai", "gpt-4.1", "2025-07-01",
     dict(input_tokens=50_000, cached_input_tokens=20_000, output_tokens=1_000)),
    ("openai", "gpt-4.1-nano", "2025-07-01", dict(input_tokens=999, output_tokens=1)),
    ("openai", "o3", "2025-06-01", dict(input_tokens=1000, output_tokens=500)),  # before cut
    ("openai", "o3", "2025-06-15", dict(input_tokens=1000, output_tokens=500)),  # after cut
    ("openai", "o4-mini", "2025-09-01",
     dict(input_tokens=5_000, output_tokens=3_000, reasoning_tokens=2_500)),
    ("openai", "gpt-5", "2025-10-01",
     dict(input_tokens=20_000, cached_input_tokens=15_000, output_tokens=8_000,
          reasoning_tokens=6_000)),
    ("openai", "gpt-5.4", "2026-05-01",  # above the 272k tier
     dict(input_tokens=300_000, cached_input_tokens=100_000, output_tokens=5_000)),
    ("openai", "gpt-5.6-sol", "2026-08-20",
     dict(input_tokens=280_000, cache_write_tokens=10_000, output_tokens=100)),
    ("openai", "gpt-5.6-sol", "2026-08-21",
     dict(input_tokens=280_000, cache_write_tokens=10_000, output_tokens=100)),
    ("openai", "text-embedding-3-small", "2025-02-02", dict(input_tokens=100_000)),
    ("openai", "gpt-4o-audio-preview-2024-12-17", "2025-02-02",
     dict(input_tokens=3_000, input_audio_tokens=2_000, output_tokens=900,
          output_audio_tokens=600)),
    ("openai", "whisper-1", "2025-02-02", dict(seconds=Decimal(61))),
    ("anthropic", "claude-3-5-sonnet-20241022", "2025-01-10",
     dict(input_tokens=10_000, cached_input_tokens=3_000, cache_write_tokens=2_000,
          output_tokens=500)),
    ("anthropic", "claude-sonnet-4-20250514", "2025-08-01",
     dict(input_tokens=5_000, cache_write_tokens=5_000, output_tokens=100)),
    ("anthropic", "claude-opus-4-6", "2026-01-01",
     dict(input_tokens=250_000, cached_input_tokens=40_000, output_tokens=3_000)),
    ("anthropic", "claude-opus-4-6", "2026-04-01",
     dict(input_tokens=250_000, cached_input_tokens=40_000, output_tokens=3_000)),
    ("anthropic", "claude-haiku-4-5", "2026-01-01",
     dict(input_tokens=1_000, cached_input_tokens=500, output_tokens=100)),
    ("anthropic", "claude-sonnet-4-5-20250929", "2026-01-01",
     dict(input_tokens=200_001, output_tokens=1_000)),
    ("anthropic", "claude-3-haiku-20240307", "2024-06-01",
     dict(input_tokens=7_777, output_tokens=3_333)),
    ("google", "gemini-2.5-pro", "2025-09-01",
     dict(input_tokens=250_000, cached_input_tokens=50_000, output_tokens=2_000)),
    ("google", "gemini-2.5-pro-preview-06-05", "2025-09-01",
     dict(input_tokens=20_000, cached_input_tokens=5_000, output_tokens=2_000)),
    ("google", "gemini-2.5-flash", "2025-09-01",
     dict(input_tokens=40_000, cached_input_tokens=30_000, output_tokens=1_234)),
    ("google", "models/gemini-1.5-pro-002", "2025-01-01",
     dict(input_tokens=130_000, output_tokens=10_000)),
    ("google", "gemini-2.5-flash-lite-preview-06-17", "2025-07-01",
     dict(input_tokens=10_000, output_tokens=10_000)),
    # Meters billed apart: 1-hour cache writes, image tokens, text-to-speech characters.
    ("anthropic", "claude-sonnet-4-5-20250929", "2026-01-01",
     dict(input_tokens=20_000, cached_input_tokens=4_000, cache_write_tokens=6_000,
          cache_write_1h_tokens=2_500, output_tokens=800)),
    ("anthropic", "claude-opus-4-6", "2026-04-01",
     dict(input_tokens=9_000, cache_write_tokens=9_000, cache_write_1h_tokens=9_000,
          output_tokens=10)),
    ("google", "claude-sonnet-4-5", "2026-01-01",
     dict(input_tokens=5_000, cache_write_tokens=3_000, cache_write_1h_tokens=1_000,
          output_tokens=100)),
    ("openai", "gpt-image-1", "2026-06-01",
     dict(input_tokens=50, input_image_tokens=40, output_tokens=4_160)),
    ("openai", "gpt-image-1.5", "2026-06-01",
     dict(input_tokens=1_200, input_image_tokens=1_000, output_tokens=4_300,
          output_image_tokens=4_160)),
    ("openai", "chatgpt-image-latest", "2026-06-01",
     dict(input_tokens=300, input_image_tokens=150, output_tokens=1_100,
          output_image_tokens=1_056)),
    ("google", "gemini-2.5-flash-image", "2026-06-01",
     dict(input_tokens=400, output_tokens=1_390, output_image_tokens=1_290)),
    ("openai", "gpt-realtime", "2026-06-01",
     dict(input_tokens=2_000, input_audio_tokens=1_000, input_image_tokens=500,
          output_tokens=300, output_audio_tokens=200)),
    ("openai", "tts-1", "2026-06-01", dict(input_characters=1_234)),
    ("openai", "tts-1-hd", "2026-06-01", dict(input_characters=999_999)),
]


@pytest.mark.parametrize(("provider", "model", "when", "meters"), CASES,
                         ids=[f"{c[1]}@{c[2]}" for c in CASES])
def test_cost_agrees_with_genai_prices(catalog, provider, model, when, meters):
    at = ts(when)
    expected = genai_prices.calc_price(
        genai_prices.Usage(**{GENAI_NAMES[k]: v for k, v in meters.items()}),
        model, provider_id=provider, genai_request_timestamp=at,
    ).total_price
    entry = catalog.lookup(provider, model, at)
    assert entry is not None, f"{model} is unpriced"
    cost = price_usage(Usage(requests=1, **meters), entry)
    assert cost.status == "priced"
    assert cost.total == expected  # Decimal equality: exact, not approximately
    assert cost.total > 0


def test_the_anchor_example(catalog):
    entry = catalog.lookup("openai", "gpt-4o", ts("2025-06-01"))
    assert price_usage(Usage(input_tokens=1000, output_tokens=500), entry).total == Decimal(
        "0.0075")
    o3 = [catalog.lookup("openai", "o3", ts(day)) for day in ("2025-06-01", "2025-06-15")]
    assert [price_usage(Usage(input_tokens=1000, output_tokens=500), e).total for e in o3] == [
        Decimal("0.030"), Decimal("0.006")]


def test_dated_prices_become_adjacent_windows(catalog):
    before, after = (catalog.lookup("openai", "o3", ts(t))
                     for t in ("2025-06-09T23:59:59", "2025-06-10T00:00:00"))
    assert before.effective_to == after.effective_from == ts("2025-06-10")
    assert before.effective_from == ts("1970-01-01")
    assert after.effective_to is None


def _probes(provider) -> set[str]:
    """Names built from every literal in the provider's match clauses, as events carry them."""
    from genai_prices import types as gp

    def literals(clause):
        if isinstance(clause, gp.ClauseOr | gp.ClauseAnd):
            for sub in (clause.or_ if isinstance(clause, gp.ClauseOr) else clause.and_):
                yield from literals(sub)
        elif not isinstance(clause, gp.ClauseRegex):
            yield next(iter(vars(clause).values())).lower()

    names = set()
    for model in provider.models:
        for text in literals(model.match):
            names |= {text, f"{text}-2025-01-01", f"{text}-20250101", f"{text}-latest",
                      f"models/{text}", f"{text}-preview", f"{text}-tts", f"{text}@20250101"}
    return names


@pytest.mark.parametrize("provider_id", PROVIDERS)
def test_lookup_picks_the_model_genai_prices_picks(plan, catalog, provider_id):
    """Every name derived from the data resolves to the same model, at every window edge."""
    provider = next(p for p in genai_data.providers if p.id == provider_id)
    skipped = {s.model for s in plan.skipped if s.provider == provider_id}
    starts = sorted({e.effective_from for e in catalog.entries if e.provider == provider_id})
    moments = [*starts, *(s - timedelta(seconds=1) for s in starts[1:])]
    checked = 0
    for name in sorted(_probes(provider)):
        model = next((m for m in provider.models if m.is_match(name)), None)
        for at in moments:
            entry = catalog.lookup(provider_id, name, at)
            if model is None:
                assert entry is None, name
                continue
            if entry is None:
                assert model.id in skipped, f"{name} at {at} unpriced"
                continue
            assert entry.id.startswith(f"genai-prices:{provider_id}:{model.id}:"), (name, at)
            usage = dict(input_tokens=1000, cached_input_tokens=100, output_tokens=100)
            expected = model.calc_price(
                genai_prices.Usage(**{GENAI_NAMES[k]: v for k, v in usage.items()}), provider,
                genai_request_timestamp=at,
            ).total_price
            assert price_usage(Usage(**usage), entry).total == expected, (name, at)
            checked += 1
    assert checked > 500


def test_provenance(plan):
    gpt4o = next(e for e in plan.entries if e.id.startswith("genai-prices:openai:gpt-4o:"))
    assert gpt4o.kind == "list"
    assert gpt4o.source_url == "https://developers.openai.com/api/docs/pricing"
    assert gpt4o.checked_by == gpt4o.origin == ORIGIN == f"genai-prices {genai_prices.__version__}"
    assert gpt4o.checked_at is not None
    assert gpt4o.currency == "USD"


def test_match_clauses_translate(plan):
    def matches(model_id):
        return {(e.match_kind, e.model_match) for e in plan.entries
                if e.id.startswith(f"genai-prices:{model_id}:")}

    assert ("exact", "gpt-4o-2024-08-06") in matches("openai:gpt-4o")
    assert ("glob", "claude-3-5-sonnet*") in matches("anthropic:claude-3-5-sonnet")
    assert ("glob", "*gemini-1.5-pro*") in matches("google:gemini-1.5-pro")
    assert ("regex", r"^claude-fable-5-\d{8}$") in matches("anthropic:claude-fable-5")
    (and_clause,) = [m for k, m in matches("google:gemini-2.5-pro") if k == "regex"]
    catalog = Catalog([e for e in plan.entries if e.match_kind == "regex"
                       and e.id.startswith("genai-prices:google:gemini-2.5-pro:")])
    assert catalog.lookup("google", "gemini-2.5-pro-preview-05-06", ts("2025-06-01"))
    assert catalog.lookup("google", "gemini-2.5-pro-preview-tts", ts("2025-06-01")) is None
    assert and_clause.startswith("^(?=")


def test_what_cannot_be_imported_exactly_is_reported():
    plan = plan_genai_import(["deepseek", "huggingface_together", "openai", "anthropic"], AS_OF)
    notes = [str(s) for s in plan.skipped]

    def note(provider_model: str, text: str) -> bool:
        return any(n.startswith(provider_model + ":") and text in n for n in notes)

    assert note("deepseek deepseek-chat", "change with the time of day")
    assert not any(e.id.startswith("genai-prices:deepseek:deepseek-chat:") for e in plan.entries)
    assert note("huggingface_together meta-llama/Llama-3.3-70B-Instruct",
                "1.0399999999999998 has 16 decimal places")
    assert note("anthropic claude-opus-5", "price variants not imported (speed=fast)")
    assert not note("openai gpt-4o", "price variants not imported")
    assert note("anthropic claude-sonnet-4-5", "no spendtrail meter not imported: "
                "web_searches_kcount")
    assert note("openai gpt-image-1", "not imported: cache_image_read_mtok")
    assert note("openai gpt-live-1", "not a whole number of pico-units per second")
    assert note("openai moderation", "genai-prices lists no price")


def test_unknown_provider_is_a_clear_error():
    with pytest.raises(PricingError, match="--provider: genai-prices .* no provider 'cometapi'"):
        plan_genai_import(["openai", "cometapi"], AS_OF)


def test_import_is_idempotent_and_audited(ledger):
    with ledger.begin() as conn:
        first = import_genai_prices(conn, ["openai", "anthropic"], actor="alice", reason="seed")
    assert len(first.added) > 300
    assert first.unchanged == [] and first.closed == []
    with ledger.begin() as conn:
        second = import_genai_prices(conn, ["anthropic", "openai"], actor="alice")
    assert second.added == []
    assert sorted(second.unchanged) == sorted(first.added)
    with ledger.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(price_entries)).scalar()
        audits = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.actor, audit_log.c.reason)
        ).all()
        entries = load_entries(conn)
    assert stored == len(first.added)
    assert audits == [("price.add", "alice", "seed")] * len(first.added)
    loaded = Catalog(entries)
    at = ts("2025-06-15")
    assert loaded.lookup("openai", "o3", at) == Catalog(
        plan_genai_import(["openai"], AS_OF).entries).lookup("openai", "o3", at)


def genai_cost(provider, model, at, meters, context=None):
    return genai_prices.calc_price(
        genai_prices.Usage(**{GENAI_NAMES[k]: v for k, v in meters.items()}),
        model, provider_id=provider, genai_request_timestamp=at, price_context=context,
    ).total_price


def test_a_token_priced_image_model_with_an_image_count_is_priced(catalog):
    """gpt-image-1 reports tokens and the gateway counts the images; the tokens bill them."""
    at = ts("2026-06-01")
    meters = dict(input_tokens=50, input_image_tokens=40, output_tokens=4_160)
    cost = price_usage(Usage(images=1, requests=1, **meters),
                       catalog.lookup("openai", "gpt-image-1", at))
    assert (cost.status, cost.flags) == ("priced", ())
    # 10 text x 5 + 40 image x 10 + 4,160 output x 40, per 1M tokens
    assert cost.total == Decimal("0.16685") == genai_cost("openai", "gpt-image-1", at, meters)


# (provider, model, when, service tier, genai-prices' request context, usage meters)
TIER_CASES = [
    ("openai", "gpt-4o", "2026-11-15", "batch", {"processing": "batch"},
     dict(input_tokens=10_000, output_tokens=2_000)),
    ("openai", "gpt-4o", "2026-11-15", "batch", {"processing": "batch"},
     dict(input_tokens=10_000, cached_input_tokens=4_000, output_tokens=2_000)),
    ("openai", "gpt-5", "2026-11-15", "flex", {"service_tier": "flex"},
     dict(input_tokens=20_000, cached_input_tokens=15_000, output_tokens=8_000,
          reasoning_tokens=6_000)),
    ("openai", "o3", "2026-11-15", "priority", {"service_tier": "priority"},
     dict(input_tokens=1_000, output_tokens=500)),
    ("openai", "gpt-image-1", "2026-11-15", "batch", {"processing": "batch"},
     dict(input_tokens=50, input_image_tokens=40, output_tokens=4_160)),
    ("anthropic", "claude-sonnet-4-5-20250929", "2026-11-15", "batch", {"processing": "batch"},
     dict(input_tokens=20_000, cached_input_tokens=4_000, cache_write_tokens=6_000,
          cache_write_1h_tokens=2_500, output_tokens=800)),
    ("google", "gemini-2.5-flash", "2026-11-15", "batch", {"processing": "batch"},
     dict(input_tokens=40_000, cached_input_tokens=30_000, output_tokens=1_234)),
    # Before genai-prices has a batch price (2026-10-14) it prices batch calls at the
    # standard price; so does the catalog, with a flag.
    ("openai", "gpt-4o", "2026-09-01", "batch", {"processing": "batch"},
     dict(input_tokens=10_000, output_tokens=2_000)),
]


@pytest.mark.parametrize(("provider", "model", "when", "tier", "context", "meters"), TIER_CASES,
                         ids=[f"{c[1]}@{c[2]}:{c[3]}" for c in TIER_CASES])
def test_service_tiers_agree_with_genai_prices(catalog, provider, model, when, tier, context,
                                               meters):
    at = ts(when)
    entry = catalog.lookup(provider, model, at, tier)
    cost = price_usage(Usage(requests=1, **meters), entry, service_tier=tier)
    assert cost.status == "priced"
    assert cost.total == genai_cost(provider, model, at, meters, context)
    missing = f"service_tier_price_missing:{tier}"
    assert (missing in cost.flags) == (entry.service_tier is None)


def test_a_batch_job_costs_half(catalog):
    at = ts("2026-11-15")
    usage = Usage(input_tokens=10_000, output_tokens=2_000, requests=1)
    standard = price_usage(usage, catalog.lookup("openai", "gpt-4o", at))
    batch_entry = catalog.lookup("openai", "gpt-4o", at, "batch")
    batch = price_usage(usage, batch_entry, service_tier="batch")
    assert batch_entry.service_tier == "batch"
    assert standard.total == Decimal("0.045")  # 10k x 2.5 + 2k x 10, per 1M
    assert batch.total * 2 == standard.total
    assert batch.flags == ()
    # A standard call never takes the batch price.
    assert catalog.lookup("openai", "gpt-4o", at).service_tier is None


def test_list_prices_are_dated_by_the_data_not_the_install(plan):
    """Every entry carries the data's date: its newest price change in effect on the import
    day (2026-12-01 in the installed data), whatever day the package was installed."""
    assert {e.checked_at for e in plan.entries} == {plan.checked_at} == {date(2026, 12, 1)}
    # A price the data announces for a later day does not date it earlier than it is.
    assert plan_genai_import(["openai"], date(2026, 11, 15)).checked_at < plan.checked_at


def test_a_reinstall_rechecks_nothing_and_old_list_prices_go_stale(ledger):
    with ledger.begin() as conn:
        first = import_genai_prices(conn, ["openai"], actor="alice", today=AS_OF)
    assert first.checked_at == date(2026, 12, 1)
    # Reinstalled and imported again after a price the data announced took effect
    # (2027-01-01): still the same data, dated as of its first import.
    with ledger.begin() as conn:
        again = import_genai_prices(conn, ["openai"], actor="alice", today=date(2027, 2, 1))
    assert again.checked_at == first.checked_at
    assert again.added == again.rechecked == again.closed == []
    assert sorted(again.unchanged) == sorted(first.added)
    with ledger.connect() as conn:
        catalog = Catalog(load_entries(conn))
        rechecks = conn.execute(sa.select(sa.func.count()).select_from(audit_log).where(
            audit_log.c.action == "price.recheck")).scalar()
    assert rechecks == 0
    assert stale_prices(catalog, AS_OF) == []
    stale = stale_prices(catalog, date(2027, 1, 15))
    open_entries = [e for e in catalog.entries if e.effective_to is None
                    or e.effective_to > ts("2027-01-15")]
    assert {s.entry.id for s in stale} == {e.id for e in open_entries}
    assert {s.age_days for s in stale} == {45}
