"""The cost function: (usage meters, price entry) -> exact cost per meter and total.

Meters that are parts of another (events/model.py) are split out of their parent the way
genai-prices splits usage into leaves: a part with its own price is billed at that price and
taken out of the parent; a part without one stays at the parent's price. Concretely:

- input: uncached input = input - cached - cache_write (- input_audio, - input_image, when
  they have their own price), at the input price. Cached tokens without a cache-read price,
  cache writes without a cache-write price and input audio or image tokens without their own
  price are billed at the input price and flagged (``cache_read_price_missing``, ...), never
  silently at 0. One-hour cache writes are a part of the cache writes: at their own price,
  else at the cache-write price, flagged ``cache_write_1h_price_missing``.
- output: reasoning tokens are output tokens; they are billed separately only when the entry
  prices ``reasoning_tokens``. Output audio or image tokens without their own price are
  billed at the output price and flagged (``output_audio_price_missing``, ...).
- ``requests`` is billed only when the entry has a per-request price: most models charge no
  per-call fee, and the meter counts calls that the token meters already bill. Likewise
  ``images`` without a per-image price is no extra charge when the event reports output
  tokens: a token-priced image model bills its images as output tokens.
- ``input_characters`` (text to speech) is billed per 1M characters.
- any other non-zero meter without a price (and a parent leaf without one) makes the result
  ``incomplete`` with flag ``no_price:<meter>``; parts larger than their parent give
  ``parts_exceed:<meter>``. An incomplete total is a lower bound, never a guess.
- an event billed at a service tier priced by a standard entry (its tier has no entry of its
  own) is flagged ``service_tier_price_missing:<tier>``: the standard price is what it shows.

All arithmetic is on integer pico-units, so the result is exact; ``seconds`` may be
fractional, and the only rounding anywhere (half-even, to a pico-unit) is flagged
``rounded_to_pico:seconds``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import msgspec

from spendtrail.events.model import METERS, Usage
from spendtrail.money import from_pico
from spendtrail.pricing.model import PriceEntry

PRICED = "priced"
INCOMPLETE = "incomplete"


class CostBreakdown(msgspec.Struct, frozen=True):
    """Exact integer pico-units (what the ledger stores), with Decimal views for people.
    A frozen Struct rather than a frozen dataclass: built in C, for every event priced."""

    status: str  # priced | incomplete
    currency: str
    total_pico: int
    per_meter_pico: dict[str, int]
    flags: tuple[str, ...]

    @property
    def total(self) -> Decimal:
        return from_pico(self.total_pico)

    @property
    def per_meter(self) -> dict[str, Decimal]:
        return {meter: from_pico(pico) for meter, pico in self.per_meter_pico.items()}


# A part of a meter: (meter, flag when it has no price of its own, its own parts). A part
# without a flag stays in its parent when unpriced, as the provider bills it.
_Part = tuple[str, str | None, tuple]
_INPUT_PARTS: tuple[_Part, ...] = (
    ("cached_input_tokens", "cache_read_price_missing", ()),
    ("cache_write_tokens", "cache_write_price_missing", (
        ("cache_write_1h_tokens", "cache_write_1h_price_missing", ()),
    )),
    ("input_audio_tokens", "input_audio_price_missing", ()),
    ("input_image_tokens", "input_image_price_missing", ()),
)
_OUTPUT_PARTS: tuple[_Part, ...] = (
    ("reasoning_tokens", None, ()),
    ("output_audio_tokens", "output_audio_price_missing", ()),
    ("output_image_tokens", "output_image_price_missing", ()),
)


def price_usage(usage: Usage, entry: PriceEntry, *, service_tier: str | None = None) -> (
        CostBreakdown):
    """Price one event's meters with one entry; `service_tier` is the event's. Pure: no I/O,
    no clock, no float."""
    _, prices = entry.tier_prices(usage.input_tokens)

    costs: dict[str, int] = {}
    flags: list[str] = []
    if service_tier is not None and entry.service_tier != service_tier:
        flags.append(f"service_tier_price_missing:{service_tier}")
    _bill(usage, prices, costs, flags, "input_tokens", usage.input_tokens,
          prices.get("input_tokens"), _INPUT_PARTS)
    _bill(usage, prices, costs, flags, "output_tokens", usage.output_tokens,
          prices.get("output_tokens"), _OUTPUT_PARTS)
    if usage.input_characters:
        if (price := prices.get("input_characters")) is None:
            flags.append("no_price:input_characters")
        else:
            costs["input_characters"] = usage.input_characters * price
    if usage.requests and (price := prices.get("requests")) is not None:
        costs["requests"] = usage.requests * price
    if usage.images:
        if (price := prices.get("images")) is None:
            if not usage.output_tokens:  # else the output tokens bill the images
                flags.append("no_price:images")
        else:
            costs["images"] = usage.images * price
    if usage.seconds:
        if (price := prices.get("seconds")) is None:
            flags.append("no_price:seconds")
        else:
            exact = usage.seconds * price
            rounded = exact.to_integral_value(ROUND_HALF_EVEN)
            if rounded != exact:
                flags.append("rounded_to_pico:seconds")
            costs["seconds"] = int(rounded)

    incomplete = flags and any(f.startswith(("no_price:", "parts_exceed:")) for f in flags)
    return CostBreakdown(
        status=INCOMPLETE if incomplete else PRICED,
        currency=entry.currency,
        total_pico=sum(costs.values()),
        per_meter_pico={meter: costs[meter] for meter in METERS if meter in costs},
        flags=tuple(flags),
    )


def _bill(
    usage: Usage,
    prices: dict[str, int],
    costs: dict[str, int],
    flags: list[str],
    meter: str,
    count: int,
    price: int | None,
    parts: tuple[_Part, ...],
) -> None:
    """Bill `count` of `meter` at `price`: its parts at their own price, the rest at `price`."""
    rest = count
    for part, missing_flag, subparts in parts:
        part_count = getattr(usage, part)
        if not part_count:
            continue
        own = prices.get(part)
        if own is None:
            if missing_flag is None:
                continue  # billed as part of the parent, as the provider does
            if price is None:
                flags.append(f"no_price:{part}")
                rest -= part_count
                continue
            own = price
            flags.append(missing_flag)
        _bill(usage, prices, costs, flags, part, part_count, own, subparts)
        rest -= part_count
    if rest < 0:
        flags.append(f"parts_exceed:{meter}")
    elif rest:
        if price is None:
            flags.append(f"no_price:{meter}")
        else:
            costs[meter] = rest * price
