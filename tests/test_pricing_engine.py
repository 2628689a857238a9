"""The cost function: every meter, the part-of rules, tiers, incomplete results, exactness."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from spendtrail.events.model import METERS, Usage
from spendtrail.money import to_pico
from spendtrail.pricing import (
    CHARACTER_METERS,
    TOKEN_METERS,
    UNIT_METERS,
    PriceEntry,
    PricingError,
    Tier,
    price_usage,
)

D = Decimal


def entry(prices: dict[str, str], tiers: tuple[Tier, ...] = (), **fields) -> PriceEntry:
    return PriceEntry(
        provider=fields.pop("provider", "openai"),
        model_match=fields.pop("model_match", "m"),
        kind=fields.pop("kind", "list"),
        prices=prices,
        tiers=tiers,
        source_url="https://example.com/pricing",
        checked_at=date(2026, 11, 1),
        checked_by="tester",
        origin="test",
        **fields,
    )


GPT4O = entry({"input_tokens": "2.5", "cached_input_tokens": "1.25", "output_tokens": "10"})


def test_meters_are_the_usage_meters():
    groups = (set(TOKEN_METERS), set(CHARACTER_METERS), set(UNIT_METERS))
    assert set.union(*groups) == set(METERS)
    assert sum(map(len, groups)) == len(METERS)  # no meter in two groups


def test_input_and_output_per_million_tokens():
    cost = price_usage(Usage(input_tokens=1000, output_tokens=500), GPT4O)
    assert cost.status == "priced"
    assert cost.currency == "USD"
    assert cost.per_meter == {"input_tokens": D("0.0025"), "output_tokens": D("0.005")}
    assert cost.total == D("0.0075")
    assert cost.flags == ()


def test_cached_tokens_at_the_cache_read_price():
    # litellm's worked example (anchors 1.3): 80 x 2.5e-6 + 20 x 1.25e-6 + 50 x 1e-5
    cost = price_usage(
        Usage(input_tokens=100, cached_input_tokens=20, output_tokens=50), GPT4O
    )
    assert cost.per_meter == {
        "input_tokens": D("0.0002"),
        "cached_input_tokens": D("0.000025"),
        "output_tokens": D("0.0005"),
    }
    assert cost.total == D("0.000725")
    assert cost.flags == ()


def test_cached_tokens_without_a_cache_price_are_billed_at_input_and_flagged():
    no_cache = entry({"input_tokens": "2.5", "output_tokens": "10"})
    cost = price_usage(Usage(input_tokens=100, cached_input_tokens=20, output_tokens=50),
                       no_cache)
    assert cost.per_meter["cached_input_tokens"] == D("0.00005")  # 20 x 2.5e-6, not 0
    assert cost.per_meter["input_tokens"] == D("0.0002")
    assert cost.total == D("0.00075")
    assert cost.flags == ("cache_read_price_missing",)
    assert cost.status == "priced"


def test_cache_writes_with_and_without_their_own_price():
    usage = Usage(input_tokens=1000, cached_input_tokens=300, cache_write_tokens=200,
                  output_tokens=10)
    with_write = entry({"input_tokens": "3", "cached_input_tokens": "0.3",
                        "cache_write_tokens": "3.75", "output_tokens": "15"})
    cost = price_usage(usage, with_write)
    assert cost.per_meter == {
        "input_tokens": D("0.0015"),  # 500 uncached
        "cached_input_tokens": D("0.00009"),
        "cache_write_tokens": D("0.00075"),
        "output_tokens": D("0.00015"),
    }
    assert cost.total == D("0.00249")
    without_write = entry({"input_tokens": "3", "cached_input_tokens": "0.3",
                           "output_tokens": "15"})
    cost = price_usage(usage, without_write)
    assert cost.per_meter["cache_write_tokens"] == D("0.0006")
    assert cost.flags == ("cache_write_price_missing",)


def test_reasoning_tokens_are_output_unless_priced_separately():
    usage = Usage(input_tokens=0, output_tokens=1000, reasoning_tokens=600)
    plain = price_usage(usage, entry({"input_tokens": "1", "output_tokens": "8"}))
    assert plain.per_meter == {"output_tokens": D("0.008")}
    assert plain.flags == ()
    split = price_usage(usage, entry({"input_tokens": "1", "output_tokens": "8",
                                      "reasoning_tokens": "4"}))
    assert split.per_meter == {"output_tokens": D("0.0032"), "reasoning_tokens": D("0.0024")}


def test_audio_tokens_at_their_own_price_or_at_text_price_flagged():
    audio = entry({"input_tokens": "2.5", "output_tokens": "10", "input_audio_tokens": "40",
                   "output_audio_tokens": "80"})
    usage = Usage(input_tokens=1000, input_audio_tokens=400, output_tokens=100,
                  output_audio_tokens=100)
    cost = price_usage(usage, audio)
    assert cost.per_meter == {
        "input_tokens": D("0.0015"),
        "input_audio_tokens": D("0.016"),
        "output_audio_tokens": D("0.008"),
    }
    assert cost.flags == ()
    text_only = price_usage(usage, entry({"input_tokens": "2.5", "output_tokens": "10"}))
    assert text_only.total == D("0.0035")  # all tokens at the text prices, as genai-prices does
    assert text_only.flags == ("input_audio_price_missing", "output_audio_price_missing")


def test_unit_meters():
    per_unit = entry({"images": "0.04", "requests": "0.005", "seconds": "0.0001"})
    cost = price_usage(Usage(images=3, requests=2, seconds=D("12.5")), per_unit)
    assert cost.per_meter == {"requests": D("0.01"), "images": D("0.12"),
                              "seconds": D("0.00125")}
    assert cost.total == D("0.13125")


def test_requests_without_a_price_is_no_fee():
    cost = price_usage(Usage(input_tokens=10, requests=1), GPT4O)
    assert cost.status == "priced"
    assert "requests" not in cost.per_meter


@pytest.mark.parametrize(
    ("usage", "flag"),
    [
        (Usage(images=1), "no_price:images"),
        (Usage(seconds=D("3")), "no_price:seconds"),
        (Usage(input_tokens=5), "no_price:input_tokens"),
        (Usage(input_tokens=5, cached_input_tokens=5), "no_price:cached_input_tokens"),
    ],
)
def test_a_nonzero_meter_without_price_is_incomplete(usage, flag):
    cost = price_usage(usage, entry({"output_tokens": "1"}))
    assert cost.status == "incomplete"
    assert flag in cost.flags
    assert cost.total == 0


def test_incomplete_keeps_what_it_could_price():
    cost = price_usage(Usage(images=2, input_tokens=1000), entry({"images": "0.04"}))
    assert cost.status == "incomplete"
    assert cost.per_meter == {"images": D("0.08")}
    assert cost.flags == ("no_price:input_tokens",)


def test_parts_larger_than_their_parent_are_flagged_not_negative():
    audio = entry({"input_tokens": "1", "cached_input_tokens": "0.5",
                   "input_audio_tokens": "10", "output_tokens": "1"})
    cost = price_usage(Usage(input_tokens=100, cached_input_tokens=80, input_audio_tokens=50),
                       audio)
    assert cost.status == "incomplete"
    assert "parts_exceed:input_tokens" in cost.flags
    assert all(v >= 0 for v in cost.per_meter.values())


def test_zero_usage_costs_zero():
    cost = price_usage(Usage(), GPT4O)
    assert (cost.status, cost.total, cost.per_meter) == ("priced", D(0), {})


def test_tiers_apply_above_the_threshold_to_all_tokens():
    tiered = entry(
        {"input_tokens": "3", "cached_input_tokens": "0.3", "output_tokens": "15"},
        tiers=(Tier(200_000, {"input_tokens": "6", "cached_input_tokens": "0.6",
                              "output_tokens": "22.5"}),),
    )
    at_threshold = price_usage(Usage(input_tokens=200_000, output_tokens=1000), tiered)
    assert at_threshold.total == D("0.6") + D("0.015")  # not above: base prices
    above = price_usage(Usage(input_tokens=200_001, cached_input_tokens=1, output_tokens=1000),
                        tiered)
    assert above.per_meter == {
        "input_tokens": D("1.2"),  # 200,000 uncached x 6 / 1M: the whole count, not the excess
        "cached_input_tokens": D("0.0000006"),
        "output_tokens": D("0.0225"),
    }


def test_a_meter_a_tier_does_not_list_keeps_the_last_tier_that_did():
    tiered = entry(
        {"input_tokens": "1", "output_tokens": "2"},
        tiers=(Tier(100, {"input_tokens": "10"}), Tier(1000, {"output_tokens": "20"})),
    )
    usage = lambda n: Usage(input_tokens=n, output_tokens=1_000_000)  # noqa: E731
    assert price_usage(usage(100), tiered).total == D("0.0001") + D("2")
    assert price_usage(usage(101), tiered).total == D("0.00101") + D("2")
    assert price_usage(usage(1001), tiered).total == D("0.01001") + D("20")


def test_results_are_decimal_and_storable_exactly():
    odd = entry({"input_tokens": "0.000001", "output_tokens": "123.123457"})
    cost = price_usage(Usage(input_tokens=1, output_tokens=999_999), odd)
    assert cost.per_meter["input_tokens"] == D("0.000000000001")  # one pico-unit
    # 999,999 x 123.123457 / 1,000,000, to the last pico-unit
    assert cost.per_meter["output_tokens"] == D("123.123333876543")
    assert cost.total == D("123.123333876544")
    assert all(type(v) is D for v in (cost.total, *cost.per_meter.values()))
    assert to_pico(cost.total) == 123_123_333_876_544


def test_fractional_seconds_round_to_a_pico_unit_and_say_so():
    cost = price_usage(Usage(seconds=D("0.0000001")), entry({"seconds": "0.000000000001"}))
    assert cost.total == D(0)
    assert cost.flags == ("rounded_to_pico:seconds",)
    assert to_pico(cost.total) == 0


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        ({"input_tokens": "0.1234567"}, "prices.input_tokens: 0.1234567 has 7 decimal places"),
        ({"images": "0.0000000000001"}, "prices.images: 0.0000000000001 has 13 decimal places"),
        ({"input_tokens": 0.5}, "prices.input_tokens: pass prices as text or Decimal"),
        ({"input_tokens": "-1"}, "prices.input_tokens: a price cannot be negative"),
        ({"input_token": "1"}, "prices.input_token: unknown meter"),
        ({}, "prices: at least one meter must be priced"),
    ],
)
def test_prices_that_cannot_give_exact_costs_are_rejected(prices, message):
    with pytest.raises(PricingError, match=message.replace(".", r"\.").replace("(", r"\(")):
        entry(prices)


def test_trailing_zeros_do_not_count_as_decimal_places():
    assert entry({"input_tokens": "0.1234560000"}).prices["input_tokens"] == D("0.123456")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"match_kind": "fuzzy"}, "match: expected one of exact, glob, regex"),
        ({"kind": "negotiated"}, "kind: expected one of contracted, list"),
        ({"currency": "usd"}, "currency: expected a 3-letter ISO 4217 code"),
        ({"model_match": "(", "match_kind": "regex"}, "model: invalid regex"),
        ({"effective_from": datetime(2026, 2, 1, tzinfo=UTC),
          "effective_to": datetime(2026, 1, 1, tzinfo=UTC)}, "effective_to: 2026-01-01 is not"),
        ({"effective_from": datetime(2026, 2, 1)}, "effective_from: timestamp .* needs a UTC"),
    ],
)
def test_entry_fields_are_checked(fields, message):
    with pytest.raises(PricingError, match=message):
        entry({"input_tokens": "1"}, **fields)


def test_tiers_are_checked():
    with pytest.raises(PricingError, match=r"tiers\[1\].above_input_tokens: tiers must be in"):
        entry({"input_tokens": "1"}, tiers=(Tier(10, {"input_tokens": "2"}),
                                            Tier(10, {"input_tokens": "3"})))
    with pytest.raises(PricingError, match=r"tiers\[0\].prices.output_tokens: a tiered meter"):
        entry({"input_tokens": "1"}, tiers=(Tier(10, {"output_tokens": "2"}),))


# -- meters for what providers bill apart: 1-hour cache writes, image tokens, characters --

SONNET = {"input_tokens": "3", "cached_input_tokens": "0.3", "cache_write_tokens": "3.75",
          "output_tokens": "15"}
GPT_IMAGE_1 = {"input_tokens": "5", "cached_input_tokens": "1.25", "input_image_tokens": "10",
               "output_tokens": "40"}
FLASH_IMAGE = {"input_tokens": "0.3", "output_tokens": "2.5", "output_image_tokens": "30"}
WRITES = Usage(input_tokens=10_000, cached_input_tokens=2_000, cache_write_tokens=3_000,
               cache_write_1h_tokens=1_000, output_tokens=500)
IMAGE_CALL = Usage(input_tokens=50, input_image_tokens=40, output_tokens=4_160, images=1,
                   requests=1)

# (prices, usage, exact cost per meter, flags); every figure is count x price / 1M by hand.
METER_CASES = [
    ("1h writes at their own price", SONNET | {"cache_write_1h_tokens": "6"}, WRITES,
     {"input_tokens": "0.015", "cached_input_tokens": "0.0006",
      "cache_write_tokens": "0.0075", "cache_write_1h_tokens": "0.006",
      "output_tokens": "0.0075"}, ()),
    ("1h writes without a price: at the cache-write price, flagged", SONNET, WRITES,
     {"input_tokens": "0.015", "cached_input_tokens": "0.0006",
      "cache_write_tokens": "0.0075", "cache_write_1h_tokens": "0.00375",
      "output_tokens": "0.0075"},
     ("cache_write_1h_price_missing",)),
    ("1h writes without any write price: at the input price, flagged twice",
     {"input_tokens": "3", "output_tokens": "15"},
     Usage(input_tokens=1_000, cache_write_tokens=400, cache_write_1h_tokens=100),
     {"input_tokens": "0.0018", "cache_write_tokens": "0.0009",
      "cache_write_1h_tokens": "0.0003"},
     ("cache_write_price_missing", "cache_write_1h_price_missing")),
    ("input image tokens at their own price", GPT_IMAGE_1, IMAGE_CALL,
     {"input_tokens": "0.00005", "input_image_tokens": "0.0004", "output_tokens": "0.1664"},
     ()),
    ("input image tokens without a price: at the text price, flagged",
     {"input_tokens": "5", "output_tokens": "40"}, IMAGE_CALL,
     {"input_tokens": "0.00005", "input_image_tokens": "0.0002", "output_tokens": "0.1664"},
     ("input_image_price_missing",)),
    ("output image tokens at their own price", FLASH_IMAGE,
     Usage(input_tokens=100, output_tokens=1_390, output_image_tokens=1_290),
     {"input_tokens": "0.00003", "output_tokens": "0.00025", "output_image_tokens": "0.0387"},
     ()),
    ("output image tokens without a price: at the output price, flagged",
     {"input_tokens": "0.3", "output_tokens": "2.5"},
     Usage(input_tokens=100, output_tokens=1_390, output_image_tokens=1_290),
     {"input_tokens": "0.00003", "output_tokens": "0.00025", "output_image_tokens": "0.003225"},
     ("output_image_price_missing",)),
    ("text-to-speech characters per 1M", {"input_characters": "15"},
     Usage(input_characters=1_234, requests=1), {"input_characters": "0.01851"}, ()),
]


@pytest.mark.parametrize(("prices", "usage", "per_meter", "flags"),
                         [c[1:] for c in METER_CASES], ids=[c[0] for c in METER_CASES])
def test_meters_billed_apart(prices, usage, per_meter, flags):
    cost = price_usage(usage, entry(prices))
    assert cost.per_meter == {m: D(v) for m, v in per_meter.items()}
    assert cost.total == sum((D(v) for v in per_meter.values()), D(0))
    assert cost.flags == flags
    assert cost.status == "priced"


def test_one_hour_writes_cost_more_than_five_minute_writes():
    # Anthropic: 1h writes are 2x input, 5m writes 1.25x: at the 5m rate they would be low
    with_1h = price_usage(WRITES, entry(SONNET | {"cache_write_1h_tokens": "6"}))
    without = price_usage(WRITES, entry(SONNET))
    assert with_1h.total - without.total == D(1_000) * (D(6) - D("3.75")) / 1_000_000


def test_a_token_priced_image_model_is_not_incomplete_for_its_image_count():
    cost = price_usage(IMAGE_CALL, entry(GPT_IMAGE_1))
    assert cost.status == "priced"
    assert "images" not in cost.per_meter
    # An image count with no tokens to carry it stays unpriced on a token-priced entry.
    dall_e = price_usage(Usage(images=1, requests=1), entry(GPT_IMAGE_1))
    assert (dall_e.status, dall_e.flags) == ("incomplete", ("no_price:images",))
    # A per-image price still bills the count, beside the tokens.
    both = price_usage(IMAGE_CALL, entry(GPT_IMAGE_1 | {"images": "0.01"}))
    assert both.per_meter["images"] == D("0.01")


def test_characters_without_a_price_are_incomplete():
    cost = price_usage(Usage(input_characters=10), entry({"input_tokens": "1"}))
    assert (cost.status, cost.flags, cost.total) == (
        "incomplete", ("no_price:input_characters",), D(0))


def test_character_prices_are_per_million_with_six_places():
    with pytest.raises(PricingError, match=r"a price per 1M characters may have at most 6"):
        entry({"input_characters": "0.0000001"})


def test_a_tier_priced_at_the_standard_price_is_flagged():
    usage = Usage(input_tokens=1000, output_tokens=500)
    standard = price_usage(usage, GPT4O, service_tier="batch")
    assert standard.total == D("0.0075")
    assert standard.flags == ("service_tier_price_missing:batch",)
    assert standard.status == "priced"
    batch = entry({"input_tokens": "1.25", "output_tokens": "5"}, service_tier="batch")
    assert price_usage(usage, batch, service_tier="batch").flags == ()
    assert price_usage(usage, GPT4O).flags == ()


@pytest.mark.parametrize(("value", "stored"), [("Batch", "batch"), ("default", None),
                                               ("standard", None), (None, None)])
def test_service_tier_names(value, stored):
    assert entry({"input_tokens": "1"}, service_tier=value).service_tier == stored


def test_a_tier_is_part_of_the_default_id():
    assert entry({"input_tokens": "1"}).id == "list:openai:m@1970-01-01"
    assert entry({"input_tokens": "1"}, service_tier="flex").id == (
        "list:openai:tier=flex:m@1970-01-01")
    with pytest.raises(PricingError, match="service_tier: expected letters"):
        entry({"input_tokens": "1"}, service_tier="batch 50%")
