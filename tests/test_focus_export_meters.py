"""FOCUS export of the other meters and price shapes: per-request and per-image prices,
tiers, reasoning tokens, rounded seconds, list-only entries, partly priced events."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pyarrow.parquet as pq
import pytest
from factories import AT

from spendtrail.events import AllocationContext, Usage, new_event
from spendtrail.ledger.ingest import Ingester
from spendtrail.ledger.prices import add_entries
from spendtrail.periods import parse_period
from spendtrail.pricing import load_sheet
from spendtrail.reports.focus import check_rows, export_focus, focus_rows, publisher_of

SHEET = """
defaults:
  provider: openai
  currency: USD
  kind: list
  effective_from: 2026-01-01
  source_url: https://openai.com/api/pricing/
  checked_at: 2026-10-01
  checked_by: finance-partner
prices:
  - model: gpt-4.1
    prices: {input_tokens: "2", output_tokens: "8", requests: "0.001"}
    tiers:
      - above_input_tokens: 1000
        prices: {input_tokens: "4", output_tokens: "16"}
  - model: gpt-image-1
    prices: {input_tokens: "5", images: "0.04"}
  - model: o3
    prices: {input_tokens: "2", output_tokens: "8"}
  - model: whisper-1
    prices: {seconds: "0.000000000007"}
  - model: claude-sonnet-4
    provider: cometapi
    prices: {input_tokens: "3", output_tokens: "15"}
"""
PERIOD = parse_period("2026-10-05")


def call(model, provider="openai", **usage):
    return new_event(
        started_at=AT, provider=provider, model_requested=model, usage=Usage(**usage),
        context=AllocationContext(application="search-summaries", environment="production",
                                  workload_class="batch"),
    )


@pytest.fixture
def rows(seeded, tmp_path):
    sheet = tmp_path / "openai.yaml"
    sheet.write_text(SHEET)
    with seeded.begin() as conn:
        add_entries(conn, load_sheet(sheet), actor="test")
    Ingester(seeded).ingest_events([
        call("gpt-4.1", input_tokens=500, output_tokens=50, requests=1),
        call("gpt-4.1", input_tokens=2000, output_tokens=100, requests=1),  # above the tier
        call("gpt-image-1", input_tokens=100, images=2),
        call("gpt-image-1", input_tokens=100, output_tokens=10),  # output unpriced: partial
        call("o3", input_tokens=10, output_tokens=1000, reasoning_tokens=800),
        call("whisper-1", seconds=Decimal("1.5")),  # 10.5 pico-units, stored as 10
        call("claude-sonnet-4", provider="cometapi", input_tokens=1000, output_tokens=100),
    ])
    with seeded.connect() as conn:
        found, summary = focus_rows(conn, PERIOD)
    assert check_rows(found) == []
    assert (summary.events, summary.incomplete_events, summary.unpriced_events) == (7, 1, 0)
    return {(r["SkuId"], r["SkuPriceId"].rsplit(":", 1)[-1]): r for r in found}


def test_unit_shapes(rows):
    requests = rows[("gpt-4.1:requests", "list")]
    assert (requests["ConsumedUnit"], requests["PricingUnit"]) == ("Requests", "Requests")
    assert requests["ConsumedQuantity"] == requests["PricingQuantity"] == 1
    assert requests["ListUnitPrice"] == requests["ContractedUnitPrice"] == Decimal("0.001")
    images = rows[("gpt-image-1:images", "list")]
    assert (images["ConsumedUnit"], images["PricingUnit"]) == ("Images", "Images")
    assert (images["PricingQuantity"], images["BilledCost"]) == (2, Decimal("0.08"))
    assert images["x_PriceKind"] == "list"
    assert images["x_ListPriceEntryId"] == images["x_PriceEntryId"]
    for row in rows.values():
        assert row["ProviderName"] in ("OpenAI", "CometAPI")
        assert row["PublisherName"] == ("Anthropic" if "claude" in row["SkuId"] else "OpenAI")
        # 1.3: bought directly, OpenAI sells and hosts; through CometAPI, the reseller sells
        # and the model's vendor hosts.
        assert row["ServiceProviderName"] == row["ProviderName"]
        assert row["HostProviderName"] == row["PublisherName"]
    claude = rows[("claude-sonnet-4:input_tokens", "list")]
    assert (claude["ServiceProviderName"], claude["HostProviderName"]) == ("CometAPI", "Anthropic")


def test_tiers_are_separate_price_ids(rows):
    base, tier = rows[("gpt-4.1:input_tokens", "list")], rows[("gpt-4.1:input_tokens",
                                                                "above-1000")]
    assert (base["ContractedUnitPrice"], base["ConsumedQuantity"]) == (Decimal(2), 500)
    assert (tier["ContractedUnitPrice"], tier["ConsumedQuantity"]) == (Decimal(4), 2000)
    assert tier["BilledCost"] == Decimal("0.008")
    assert tier["SkuPriceId"] == "openai:gpt-4.1:input_tokens:list:above-1000"
    assert base["SkuId"] == tier["SkuId"]  # one SKU, two prices


def test_reasoning_tokens_are_billed_as_output(rows):
    output = rows[("o3:output_tokens", "list")]
    assert (output["ConsumedQuantity"], output["BilledCost"]) == (1000, Decimal("0.008"))
    assert ("o3:reasoning_tokens", "list") not in rows


def test_partly_priced_event_exports_only_its_priced_meters(rows):
    image_input = rows[("gpt-image-1:input_tokens", "list")]
    assert image_input["x_EventCount"] == 2 and image_input["ConsumedQuantity"] == 200
    assert ("gpt-image-1:output_tokens", "list") not in rows


def test_rounded_seconds_keep_the_price_rule(rows, seeded, tmp_path):
    """The ledger stores 10.5 pico-units as 10 (half-even); List/Contracted cost keep the
    exact product, Billed/Effective cost the ledger's amount."""
    seconds = rows[("whisper-1:seconds", "list")]
    assert (seconds["ConsumedUnit"], seconds["PricingUnit"]) == ("Seconds", "Seconds")
    assert seconds["ContractedCost"] == seconds["ListCost"] == Decimal("0.0000000000105")
    assert seconds["BilledCost"] == seconds["EffectiveCost"] == Decimal("0.00000000001")
    with localcontext() as ctx:
        ctx.prec = 60
        assert seconds["ContractedUnitPrice"] * seconds["PricingQuantity"] == Decimal(
            "0.0000000000105")
    path = tmp_path / "focus.parquet"
    export_focus(seeded, PERIOD, path, "parquet")
    [stored] = [r for r in pq.read_table(path).to_pylist() if r["x_Meter"] == "seconds"]
    assert stored["ContractedCost"] == Decimal("0.0000000000105")  # exact in decimal128


def test_publisher_inference():
    assert publisher_of("openai/gpt-4o-mini") == "OpenAI"
    assert publisher_of("claude-3-5-haiku-20241022") == "Anthropic"
    assert publisher_of("gemini-2.5-pro") == "Google"
    assert publisher_of("deepseek-chat") == "DeepSeek"
    assert publisher_of("house-model-7") is None
